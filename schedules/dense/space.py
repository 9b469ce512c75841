"""The dense CPU schedule rules in the order they are tried, and their MetaSchedule search space.

Untuned, ``relay_passes.schedule_dense`` applies the first rule that takes each function
(``dense_schedule_rules``). For tuning, :func:`dense_search_space` gives MetaSchedule the same
rules with their knobs sampled (``tunable=True``: the register-tile sides), so the tuned
schedules differ from the untuned ones only in those decisions. Tune the functions *after*
``PackDenseWeights`` (the packed convolutions are what the schedules expect).
"""

from tvm.s_tir import meta_schedule as ms

from .conv2d import DenseConv2dNCHW
from .depthwise import DepthwiseConv2dNCHW, MaxPool2dNCHW
from .fallback import ParallelFallback
from .matmul import DenseMatmul
from .pointwise import PointwiseConv2dRows
from .stem import StemConv2dNCHW
from .winograd import WinogradConv2d


def dense_schedule_rules():
    """The schedule rules for dense CPU functions, most specific first."""
    return [WinogradConv2d(), StemConv2dNCHW(), DenseConv2dNCHW(), PointwiseConv2dRows(), DepthwiseConv2dNCHW(), MaxPool2dNCHW(), DenseMatmul(), ParallelFallback()]


def dense_schedule(func, target, tunable):
    """The schedule of ``func`` by the first rule that takes it (knobs sampled when ``tunable``), or None."""
    for rule in dense_schedule_rules():
        scheduled = rule.apply(func, target, tunable)
        if scheduled is not None:
            return scheduled
    return None


def dense_search_space(target):
    """A MetaSchedule space generator (``ScheduleFn``) over the knobs of the first rule that applies.

    Parameters
    ----------
    target : tvm.target.Target

    Returns
    -------
    tvm.s_tir.meta_schedule.space_generator.ScheduleFn
    """
    def space(sch):
        return dense_schedule(sch.mod["main"], target, True) or sch

    # The space applies no schedule rules, and the generic CPU postprocessors and mutators are
    # named here: the target's defaults for x86 include rules that need tensor intrinsics
    # registered, whose import takes minutes (see ``tvm_sparse.tuning.search.dense_tune_context``).
    return ms.space_generator.ScheduleFn(space, sch_rules=[], postprocs=ms.postproc.Postproc.create("llvm"),
                                         mutator_probs=ms.mutator.Mutator.create("llvm"))
