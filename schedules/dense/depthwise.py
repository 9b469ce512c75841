"""Dense NCHW grouped and depthwise ``conv2d`` for x86 and ARM CPUs.

A depthwise filter has no reduction over channels to share, so the vector lanes run along the
output row: a register tile of ``yt`` rows x ``xt`` columns of one channel accumulates
``R x S`` taps (for grouped convolutions, also the ``C / groups`` input channels of the group),
each a broadcast weight times a row of inputs. No weight packing is needed: the weight is
read one scalar at a time. With a column stride ``s`` > 1 a row of inputs would be a strided
gather; the padded input is then stored with its columns split by residue
(``[.., x % s, x // s]``, :mod:`schedules.dense.padding`), which makes every tap's row of inputs
contiguous again. Bias, folded BatchNorm, residual add and ReLU/ReLU6 are applied as each tile is
written out.
"""

from ..profiles import profile_for
from ..target_info import vector_lanes, vector_registers
from .blocks import SPATIAL, RegisterTileRule, column_stride, extents, schedule_register_tile
from .padding import schedule_padding
from .tiling import MIN_ACCUMULATORS, accumulator_budget, divisors, largest_divisor, sample_divisor

#: Name of the convolution block that ``LegalizeOps`` gives an NCHW ``conv2d`` with groups > 1.
GROUP_CONV_BLOCK = "group_conv2d_nchw"

#: Name of the reduction block that ``LegalizeOps`` gives an NCHW ``max_pool2d``.
MAX_POOL_BLOCK = "max_pool2d"

#: Fewest elements of a padded input channel for which each channel is padded right before its
#: tiles (:attr:`schedules.dense.padding.PaddingStage.per_channel`); smaller ones pad all
#: channels first. Fitted on Zen 4 (``docs/performance.md``).
PER_CHANNEL_MIN_ELEMENTS = 1024


class DepthwiseConv2dNCHW(RegisterTileRule):
    """Schedule rule for NCHW convolutions with groups > 1 (depthwise included).

    Parameters
    ----------
    max_tile_rows : int
        Largest number of output rows in a register tile for a window of three rows or fewer.
    """

    block_name = GROUP_CONV_BLOCK

    def __init__(self, max_tile_rows=4):
        self.max_tile_rows = max_tile_rows

    def default_tile(self, target, height, width, window_rows=3):
        """Rows and columns of the untuned register tile: a few vectors wide, rows as registers allow.

        The taps of the window are unrolled, so a tile of ``yt`` rows loads ``yt + window_rows - 1``
        input rows once each; a window taller than three rows gets at least ``2 (window_rows - 1)``
        rows, so that the window's overlap is at most a third of the rows loaded. With 16 registers
        (AVX2) the columns are whole vectors where the width has such a divisor: each row of a
        tile ending inside a vector computes its rest apart (56-wide maps: 8 columns, not 14).
        Where it has none, the columns are up to four vectors wide, so that fewer rows end inside
        a vector (28-wide maps: 2 rows of 28 columns, not 4 rows of 14).
        """
        lanes = vector_lanes(target)
        xt = largest_divisor(width, 2 * lanes)
        whole_vectors = [d for d in divisors(width, 2 * lanes) if d % lanes == 0]
        if vector_registers(target) <= 16:
            xt = whole_vectors[0] if whole_vectors else largest_divisor(width, 4 * lanes)
        vectors_per_row = -(-xt // lanes)
        most_rows = max(1, accumulator_budget(target) // vectors_per_row)
        rows = largest_divisor(height, min(max(self.max_tile_rows, 2 * (window_rows - 1)), most_rows))
        if rows * vectors_per_row < MIN_ACCUMULATORS:
            rows = largest_divisor(height, most_rows)
        return rows, xt

    def schedule_block(self, sch, block, target, tunable):
        _, _, height, width = extents(sch.get(block).writes[0].source)
        window_rows = window(sch, block)[0]
        yt, xt = self.default_tile(target, height, width, window_rows)
        if tunable:
            yt = sample_divisor(sch, height, 8, yt)
            xt = sample_divisor(sch, width, 4 * vector_lanes(target), xt)
        padding = schedule_padding(sch, vector_lanes(target), column_stride(sch, block),
                                   per_channel=pads_per_channel(sch, block),
                                   per_row_band=pads_per_row_band(sch, block, target))
        schedule_register_tile(sch, block, [1, 1, yt, xt], accumulator_order=[0, 1, 2, 3], padding=padding,
                               unrolled_reductions=2)


def window(sch, block):
    """Rows and columns of the kernel window of a convolution or pooling block (its last two reductions)."""
    reductions = [var for var in sch.get(block).iter_vars if int(var.iter_type) != SPATIAL]
    return [int(var.dom.extent) for var in reductions[-2:]]


def reads_own_channel(sch, block):
    """Whether each output channel of ``block`` reads its own input channel and no other.

    True for a depthwise convolution with one filter per channel and for pooling, whose padding
    can then be filled channel by channel (:attr:`schedules.dense.padding.PaddingStage.per_channel`);
    a grouped convolution reads the channels of its group.
    """
    conv = sch.get(block)
    reductions = [var for var in conv.iter_vars if int(var.iter_type) != SPATIAL]
    same_channels = extents(conv.reads[0].source)[1] == extents(conv.writes[0].source)[1]
    return same_channels and all(int(var.dom.extent) == 1 for var in reductions[:-2])


def pads_per_channel(sch, block):
    """Whether ``block`` fills its padding one channel at a time, right before the channel's tiles.

    Only where each output channel reads its own input channel (:func:`reads_own_channel`), and
    only for padded channels of at least :data:`PER_CHANNEL_MIN_ELEMENTS`: the copy is then still in
    the cache when the tiles read it. On smaller maps padding all channels first measured faster.
    """
    height, width = extents(sch.get(block).reads[0].source)[2:]
    return reads_own_channel(sch, block) and height * width >= PER_CHANNEL_MIN_ELEMENTS


def pads_per_row_band(sch, block, target):
    """Whether ``block``'s padding, where filled per channel (:func:`pads_per_channel`), is filled by bands of tile rows.

    Where a padded channel is larger than the target's L1 data cache (112x112 maps): the tiles
    then read a band's copy from L1, not the whole channel's from L2.
    :func:`~schedules.dense.padding.schedule_padding` bands only a padding filled per channel.
    """
    height, width = extents(sch.get(block).reads[0].source)[2:]
    return 4 * height * width > profile_for(target).l1_data_bytes


class MaxPool2dNCHW(DepthwiseConv2dNCHW):
    """Schedule rule for NCHW max pooling: a depthwise window reduction whose sum is a maximum.

    The register tile, the split of strided columns and the shared parallel launch of the padding
    are those of :class:`DepthwiseConv2dNCHW`; the NaN-propagating maximum of
    ``relay_passes.nan_propagation`` is the reduction's body, unchanged.
    """

    block_name = MAX_POOL_BLOCK
