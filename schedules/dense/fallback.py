"""The CPU schedule for everything that no dense or sparse kernel rule takes.

Pooling, means, reshapes and stand-alone element-wise operators are memory-bound, so a simple
schedule is enough: each block's leading data-parallel loops are fused and run in parallel (when
there is enough work to pay for waking the threads), and a block that is data-parallel
throughout gets vector-width inner steps.
"""

import math

from tvm.s_tir.dlight import ScheduleRule
from tvm.s_tir.dlight.analysis import get_root_block

from ..target_info import vector_lanes
from .blocks import SPATIAL, is_unscheduled_cpu_func, try_schedule

#: Fewer loop iterations than this run on one thread.
MIN_PARALLEL_WORK = 16384


class ParallelFallback(ScheduleRule):
    """Parallelize (and where possible vectorize) every block of a CPU function."""

    def apply(self, func, target, tunable):
        if not is_unscheduled_cpu_func(func, target):
            return None
        return try_schedule(func, lambda sch: self._schedule(sch, vector_lanes(target)))

    @staticmethod
    def _schedule(sch, lanes):
        for block in sch.get_child_blocks(get_root_block(sch)):
            loops = sch.get_loops(block)
            iter_vars = sch.get(block).iter_vars
            if len(loops) != len(iter_vars):
                continue
            extents = [int(sch.get(loop).extent) for loop in loops]
            leading = 0
            while leading < len(iter_vars) and int(iter_vars[leading].iter_type) == SPATIAL:
                leading += 1
            if leading == 0 or math.prod(extents) < MIN_PARALLEL_WORK:
                continue
            fused = sch.fuse(*loops[:leading])
            if leading == len(loops) and math.prod(extents) % lanes == 0:
                fused, vector = sch.split(fused, [None, lanes])
                sch.vectorize(vector)
            sch.parallel(fused)

