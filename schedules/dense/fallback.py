"""The CPU schedule for everything that no dense or sparse kernel rule takes.

Pooling, means, reshapes and stand-alone element-wise operators are memory-bound, so a simple
schedule is enough: each block's leading data-parallel loops are fused and run in parallel (when
there is enough work to pay for waking the threads), and a block that is data-parallel
throughout gets vector-width inner steps.
"""

from tvm.s_tir.dlight import ScheduleRule
from tvm.s_tir.dlight.analysis import get_root_block

from ..target_info import vector_lanes
from .blocks import is_unscheduled_cpu_func, parallelize_block, try_schedule


class ParallelFallback(ScheduleRule):
    """Parallelize (and where possible vectorize) every block of a CPU function."""

    def apply(self, func, target, tunable):
        if not is_unscheduled_cpu_func(func, target):
            return None

        def steps(sch):
            for block in sch.get_child_blocks(get_root_block(sch)):
                parallelize_block(sch, block, vector_lanes(target))

        return try_schedule(func, steps)
