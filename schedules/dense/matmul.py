"""Dense ``matmul``/``linear`` (``[M, K] x [K, N]``, with fused bias and activation) for x86 and ARM CPUs.

The register tile is ``mt`` rows x ``nt`` columns of the output, the columns along the vector
lanes; each step of the reduction loads a row segment of the weight and broadcasts one input
value per row. With batch 1 (a GEMV, the classifier of a CNN) the tile is one row, tiles of
columns run in parallel, and the time is that of streaming the weight from memory: a constant
weight is therefore packed at compile time to ``[N / nt, K, nt]``
(:class:`MatmulWeightPacking`, applied by ``relay_passes.schedule_dense.PackDenseWeights``), so
that each tile reads one contiguous stream instead of ``K`` short rows ``N`` floats apart.
"""

from dataclasses import dataclass

import numpy as np
from tvm import s_tir

from ..target_info import as_target, vector_lanes
from .blocks import (ConstantWeightPacking, RegisterTileRule, extents, find_block, is_unscheduled_cpu_func, param_index,
                     schedule_register_tile)
from .tiling import accumulator_budget, divisors, largest_divisor, sample_divisor

#: Name of the block that ``LegalizeOps`` gives ``relax.matmul``.
MATMUL_BLOCK = "matmul"


@dataclass(frozen=True)
class MatmulWeightPacking(ConstantWeightPacking):
    """The compile-time layout change of a matmul weight: ``[K, N]`` -> ``[N / nt, K, nt]``.

    Attributes
    ----------
    columns_per_block : int
        ``nt``, the output columns of one register tile.
    """

    columns_per_block: int

    block_name = MATMUL_BLOCK

    def index_map(self, k, n):
        """The new indices of weight element ``[k, n]``."""
        return n // self.columns_per_block, k, n % self.columns_per_block

    def pack(self, weight):
        """Pack a ``[K, N]`` numpy weight the way :meth:`apply` changed the function."""
        k, n = weight.shape
        nt = self.columns_per_block
        return np.ascontiguousarray(weight.reshape(k, n // nt, nt).transpose(1, 0, 2))


def column_block(columns, target):
    """Output columns per register tile: up to two vectors, whole vectors (or half ones) when they divide."""
    lanes = vector_lanes(target)
    for step in (lanes, max(1, lanes // 2)):
        fitting = [d for d in divisors(columns, 2 * lanes) if d % step == 0]
        if fitting:
            return fitting[0]
    return largest_divisor(columns, 2 * lanes)


def matmul_weight_packing(func, target):
    """The weight packing that :class:`DenseMatmul` reads for ``func``, or None.

    None unless ``func`` holds a 2-D ``matmul`` whose second operand is an unpacked 2-D parameter
    (the constant weight of a ``linear``) and the target is a CPU.
    """
    if not is_unscheduled_cpu_func(func, as_target(target)):
        return None
    sch = s_tir.Schedule(func)
    block = find_block(sch, (MATMUL_BLOCK,))
    if block is None or len(sch.get(block).writes[0].source.shape) != 2:
        return None
    weight = sch.get(block).reads[1].source
    index = param_index(func, weight)
    if index is None or len(weight.shape) != 2:
        return None
    return MatmulWeightPacking(index, column_block(extents(weight)[1], target))


class DenseMatmul(RegisterTileRule):
    """Schedule rule for a 2-D ``matmul`` (``linear`` after its constant transpose is folded)."""

    block_name = MATMUL_BLOCK

    def accepts(self, sch, block, target):
        return len(sch.get(block).writes[0].source.shape) == 2

    @staticmethod
    def default_tile(target, rows, cols, packed_columns=None):
        """Rows and columns of the untuned register tile; a packed weight fixes the columns."""
        lanes = vector_lanes(target)
        nt = packed_columns or largest_divisor(cols, 2 * lanes)
        mt = largest_divisor(rows, max(1, accumulator_budget(target) // -(-nt // lanes)))
        return mt, nt

    def schedule_block(self, sch, block, target, tunable):
        rows, cols = extents(sch.get(block).writes[0].source)
        weight = extents(sch.get(block).reads[1].source)
        packed_columns = weight[2] if len(weight) == 3 else None
        mt, nt = self.default_tile(target, rows, cols, packed_columns)
        if tunable:
            mt = sample_divisor(sch, rows, 16, mt)
            if packed_columns is None:
                nt = sample_divisor(sch, cols, 4 * vector_lanes(target), nt)
        schedule_register_tile(sch, block, [mt, nt], accumulator_order=[0, 1])
