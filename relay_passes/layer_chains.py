"""Each layer of a Relax function with the element-wise ops after it that a sparse kernel can absorb.

A *chain* is a ``relax.nn.conv2d`` or ``relax.matmul`` followed, each op used only by the next,
by a constant per-channel bias add, a residual add and a ReLU or ReLU6; the router replaces a whole
chain by one kernel call.
"""

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

LAYER_OPS = ("relax.nn.conv2d", "relax.matmul")


@dataclass
class LayerChain:
    """A layer and the element-wise ops after it that its kernel can absorb."""

    var: relax.Var
    root: relax.Call
    end_var: relax.Var
    end_value: relax.Call
    bias: np.ndarray = None
    residual: relax.Expr = None
    activation: str = None
    name: str = None
    absorbed: list = field(default_factory=list)

    def extend(self, var, value):
        """Make ``var = value`` the new end of the chain."""
        self.end_var, self.end_value = var, value
        self.absorbed.append(var)


def bindings(func):
    """The bindings of ``func``'s body, block after block."""
    for block in func.body.blocks:
        yield from block.bindings


def is_layer(value):
    """Whether ``value`` is a call of one of :data:`LAYER_OPS`."""
    return isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name in LAYER_OPS


def is_const(expr):
    """Whether ``expr`` is a constant."""
    return isinstance(expr, tvm.ir.expr.GenericConst)


def is_nchw_conv2d(call):
    """Whether ``call`` is a ``relax.nn.conv2d`` with groups = 1, NCHW data and output, an OIHW weight
    and a static 4-D input shape: the convolutions the CPU rewrites of the legalize phase take."""
    if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op) or call.op.name != "relax.nn.conv2d":
        return False
    attrs, data_shape = call.attrs, static_shape(call.args[0])
    return (int(attrs.groups) == 1 and data_shape is not None and len(data_shape) == 4
            and (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) == ("NCHW", "OIHW", "NCHW"))


def static_shape(expr):
    """The shape of ``expr`` as ints, or None when it is not static."""
    try:
        return tuple(int(dim) for dim in expr.ty.shape)
    except (TypeError, AttributeError):
        return None


def weight_names(func):
    """The parameter name of each layer's weight, in program order (None where it is not a parameter).

    Call this before the weights are bound: binding and folding replace the parameters by
    unnamed constants, but keep the layers in the same order.
    """
    params = {param.name for param in func.params}
    producers = {binding.var: binding.value for binding in bindings(func)}
    names = []
    for binding in bindings(func):
        if not is_layer(binding.value):
            continue
        weight = binding.value.args[1]
        producer = producers.get(weight)
        if isinstance(producer, relax.Call) and getattr(producer.op, "name", "") == "relax.permute_dims":
            weight = producer.args[0]
        names.append(weight.name if isinstance(weight, relax.Var) and weight.name in params else None)
    return names


def fusion_chains(func):
    """Each layer's chain: the bias add, residual add and activation its kernel can absorb."""
    users = {}
    producers = {}
    for binding in bindings(func):
        producers[binding.var] = binding.value
        for used in relax.analysis.free_vars(binding.value):
            users.setdefault(used, []).append(binding.var)

    claimed = set()  # ops already absorbed by an earlier chain (a residual add joins two layers)

    def single_user(var, op_names):
        found = users.get(var, [])
        if len(found) != 1 or not isinstance(var, relax.DataflowVar) or found[0] in claimed:
            return None
        value = producers[found[0]]
        if isinstance(value, relax.Call) and getattr(value.op, "name", "") in op_names:
            return found[0], value
        return None

    chains = []
    for binding in bindings(func):
        if not is_layer(binding.value):
            continue
        chain = LayerChain(binding.var, binding.value, binding.var, binding.value)
        out_shape = static_shape(binding.var)
        step = single_user(chain.end_var, ("relax.add",))
        if step is not None:
            other = _other_operand(step[1], chain.end_var)
            bias = _bias_vector(other, out_shape)
            if bias is not None:
                chain.bias = bias
                chain.extend(*step)
                step = single_user(chain.end_var, ("relax.add",))
        if step is not None:
            other = _other_operand(step[1], chain.end_var)
            if not is_const(other) and static_shape(other) == out_shape:
                chain.residual = other
                chain.extend(*step)
        step = single_user(chain.end_var, ("relax.nn.relu", "relax.clip"))
        if step is not None:
            activation = _activation(step[1])
            if activation is not None:
                chain.activation = activation
                chain.extend(*step)
        claimed.update(chain.absorbed)
        chains.append(chain)
    return chains


def _other_operand(add, var):
    first, second = add.args
    return second if first.same_as(var) else first


def _bias_vector(expr, out_shape):
    """The per-output-channel vector of a constant shaped [1, K, 1, 1], [K, 1, 1] (conv) or [K], [1, K]."""
    if not is_const(expr) or out_shape is None:
        return None
    value = expr.value.numpy()
    channels = out_shape[1]
    if value.size != channels:
        return None
    allowed = {(channels,), (1, channels)} if len(out_shape) == 2 else {(1, channels, 1, 1), (channels, 1, 1)}
    return value.reshape(channels).astype("float32") if value.shape in allowed else None


def _activation(call):
    if call.op.name == "relax.nn.relu":
        return "relu"
    try:
        low, high = float(call.args[1].value), float(call.args[2].value)
    except (AttributeError, IndexError, TypeError):
        return None
    return "relu6" if (low, high) == (0.0, 6.0) else None
