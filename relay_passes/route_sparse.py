"""Route convolutions and linear layers with sparse constant weights to the ``schedules`` kernels.

For every ``relax.nn.conv2d`` and ``relax.matmul`` of ``main`` the pass

1. *analyses* its constant weight (:mod:`relay_passes.sparsity_analysis`),
2. *decides* sparse or dense (:class:`relay_passes.sparse_rules.SparseRules`, or a verified plan),
3. *rewrites* a sparse one into a ``call_tir`` of the kernel specialised to the weight, with the
   bias, residual add and ReLU/ReLU6 that follow it fused in.

A layer it cannot accelerate is left to TVM's dense path with the reason logged; every layer gets
a :class:`LayerDecision` in ``report``.
"""

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from relay_passes.layer_chains import fusion_chains, is_const, static_shape
from relay_passes.sparse_rules import SparseRules
from relay_passes.sparsity_analysis import WeightStructure, analyse_weight
from relay_passes.strided_pointwise import subsample_strides
from relay_passes.winograd import winograd_tile
from schedules import registry
from schedules.epilogue import Epilogue
from schedules.kernel_table import table_argument
from schedules.sparse_cpu.space import within_code_ceiling
from schedules.target_info import target_family
from tvm_sparse.formats import PatternWeight

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KernelCall:
    """A sparse kernel the router generated for a layer: everything needed to generate it again.

    Attributes
    ----------
    kernel : str
        The kernel's name in ``schedules.registry``.
    weight : object
        The sparse weight (a ``tvm_sparse.formats`` object).
    data_shape : tuple of int
        NCHW shape of the kernel's input (a linear layer's is ``(N, C, 1, 1)``).
    epilogue : schedules.epilogue.Epilogue
        What is fused after the layer (bias, residual, activation).
    options : dict
        The kernel's keyword options (stride and padding of a convolution).
    config : object or None
        The knobs the kernel was generated with (None: its defaults).
    """

    kernel: str
    weight: object
    data_shape: tuple
    epilogue: Epilogue
    options: dict
    config: object = None

    def prim_func(self, target, config=None, name="main"):
        """The kernel's PrimFunc for ``target`` with ``config`` (None: the kernel's defaults)."""
        return registry.kernel(self.kernel).entry_point(self.weight, self.data_shape, epilogue=self.epilogue,
                                                        target=target, config=config, name=name, **self.options)


@dataclass(frozen=True)
class LayerDecision:
    """What the sparse passes found and decided for one convolution or linear layer.

    ``call`` is the kernel generated for a sparse layer (None for a dense one).
    """

    name: str
    op: str
    weight_shape: tuple
    structure: str
    density: float
    decision: str
    kernel: str
    reason: str
    call: KernelCall | None = field(default=None, repr=False, compare=False)


@tvm.transform.module_pass(opt_level=0, name="tvm_sparse.RouteSparseLayers")
class RouteSparseLayers:
    """Rewrite sparse layers of ``main`` to calls of the sparse kernels; record every decision.

    Parameters
    ----------
    target : tvm.target.Target
    rules : SparseRules or None
        Density thresholds of the decide step; thresholds left None (all, for None) are the
        target's (``SparseRules.for_target``).
    plan : dict[str, scheme] or None
        Verified plan from :mod:`tvm_sparse.plan`: a layer it names gets its scheme's kernel
        whatever the thresholds (``pattern`` and ``block_punched``; other schemes stay dense).
    layer_names : list[str or None] or None
        Each layer's weight name in program order (:func:`weight_names` before binding).
    kernel_configs : callable or None
        ``kernel_configs(kernel, sparse_weight, data_shape, epilogue, options)`` returns the knobs
        (``SpecializedConvConfig``) of a routed layer's kernel, or None for the kernel's defaults
        (``tvm_sparse.tuning`` passes tuned ones).

    Attributes
    ----------
    report : list[LayerDecision]
        Filled when the pass runs.
    """

    def __init__(self, target, rules=None, plan=None, layer_names=None, kernel_configs=None):
        self.target = target
        self.rules = (rules or SparseRules()).for_target(target)
        self.plan = plan or {}
        self.layer_names = layer_names
        self.kernel_configs = kernel_configs
        self.report = []

    def transform_module(self, mod, _ctx):
        """Rewrite ``main``; other functions are left alone."""
        self.report.clear()
        router = _Router(mod, self)
        for global_var, func in mod.functions_items():
            if isinstance(func, relax.Function) and global_var.name_hint == "main":
                router.rewrite(global_var, func)
        return router.builder_.get()


@mutator
class _Router(PyExprMutator):
    def __init__(self, mod, options):
        super().__init__(mod)
        self.options = options
        self.family = target_family(options.target)
        self.chains = []

    def rewrite(self, global_var, func):
        self.chains = fusion_chains(func)
        names = self.options.layer_names
        if names is not None and len(names) != len(self.chains):
            logger.warning("%d layers named before binding but %d found after: layers get generic names",
                           len(names), len(self.chains))
            names = None
        for index, chain in enumerate(self.chains):
            chain.name = (names[index] if names else None) or f"{chain.root.op.name.split('.')[-1]}_{index}"
        self.builder_.update_func(global_var, self.visit_expr(func))

    def visit_call_(self, call):  # pylint: disable=arguments-renamed
        for chain in self.chains:
            if chain.end_value.same_as(call):
                return self._route(chain, call)
        return super().visit_call_(call)

    def _route(self, chain, call):
        root = chain.root
        op = "conv2d" if root.op.name == "relax.nn.conv2d" else "linear"
        weight_expr = root.args[1]
        shape = static_shape(weight_expr) or ()
        if op == "linear":
            shape = shape[::-1]  # matmul(x, W^T): report the [out, in] shape of the layer
        problem = self._unsupported(chain, op)
        structure = None
        if problem is None:
            weight = weight_expr.value.numpy()
            if op == "linear":
                weight = weight.T  # matmul(x, W^T): back to the [out, in] layout of the formats
            if not np.isfinite(weight).all():
                problem = "the weight holds NaN or infinity (the sparse formats store finite values; dense propagates them as PyTorch)"
        if problem is None:
            structure = self._structure(chain.name, weight)
            out_shape = static_shape(chain.var)
            macs = int(np.prod(out_shape)) * int(np.prod(weight.shape[1:]))
            kernel, reason = self.options.rules.decide(structure, macs, self.family,
                                                       forced=self._planned_scheme(chain.name) is not None,
                                                       terms=int(np.count_nonzero(weight)),
                                                       pixels=int(np.prod(out_shape[2:])) if op == "conv2d" else None)
        else:
            kernel, reason = None, problem
        kernel_call = kernel_func = None
        if kernel is not None:
            kernel_call = self._kernel_call(chain, op, structure, kernel)
            if kernel_call.config is not None and not within_code_ceiling(kernel_call.config, structure.sparse,
                                                                          self.options.target):
                kernel_call = dataclasses.replace(kernel_call, config=None)
                reason = f"{reason}; its tuned knobs ignored (literal code beyond the target's code ceiling)"
            try:
                kernel_func = kernel_call.prim_func(self.options.target, kernel_call.config, name=_kernel_name(chain))
            except (ValueError, NotImplementedError, RuntimeError) as error:
                # The router declines a layer whose kernel cannot be generated: it stays dense.
                kernel, reason, kernel_call = None, f"{reason}; but its kernel {kernel} failed: {_first_line(error)}", None
        if kernel is None and op == "conv2d":
            tile = winograd_tile(root, self.options.target)
            if tile is not None:
                reason = f"{reason}; runs by Winograd F({tile}x{tile}, 3x3)"
            elif subsample_strides(root, self.options.target) is not None:
                reason = f"{reason}; runs with stride 1 on a copy of the pixels it reads"
        self._record(chain, op, shape, structure, kernel, reason, kernel_call)
        if kernel is None:
            return super().visit_call_(call)
        return self._emit(chain, op, kernel_func)

    def _unsupported(self, chain, op):
        root = chain.root
        if not is_const(root.args[1]):
            return "the weight is not a constant (bind it with params)"
        data_shape, out_shape = static_shape(root.args[0]), static_shape(chain.var)
        if data_shape is None or out_shape is None:
            return "dynamic shapes"
        if str(root.args[0].ty.dtype) != "float32" or str(root.args[1].ty.dtype) != "float32":
            return f"dtype {root.args[0].ty.dtype}: the sparse kernels are float32"
        if op == "linear":
            if len(data_shape) != 2 or len(static_shape(root.args[1])) != 2:
                return "a batched matmul, not a linear layer"
            return None
        attrs = root.attrs
        if int(attrs.groups) != 1:
            return f"groups={int(attrs.groups)}: the sparse kernels take groups=1"
        if any(int(d) != 1 for d in attrs.dilation):
            return f"dilation={[int(d) for d in attrs.dilation]}: the sparse kernels take dilation 1"
        layouts = (attrs.data_layout, attrs.kernel_layout, attrs.out_layout)
        if layouts != ("NCHW", "OIHW", "NCHW"):
            return f"layouts {layouts}: the sparse kernels take NCHW/OIHW"
        return None

    def _planned_scheme(self, name):
        """The plan's scheme for the layer when it has a kernel structure (pattern, block-punched, BSR)."""
        scheme = self.options.plan.get(name)
        # Other schemes (unstructured, filter) are analysed like layers outside the plan.
        return scheme if scheme is not None and scheme.name in registry.FORMATS else None

    def _structure(self, name, weight):
        scheme = self._planned_scheme(name)
        if scheme is None:
            return analyse_weight(weight)
        density = float(np.count_nonzero(weight)) / weight.size
        if scheme.name == "pattern":
            sparse = PatternWeight.from_dense(weight, scheme.library_array())
            return WeightStructure("pattern", density, "library from the plan", sparse)
        sparse = registry.FORMATS[scheme.name].from_dense(weight, scheme.block)
        return WeightStructure(scheme.name, density, f"blocks {scheme.block[0]}x{scheme.block[1]} (plan)", sparse)

    def _record(self, chain, op, shape, structure, kernel, reason, kernel_call):
        decision = LayerDecision(
            name=chain.name, op=op, weight_shape=shape,
            structure=structure.kind if structure else "-",
            density=structure.density if structure else float("nan"),
            decision="sparse" if kernel else "dense", kernel=kernel or "tvm dense", reason=reason, call=kernel_call)
        self.options.report.append(decision)
        logger.info("%s (%s %s): %s -> %s: %s", decision.name, op, shape, decision.structure,
                    decision.kernel, reason)

    def _kernel_call(self, chain, op, structure, kernel):
        """The :class:`KernelCall` of a layer routed to ``kernel`` (shapes, epilogue, options, knobs)."""
        data_shape = static_shape(chain.root.args[0])
        options = {}
        if op == "conv2d":
            options.update(stride=tuple(int(s) for s in chain.root.attrs.strides),
                           padding=tuple(int(p) for p in chain.root.attrs.padding))
        else:  # a linear layer is a 1x1 convolution of a [N, C, 1, 1] input
            data_shape = (*data_shape, 1, 1)
        epilogue = Epilogue(bias=chain.bias is not None, residual=chain.residual is not None,
                            activation=chain.activation)
        configs = self.options.kernel_configs
        config = configs(kernel, structure.sparse, data_shape, epilogue, options) if configs else None
        return KernelCall(kernel, structure.sparse, tuple(data_shape), epilogue, options, config)

    def _emit(self, chain, op, kernel_func):
        root = chain.root
        data = self.visit_expr(root.args[0])
        residual = self.visit_expr(chain.residual) if chain.residual is not None else None
        out_shape = static_shape(chain.var)
        if op == "linear":
            data = self.builder_.emit(relax.op.reshape(data, (*static_shape(root.args[0]), 1, 1)))
            if residual is not None:
                residual = self.builder_.emit(relax.op.reshape(residual, (*out_shape, 1, 1)))
        name = _kernel_name(chain)
        # The kernel is complete: the dense schedule rules must leave it alone (is_scheduled) and
        # FuseOps must not merge it into its neighbours (op_pattern 8 = kOpaque).
        kernel_func = kernel_func.with_attrs({"tirx.is_scheduled": True, "op_pattern": 8})
        callee = self.builder_.add_func(kernel_func, name)
        args = [data] + ([relax.const(chain.bias)] if chain.bias is not None else []) + \
            ([residual] if residual is not None else [])
        table = table_argument(kernel_func)  # compact kernels read their weights from a table argument
        if table is not None:
            args.append(relax.const(table))
        kernel_shape = out_shape if op == "conv2d" else (*out_shape, 1, 1)
        out = relax.call_tir(callee, relax.Tuple(args), out_ty=relax.TensorType(kernel_shape, "float32"))
        if op == "linear":
            out = relax.op.reshape(self.builder_.emit(out), out_shape)
        return out


def _kernel_name(chain):
    """The name of a layer's kernel function in the module."""
    return "sparse_" + "".join(ch if ch.isalnum() else "_" for ch in chain.name)


def _first_line(error):
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__
