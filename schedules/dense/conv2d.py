"""Dense NCHW ``conv2d`` (groups = 1, any kernel, stride, padding, dilation) for x86 and ARM CPUs.

The kernel is the register-tiled direct convolution of GEMM libraries: an output tile of
``kb`` channels x ``yt`` rows x ``xt`` columns stays in vector registers (``kb`` along the
vector lanes) while the loop runs over input channels and kernel taps; each step loads one
vector of ``kb`` filter weights and broadcasts one input value per output pixel. For that
vector load to be contiguous, the constant weight ``[K, C, R, S]`` is packed at compile time to
``[K / kb, C, R, S, kb]`` (:class:`WeightPacking`, applied by
``relay_passes.schedule_dense.PackDenseWeights``); :class:`DenseConv2dNCHW` schedules the
packed function. Bias, folded BatchNorm, residual add and ReLU/ReLU6 are applied as each tile is
written out.

Tuning: with ``tunable=True`` the tile rows and columns are sampled (``sample_categorical``)
among the divisors of the output height and width, so MetaSchedule can search them.
"""

import math
from dataclasses import dataclass

import numpy as np
from tvm import s_tir

from ..profiles import profile_for
from ..target_info import as_target, vector_lanes
from .blocks import (CONV_BLOCK, ConstantWeightPacking, RegisterTileRule, extents, find_block,
                     is_unscheduled_cpu_func, loop_after, param_index, schedule_register_tile)
from .padding import pads_nothing, schedule_padding
from .prefetch import annotate_weight_prefetch, chunk_channels, prefetches_weights
from .pointwise import is_pointwise, is_pointwise_rows, schedule_panels
from .pointwise_panels import filter_lane_panel, ragged_filter_panel
from .stem import is_stem
from .tiling import channel_block, conv_tile, filter_tiles_innermost, sample_divisor


@dataclass(frozen=True)
class WeightPacking(ConstantWeightPacking):
    """The compile-time layout change of a convolution weight: ``[K, C, R, S]`` -> ``[K/kb, C, R, S, kb]``.

    Attributes
    ----------
    channels_per_block : int
        ``kb``, the output channels of one register tile (a multiple of the vector width when
        the channel count allows).
    """

    channels_per_block: int

    block_name = CONV_BLOCK

    def index_map(self, k, c, r, s):
        """The new indices of weight element ``[k, c, r, s]``."""
        kb = self.channels_per_block
        return k // kb, c, r, s, k % kb

    def pack(self, weight):
        """Pack a ``[K, C, R, S]`` numpy weight the way :meth:`apply` changed the function."""
        k, c, r, s = weight.shape
        kb = self.channels_per_block
        return np.ascontiguousarray(weight.reshape(k // kb, kb, c, r, s).transpose(0, 2, 3, 4, 1))


def conv2d_weight_packing(func, target):
    """The weight packing that :class:`DenseConv2dNCHW` needs for ``func``, or None.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        A legalized (possibly fused) function.
    target : tvm.target.Target

    Returns
    -------
    WeightPacking or None
        None when ``func`` has no groups = 1 NCHW convolution reading an unpacked 4-D weight
        parameter, when the target is not a CPU, or when the convolution is a pointwise one that
        :class:`schedules.dense.pointwise.PointwiseConv2dRows` or a stem that
        :class:`schedules.dense.stem.StemConv2dNCHW` schedules without packing.
    """
    target = as_target(target)
    if not is_unscheduled_cpu_func(func, target):
        return None
    sch = s_tir.Schedule(func)
    conv = find_block(sch, (CONV_BLOCK,))
    if conv is None:
        return None
    weight = sch.get(conv).reads[1].source
    index = param_index(func, weight)
    if index is None or len(weight.shape) != 4 or is_pointwise_rows(sch, conv, target) or is_stem(sch, conv, target):
        return None
    _, filters, height, width = extents(sch.get(conv).writes[0].source)
    if is_pointwise(sch, conv) and pads_nothing(sch):
        shape = (extents(weight)[1], filters, height, width)
        ragged = ragged_filter_panel(target, shape)
        if ragged is not None:
            return WeightPacking(index, ragged[0][0])
        flat = channel_block(filters, target, 1, height * width)  # a panel's tiles run along the flattened map
        if filter_lane_panel(target, shape, flat) is not None:
            return WeightPacking(index, flat)
    return WeightPacking(index, channel_block(filters, target, height, width))


def row_bands(target, input_shape, weight_shape, row_tiles):
    """Bands of rows that the threads share a padded convolution out by (see ``row_bands`` of
    :func:`~schedules.dense.blocks.schedule_register_tile`): 2, or 1 (by filter tiles).

    Shared out by filter tiles, each thread reads the whole padded input, the half padded by the
    other thread from that core's cache; by bands, each reads its own rows, and the whole weight
    instead of its filters' share, with fewer pixels per filter tile. Bands where the padded
    input is larger than the weight and than the profile's ``row_band_min_input_bytes`` (none
    without it), and the row tiles split in two.

    Parameters
    ----------
    target : tvm.target.Target
    input_shape : list of int
        The padded input ``[N, C, H, W]``.
    weight_shape : list of int
        The packed weight ``[K / kb, C, R, S, kb]``.
    row_tiles : int
        Tiles along the output rows.
    """
    least = profile_for(target).row_band_min_input_bytes
    input_bytes = 4 * math.prod(input_shape)
    large = least is not None and input_bytes > max(least, 4 * math.prod(weight_shape))
    return 2 if large and row_tiles % 2 == 0 else 1


class DenseConv2dNCHW(RegisterTileRule):
    """Schedule rule for a groups = 1 NCHW convolution whose weight is packed (:class:`WeightPacking`).

    Parameters
    ----------
    max_tile_width : int
        Largest number of output columns in a register tile (the default tile is at most this
        wide, and as tall as the target's registers allow).
    """

    block_name = CONV_BLOCK

    def __init__(self, max_tile_width=8):
        self.max_tile_width = max_tile_width

    def accepts(self, sch, block, target):
        return len(sch.get(block).reads[1].source.shape) == 5

    def default_tile(self, target, kb, height, width):
        """Rows and columns of the untuned register tile."""
        return conv_tile(target, kb, height, width, self.max_tile_width)

    def pointwise_panel(self, sch, block, target):
        """The register tile ``(kb, pixels)`` and the :class:`~schedules.dense.pointwise_panels.Panel` of a pointwise ``block``.

        None unless the convolution is 1x1, stride 1 and unpadded and
        :func:`~schedules.dense.pointwise_panels.filter_lane_panel` gives it panels; the tile's pixels then
        run along the flattened map, the last tile ragged where the weight was packed for
        :func:`~schedules.dense.pointwise_panels.ragged_filter_panel`.
        """
        if not is_pointwise(sch, block) or not pads_nothing(sch):
            return None
        _, filters, height, width = extents(sch.get(block).writes[0].source)
        _, channels, _, _, kb = extents(sch.get(block).reads[1].source)
        shape = (channels, filters, height, width)
        ragged = ragged_filter_panel(target, shape)
        if ragged is not None and ragged[0][0] == kb:
            return ragged
        return filter_lane_panel(target, shape, kb, self.max_tile_width)

    def schedule_block(self, sch, block, target, tunable):
        """Schedule in panels where :meth:`pointwise_panel` gives some (not tuned), else by 2-D tiles."""
        panel = self.pointwise_panel(sch, block, target)
        if panel is not None:
            _, _, height, width = extents(sch.get(block).writes[0].source)
            schedule_panels(sch, block, *panel, vector_lanes(target), filters_in_lanes=True,
                            prefetch_weights=prefetches_weights(target, height * width))
            return
        images, filters, height, width = extents(sch.get(block).writes[0].source)
        weight = extents(sch.get(block).reads[1].source)
        _, channels, taps_y, taps_x, kb = weight
        default = self.default_tile(target, kb, height, width)
        yt, xt = default
        if tunable:
            yt = sample_divisor(sch, height, 8, yt)
            xt = sample_divisor(sch, width, 16, xt)
        innermost = filter_tiles_innermost(target, math.prod(weight))
        padded = sch.get(block).reads[0].source
        bands = 1 if innermost or tunable else row_bands(target, extents(padded), weight, height // yt)
        padding = schedule_padding(sch, vector_lanes(target), by_rows=bands > 1)
        # Output axes (n, k, y, x); the accumulator tile is laid out (n, y, x, k), k in lanes.
        tiles = schedule_register_tile(sch, block, [1, kb, yt, xt], accumulator_order=[0, 2, 3, 1], padding=padding,
                                       tile_order=[0, 2, 3, 1] if innermost else None, row_bands=bands)
        if not innermost and prefetches_weights(target, height * width):
            # the loop over tiles runs filter tiles (of every image, in every band) outside pixel tiles
            chunk = chunk_channels(channels, taps_y * taps_x * math.prod(default) * -(-kb // vector_lanes(target)))
            annotate_weight_prefetch(sch, loop_after(sch, block, tiles), tiles, bands * images * filters // kb, chunk)
