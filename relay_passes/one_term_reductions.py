"""Rewrite reductions over a single term as element-wise products before a GPU legalization.

A ``matmul`` whose inner dimension is 1, a convolution with one input channel per group and a
1x1 kernel, and a ``sum``/``mean``/``max``/``min`` over axes of extent 1 each add one term to
their initial value. Legalized and fused with their epilogue (bias, batch norm), TVM's dlight
``gpu.Fallback`` rule inlines the epilogue into both the reduction's init and its update, so
the epilogue is applied twice: a wrong answer, not an error. Written as the element-wise
product (or a reshape) they are, the reductions disappear and the epilogue fuses as usual; the
result is bit-identical, since ``0 + x * w == x * w``.
"""

import tvm
from tvm import relax

from relay_passes.layer_chains import static_shape

_MATMUL = tvm.ir.Op.get("relax.matmul")
_CONV2D = tvm.ir.Op.get("relax.nn.conv2d")
_REDUCTIONS = tuple(tvm.ir.Op.get(f"relax.{name}") for name in ("sum", "mean", "max", "min"))


def _keeps_dtype(call, operand):
    out_dtype = str(call.attrs.out_dtype)
    return out_dtype in ("", "void") or out_dtype == str(operand.ty.dtype)


def _one_term_matmul(call):
    """``x @ w`` with inner dimension 1 as the broadcast product ``x * w`` (both at least 2-D)."""
    x, w = call.args
    x_shape, w_shape = static_shape(x), static_shape(w)
    if x_shape is None or w_shape is None or len(x_shape) < 2 or len(w_shape) < 2:
        return None
    if x_shape[-1] != 1 or w_shape[-2] != 1 or not _keeps_dtype(call, x):
        return None
    return relax.op.multiply(x, w)


def _one_term_conv2d(call):
    """An NCHW 1x1 convolution with one input channel per group as pad, stride, repeat and multiply."""
    x, w = call.args
    attrs = call.attrs
    x_shape, w_shape = static_shape(x), static_shape(w)
    if x_shape is None or w_shape is None or not _keeps_dtype(call, x):
        return None
    if (str(attrs.data_layout), str(attrs.kernel_layout), str(attrs.out_layout)) != ("NCHW", "OIHW", "NCHW"):
        return None
    out_channels, per_group, kernel_h, kernel_w = w_shape
    if (per_group, kernel_h, kernel_w) != (1, 1, 1):
        return None
    top, left, bottom, right = (int(p) for p in attrs.padding)
    if top or left or bottom or right:
        x = relax.op.nn.pad(x, [0, 0, 0, 0, top, bottom, left, right])
    height, width = x_shape[2] + top + bottom, x_shape[3] + left + right
    stride_h, stride_w = (int(s) for s in attrs.strides)
    if (stride_h, stride_w) != (1, 1):
        x = relax.op.strided_slice(x, axes=[2, 3], begin=[0, 0], end=[height, width], strides=[stride_h, stride_w])
    multiplier = out_channels // int(attrs.groups)
    if multiplier > 1 and x_shape[1] > 1:
        x = relax.op.repeat(x, multiplier, axis=1)
    return relax.op.multiply(x, relax.op.reshape(w, (1, out_channels, 1, 1)))


def _one_term_reduction(call):
    """A sum, mean, max or min over axes of extent 1 as the reshape it is."""
    (x,) = call.args
    shape, out_shape = static_shape(x), static_shape(call)
    if shape is None or out_shape is None:
        return None
    axes = range(len(shape)) if call.attrs.axis is None else (int(axis) for axis in call.attrs.axis)
    if any(shape[axis] != 1 for axis in axes):
        return None
    return relax.op.reshape(x, out_shape)


@relax.expr_functor.mutator
class _OneTermRewriter(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if call.op.same_as(_MATMUL):
            rewritten = _one_term_matmul(call)
        elif call.op.same_as(_CONV2D):
            rewritten = _one_term_conv2d(call)
        elif any(call.op.same_as(op) for op in _REDUCTIONS):
            rewritten = _one_term_reduction(call)
        else:
            return call
        return call if rewritten is None else self.builder_.normalize(rewritten)


@tvm.transform.module_pass(opt_level=0, name="tvm_sparse.ExpandOneTermReductions")
class ExpandOneTermReductions:
    """Rewrite one-term ``matmul``, ``conv2d`` and ``sum``/``mean``/``max``/``min`` calls as element-wise ops."""

    def transform_module(self, mod, _ctx):
        rewriter = _OneTermRewriter(mod)
        for gvar, func in mod.functions.items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
        return rewriter.builder_.get()
