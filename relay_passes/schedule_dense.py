"""Schedule the dense remainder of a legalized CPU module (the ``schedule`` phase).

After ``LegalizeOps`` + ``FuseOps`` + ``FuseTIR`` every layer that no sparse pass took is a
PrimFunc with TVM's naive loop nest. Two passes make them fast:

1. :class:`PackDenseWeights` packs the constant weight of each dense convolution into the
   layout its register-tiled kernel reads (``schedules.dense_conv2d.WeightPacking``): the
   PrimFunc's weight parameter changes layout and every call site gets the packed constant,
   computed once at compile time.
2. :func:`dense_schedule_rules` are applied with dlight's ``ApplyDefaultSchedule``: dense
   convolution, grouped/depthwise convolution, matmul, then a parallel/vectorizing fallback for
   pooling and element-wise functions. Functions already scheduled (``tirx.is_scheduled``, e.g.
   the sparse kernels) are left alone.
"""

import logging

import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.s_tir import dlight

from schedules.dense_conv2d import DenseConv2dNCHW, conv2d_weight_packing
from schedules.dense_depthwise import DepthwiseConv2dNCHW
from schedules.dense_fallback import ParallelFallback
from schedules.dense_matmul import DenseMatmul
from schedules.dense_pointwise import PointwiseConv2dRows

logger = logging.getLogger(__name__)

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def dense_schedule_rules():
    """The schedule rules for dense CPU functions, most specific first."""
    return [DenseConv2dNCHW(), PointwiseConv2dRows(), DepthwiseConv2dNCHW(), DenseMatmul(), ParallelFallback()]


def schedule_dense_passes(target):
    """The passes of the ``schedule`` phase for a CPU ``target`` (none for other targets)."""
    if target.kind.name != "llvm":
        return []
    return [PackDenseWeights(target), dlight.ApplyDefaultSchedule(*dense_schedule_rules())]


def _call_sites(mod):
    """``{GlobalVar of a PrimFunc: [relax.Call of call_tir]}`` over all Relax functions of ``mod``."""
    sites = {}

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op.same_as(_CALL_TIR):
            sites.setdefault(expr.args[0], []).append(expr)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return sites


@relax.expr_functor.mutator
class _CallPackedFunctions(relax.PyExprMutator):
    """Point ``call_tir`` calls at the packed PrimFuncs and pack their constant weights.

    A packed function gets a new ``GlobalVar`` (its signature changed, and a ``GlobalVar``
    carries the signature of its function); the old one is removed when no call is left.
    """

    def __init__(self, mod, packed):
        super().__init__(mod)
        # {old GlobalVar: (argument index, numpy packing function, new GlobalVar)}
        self.packed = {
            gvar: (packing.param, packing.pack, self.builder_.add_func(func, gvar.name_hint))
            for gvar, (packing, func) in packed.items()
        }

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not call.op.same_as(_CALL_TIR) or call.args[0] not in self.packed:
            return call
        index, pack, gvar = self.packed[call.args[0]]
        fields = list(call.args[1].fields)
        fields[index] = relax.const(pack(fields[index].value.numpy()))
        args = [gvar, relax.Tuple(fields), *call.args[2:]]
        return relax.Call(call.op, args, call.attrs, call.ty_args, call.span)

    def rewrite(self):
        """The module with every Relax function rewritten and the unpacked functions removed."""
        for gvar, func in self.builder_.get().functions.items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gvar, self.visit_expr(func))
        mod = self.builder_.get()
        for gvar in self.packed:
            del mod[gvar]
        return mod


@tvm.transform.module_pass(opt_level=0, name="tvm_sparse.PackDenseWeights")
class PackDenseWeights:
    """Pack the constant weights of dense convolutions into the layout of their CPU kernel.

    A convolution PrimFunc is packed only if every call passes a constant weight; otherwise it
    keeps its layout (and is scheduled by the fallback rule), and the reason is logged.

    Parameters
    ----------
    target : tvm.target.Target
    """

    def __init__(self, target):
        self.target = target

    def transform_module(self, mod, _ctx):
        sites = _call_sites(mod)
        packed = {}
        for gvar, func in mod.functions.items():
            packing = conv2d_weight_packing(func, self.target)
            if packing is None:
                continue
            calls = sites.get(gvar, [])
            if not calls or not all(isinstance(c.args[1].fields[packing.param], Constant) for c in calls):
                logger.info("%s: weight is not a constant at every call; left unpacked", gvar.name_hint)
                continue
            packed[gvar] = (packing, packing.apply(func))
        if not packed:
            return mod
        return _CallPackedFunctions(mod, packed).rewrite()
