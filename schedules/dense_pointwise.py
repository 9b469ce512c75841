"""Dense pointwise (1x1, stride 1) NCHW ``conv2d`` with wide rows, for x86 and ARM CPUs.

A 1x1 convolution is a matrix product ``[K, C] x [C, H*W]`` in which the output rows are
contiguous. When a row holds two vectors or more, the register tile is ``kt`` filters x ``xt``
columns with the columns along the vector lanes: each input channel adds ``kt`` broadcast
weights times one contiguous row segment of the input, and the tile is written out with
contiguous vector stores. Compared with the channel-vectorized kernel of
:mod:`schedules.dense_conv2d`, no weight packing is needed and the write-out (with the fused
bias, residual add and ReLU/ReLU6) is not transposed, which matters for the short reductions
(C = 16..96) of MobileNetV2's expansion and projection layers.
"""

from .dense_blocks import RegisterTileRule, column_stride, extents, schedule_padding, schedule_register_tile
from .dense_tiling import accumulator_budget, largest_divisor, sample_divisor
from .target_info import vector_lanes

#: Name of the convolution block that ``LegalizeOps`` gives a groups = 1 NCHW ``conv2d``.
CONV_BLOCK = "conv2d_nchw"


def is_wide_pointwise(sch, conv, target):
    """Whether the groups = 1 convolution block ``conv`` is 1x1, stride 1, with rows of two or more vectors.

    (Rows of one vector measured slower than the channel-vectorized kernel on AVX-512.)
    """
    weight = extents(sch.get(conv).reads[1].source)
    width = extents(sch.get(conv).writes[0].source)[3]
    return (len(weight) == 4 and weight[2:] == [1, 1] and column_stride(sch, conv) == 1
            and width % (2 * vector_lanes(target)) == 0)


class PointwiseConv2dRows(RegisterTileRule):
    """Schedule rule for 1x1 stride-1 NCHW convolutions whose output rows hold two or more vectors."""

    block_name = CONV_BLOCK

    def accepts(self, sch, block, target):
        return is_wide_pointwise(sch, block, target)

    @staticmethod
    def default_tile(target, channels, width):
        """Filters and columns of the untuned register tile: up to two vectors of columns."""
        lanes = vector_lanes(target)
        xt = largest_divisor(width, 2 * lanes)
        return largest_divisor(channels, accumulator_budget(target) // (xt // lanes)), xt

    def schedule_block(self, sch, block, target, tunable):
        _, channels, _, width = extents(sch.get(block).writes[0].source)
        kt, xt = self.default_tile(target, channels, width)
        if tunable:
            kt = sample_divisor(sch, channels, 32, kt)
            xt = sample_divisor(sch, width, 4 * vector_lanes(target), xt)
        schedule_padding(sch)
        schedule_register_tile(sch, block, [1, kt, 1, xt], accumulator_order=[0, 1, 2, 3])
