"""Pack and schedule the dense remainder of a legalized CPU module (the ``pack`` and ``schedule`` phases).

After ``LegalizeOps`` + ``FuseOps`` + ``FuseTIR`` every layer that no sparse pass took is a
PrimFunc with TVM's naive loop nest. Three passes make them fast (the first is the ``pack``
phase, where tuning takes its tasks):

1. :class:`PackDenseWeights` packs the constant weight of each dense convolution and matmul into
   the layout its register-tiled kernel reads (``schedules.dense.conv2d.WeightPacking``,
   ``schedules.dense.matmul.MatmulWeightPacking``): the
   PrimFunc's weight parameter changes layout and every call site gets the packed constant,
   computed once at compile time.
2. :class:`ApplyTunedSchedules` takes the tuned schedules of a MetaSchedule database in
   context (``with database: tvm_sparse.compile(...)``), tuned over
   ``schedules.dense.space.dense_search_space``.
3. ``schedules.dense.space.dense_schedule_rules`` are applied with dlight's
   ``ApplyDefaultSchedule``: dense convolution (packed weights; unpadded stride-1 1x1 on whole
   vectors of pixels unpacked), grouped/depthwise convolution, matmul, then a
   parallel/vectorizing fallback for pooling and element-wise functions. Functions already scheduled (``tirx.is_scheduled``, e.g.
   the sparse kernels) are left alone.
4. :class:`InsertWeightPrefetches` turns the prefetch marks of the dense convolutions' schedules
   into prefetches of the next filter tile's weights (``schedules.dense.prefetch``).
"""

import logging

import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.s_tir import dlight
from tvm.s_tir import meta_schedule as ms

from schedules.dense.conv2d import conv2d_weight_packing
from schedules.dense.matmul import matmul_weight_packing
from schedules.dense.prefetch import prefetched_module
from schedules.dense.space import dense_schedule_rules
from tvm_sparse.relax_utils import workload_module

logger = logging.getLogger(__name__)

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def pack_dense_passes(target):
    """The passes of the ``pack`` phase for a CPU ``target`` (none for other targets)."""
    if target.kind.name != "llvm":
        return []
    return [PackDenseWeights(target)]


def schedule_dense_passes(target):
    """The passes of the ``schedule`` phase for a CPU ``target`` (none for other targets)."""
    if target.kind.name != "llvm":
        return []
    return [ApplyTunedSchedules(), dlight.ApplyDefaultSchedule(*dense_schedule_rules()), InsertWeightPrefetches()]


@tvm.transform.module_pass(opt_level=0, name="tvm_sparse.ApplyTunedSchedules")
class ApplyTunedSchedules:
    """Apply the tuned schedules of the MetaSchedule database in context (``with database:``), if any.

    Functions found in the database are marked scheduled, so the untuned rules skip them; the
    others keep the untuned schedules. Without a database in context this pass does nothing.
    """

    def transform_module(self, mod, _ctx):
        database = ms.database.Database.current()
        if database is None:
            return mod
        functions = [func for func in mod.functions.values()
                     if isinstance(func, tvm.tirx.PrimFunc) and not (func.attrs and func.attrs.get("tirx.is_scheduled"))]
        if len(database) and functions and not any(database.has_workload(workload_module(func)) for func in functions):
            logger.warning("the tuning logs hold none of this model's dense functions (logs of another model or "
                           "input shape?); they get untuned schedules")
        return relax.transform.MetaScheduleApplyDatabase()(mod)


@tvm.transform.module_pass(opt_level=0, name="tvm_sparse.InsertWeightPrefetches")
class InsertWeightPrefetches:
    """Insert the weight prefetches that the scheduled PrimFuncs mark (``schedules.dense.prefetch``)."""

    def transform_module(self, mod, _ctx):
        return prefetched_module(mod)


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
    """Pack the constant weights of dense convolutions and matmuls into the layout of their CPU kernel.

    A PrimFunc is packed only if every call passes a constant weight; otherwise it
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
            packing = conv2d_weight_packing(func, self.target) or matmul_weight_packing(func, self.target)
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
