"""Dense ``matmul``/``linear`` (``[M, K] x [K, N]``, with fused bias and activation) for x86 and ARM CPUs.

The register tile is ``mt`` rows x ``nt`` columns of the output, the columns along the vector
lanes; each step of the reduction loads a row segment of the weight and broadcasts one input
value per row. With batch 1 (a GEMV, the classifier of a CNN) the tile is one row of up to two
vectors, and tiles of columns run in parallel.
"""

from ..target_info import vector_lanes
from .blocks import RegisterTileRule, extents, schedule_register_tile
from .tiling import accumulator_budget, largest_divisor, sample_divisor

#: Name of the block that ``LegalizeOps`` gives ``relax.matmul``.
MATMUL_BLOCK = "matmul"


class DenseMatmul(RegisterTileRule):
    """Schedule rule for a 2-D ``matmul`` (``linear`` after its constant transpose is folded)."""

    block_name = MATMUL_BLOCK

    def accepts(self, sch, block, target):
        return len(sch.get(block).writes[0].source.shape) == 2

    @staticmethod
    def default_tile(target, rows, cols):
        """Rows and columns of the untuned register tile."""
        lanes = vector_lanes(target)
        nt = largest_divisor(cols, 2 * lanes)
        mt = largest_divisor(rows, max(1, accumulator_budget(target) // -(-nt // lanes)))
        return mt, nt

    def schedule_block(self, sch, block, target, tunable):
        rows, cols = extents(sch.get(block).writes[0].source)
        mt, nt = self.default_tile(target, rows, cols)
        if tunable:
            mt = sample_divisor(sch, rows, 16, mt)
            nt = sample_divisor(sch, cols, 4 * vector_lanes(target), nt)
        schedule_register_tile(sch, block, [mt, nt], accumulator_order=[0, 1])
