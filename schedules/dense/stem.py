"""Dense NCHW ``conv2d`` over few input channels (a network's stem) for x86 and ARM CPUs.

A stem convolution reads the image's three channels through a large window (ResNet's 7x7 stride 2)
or a small one (MobileNet's 3x3 stride 2): its reduction per output is short (147 or 27 terms).
In the channel-vectorized kernel of :mod:`schedules.dense.conv2d` each register tile then spends
as much time writing its outputs as computing them: the tile holds a vector of filters per pixel,
and writing it to the NCHW output transposes it. Here the vector lanes run along the output row,
as in the depthwise kernel (:mod:`schedules.dense.depthwise`): a register tile of ``kt`` filters x
``yt`` rows x ``xt`` columns adds, per input channel and tap, ``kt`` broadcast weights times the
tile's rows of inputs, and is written out with contiguous vector stores. No weight packing is
needed. With a column stride ``s`` > 1 the padded input is stored with its columns split by
residue (:mod:`schedules.dense.padding`), so every tap reads contiguous rows. The parallel tiles
run in bands of rows, every filter of a band before the next, and the threads share out the
padding by rows too: each thread pads the rows its own tiles read. Shared out by channels, every
thread would read the channels padded by the other from that core's cache, a slow path between
cores (``docs/performance.md``, "Two threads: each core pads and reads its own rows").
Bias, folded BatchNorm, residual add and ReLU/ReLU6 are applied as each tile is written out.
"""

from ..profiles import profile_for
from ..target_info import vector_lanes
from .blocks import CONV_BLOCK, RegisterTileRule, column_stride, extents, schedule_register_tile
from .padding import schedule_padding, splits_columns
from .tiling import accumulator_budget, largest_divisor, sample_divisor

#: Most input channels of a stem convolution: an image's channels (RGB, RGBA).
MAX_STEM_CHANNELS = 4


def is_stem(sch, conv, target):
    """Whether the groups = 1 convolution block ``conv`` is one that :class:`StemConv2dNCHW` schedules.

    The target's profile takes the kernel (``stem_pixels_in_lanes``), and the convolution reads at
    most :data:`MAX_STEM_CHANNELS` channels through a window larger than 1x1, its weight is not
    packed, and its output rows are whole vectors of ``target``. A strided one qualifies only when
    its padding stage splits the columns by residue (:func:`~schedules.dense.padding.splits_columns`):
    otherwise each vector of inputs would be gathered one element at a time.
    """
    if not profile_for(target).stem_pixels_in_lanes:
        return False
    weight = extents(sch.get(conv).reads[1].source)
    width = extents(sch.get(conv).writes[0].source)[3]
    if len(weight) != 4 or weight[1] > MAX_STEM_CHANNELS or weight[2] * weight[3] == 1:
        return False
    if width % vector_lanes(target):
        return False
    stride = column_stride(sch, conv)
    return stride == 1 or splits_columns(sch, stride)


class StemConv2dNCHW(RegisterTileRule):
    """Schedule rule for groups = 1 NCHW convolutions over few input channels (:func:`is_stem`)."""

    block_name = CONV_BLOCK

    def accepts(self, sch, block, target):
        return is_stem(sch, block, target)

    @staticmethod
    def default_tile(target, filters, height, width):
        """Filters, rows and columns ``(kt, yt, xt)`` of the untuned register tile: one vector x 2 rows x
        as many filters as the accumulators allow.

        Each tap loads ``yt`` vectors of inputs and broadcasts ``kt`` weights for ``kt * yt``
        multiply-adds. Wider tiles are slower: LLVM splits a vector of several registers' lanes
        through the stack.
        """
        lanes, budget = vector_lanes(target), accumulator_budget(target)
        xt = largest_divisor(width, lanes)
        yt = largest_divisor(height, 2)
        kt = largest_divisor(filters, max(1, budget // yt))
        return kt, yt, xt

    def schedule_block(self, sch, block, target, tunable):
        _, filters, height, width = extents(sch.get(block).writes[0].source)
        kt, yt, xt = self.default_tile(target, filters, height, width)
        if tunable:
            kt = sample_divisor(sch, filters, 16, kt)
            yt = sample_divisor(sch, height, 4, yt)
        padding = schedule_padding(sch, vector_lanes(target), column_stride(sch, block), by_rows=True)
        # bands of rows outermost: each thread pads the input rows its tiles read (PaddingStage.by_rows)
        schedule_register_tile(sch, block, [1, kt, yt, xt], accumulator_order=[0, 1, 2, 3], padding=padding,
                               unrolled_reductions=1, tile_order=[0, 2, 1, 3])
