"""Dense pointwise (1x1, stride 1, no padding) NCHW ``conv2d``, its pixels as one row, for x86 and ARM CPUs.

A 1x1 convolution is a matrix product ``[K, C] x [C, H*W]``: an image's ``H*W`` pixels are one
contiguous row per channel, whatever the map's width. When that row holds whole vectors, the
register tile is ``kt`` filters x ``xt`` pixels with the pixels along the vector lanes: each input
channel adds ``kt`` broadcast weights times one contiguous, aligned segment of the input row, and
the tile is written out with contiguous vector stores. Compared with the channel-vectorized kernel
of :mod:`schedules.dense.conv2d`, no weight packing is needed and the write-out (with the fused
bias, residual add and ReLU/ReLU6) is not transposed, which matters for the short reductions
(C = 16..160) and small maps (16x16 to 4x4) of MobileNetV2's expansion and projection layers.

The schedule first merges the row and column iterators of every block into one pixel iterator
(``transform_block_layout``), so tiles run along the flattened map, not along its rows.
"""

from tvm.s_tir.dlight.analysis import get_root_block
from tvm.tirx import IndexMap

from ..target_info import vector_lanes
from .blocks import RegisterTileRule, cache_accumulator, column_stride, extents, schedule_register_tile
from .padding import schedule_padding
from .tiling import MIN_ACCUMULATORS, accumulator_budget, largest_divisor, sample_divisor, stack_accumulators

#: Name of the convolution block that ``LegalizeOps`` gives a groups = 1 NCHW ``conv2d``.
CONV_BLOCK = "conv2d_nchw"


def is_pointwise_rows(sch, conv, target):
    """Whether the groups = 1 convolution block ``conv`` is 1x1, stride 1, unpadded, with whole vectors of pixels.

    "Whole vectors": an image's ``H*W`` output pixels are a multiple of the vector width.
    """
    weight = extents(sch.get(conv).reads[1].source)
    _, _, height, width = extents(sch.get(conv).writes[0].source)
    unpadded = extents(sch.get(conv).reads[0].source)[2:] == [height, width]
    return (len(weight) == 4 and weight[2:] == [1, 1] and column_stride(sch, conv) == 1 and unpadded
            and (height * width) % vector_lanes(target) == 0)


def flatten_pixels(sch, conv):
    """Merge the row and column iterators of every block of the function into one pixel iterator.

    The convolution's output (an intermediate once it is cached) becomes ``[N, K, H*W]``; every
    block's iterators ``(n, k, y, x, ...)`` become ``(n, k, y * W + x, ...)``.
    """
    cache_accumulator(sch, conv)
    width = extents(sch.get(conv).writes[0].source)[3]
    sch.transform_layout(conv, ("write", 0), lambda n, k, y, x: (n, k, y * width + x))
    for block in sch.get_child_blocks(get_root_block(sch)):
        ndim = len(sch.get(block).iter_vars)
        sch.transform_block_layout(
            block, IndexMap.from_func(lambda n, k, y, x, *rest: (n, k, y * width + x, *rest), ndim=ndim))


class PointwiseConv2dRows(RegisterTileRule):
    """Schedule rule for 1x1 stride-1 unpadded NCHW convolutions whose maps hold whole vectors."""

    block_name = CONV_BLOCK

    def accepts(self, sch, block, target):
        return is_pointwise_rows(sch, block, target)

    @staticmethod
    def default_tile(target, filters, pixels):
        """Filters and pixels of the untuned register tile: a few vectors of pixels, several filters.

        Each input channel adds ``kt`` broadcast weights times the vectors of inputs it loads.
        ``kt`` is at most half the accumulator budget and keeps the tile within the stack
        (:func:`schedules.dense.tiling.stack_accumulators`): a larger tile's accumulators are a
        workspace that each tile allocates, zeroes, stores and reloads, which costs more than the
        larger tile's reuse saves, for expansions and projections alike (``docs/performance.md``).
        The pixels are one vector, or more where ``kt`` filters alone are fewer than
        :data:`~schedules.dense.tiling.MIN_ACCUMULATORS` (16 registers, as on AVX2: 6 filters x 2 vectors).
        """
        lanes, budget, stack = vector_lanes(target), accumulator_budget(target), stack_accumulators(target)
        kt = largest_divisor(filters, min(budget // 2, stack))
        vectors = min(-(-MIN_ACCUMULATORS // kt), max(1, min(budget, stack) // kt))
        return kt, lanes * largest_divisor(pixels // lanes, vectors)

    def schedule_block(self, sch, block, target, tunable):
        _, filters, height, width = extents(sch.get(block).writes[0].source)
        pixels = height * width
        kt, xt = self.default_tile(target, filters, pixels)
        if tunable:
            kt = sample_divisor(sch, filters, 32, kt)
            xt = sample_divisor(sch, pixels, 4 * vector_lanes(target), xt)
        padding = schedule_padding(sch, vector_lanes(target))
        flatten_pixels(sch, block)
        schedule_register_tile(sch, block, [1, kt, xt], accumulator_order=[0, 1, 2], padding=padding)
