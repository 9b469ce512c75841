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

On large inputs, a tile that reads its whole input column (all channels of its pixels) streams it
from beyond the L1 cache, at a stride of a whole map per channel (a power of two on 16x16 and
32x32 maps, where every channel falls in the same cache set). Where the target's profile sets
``panel_pixels``, the output is computed in panels of whole rows, in parallel (the loop nest of
GEMM libraries, without packing the weights): for each block of channels, the panel's input is
copied into one contiguous buffer that stays in the L1 cache while every filter tile of the panel
reads it, and the tiles add into the panel's partial sums, which LLVM keeps in registers across
the block's channels. The epilogue writes the panel out once all channels are summed.
Panels pay on long reductions, or on inputs larger than the L2 cache, with enough filters to
share the copy (:func:`~schedules.dense.pointwise_panels.panels_pay`). On maps whose pixel count has no
divisor that fills the accumulators (7x7), a panel's tiles may be ragged
(:func:`~schedules.dense.pointwise_panels.ragged_filter_panel`).

A panel's tiles add each channel block into the panel's partial sums, which are stored and
reloaded once per block, and its copy reads a whole panel's input from beyond the L2 cache at
once. Where the profile sets ``pointwise_columns``, the layers that panels would serve are
computed by columns instead (:func:`~schedules.dense.pointwise_panels.column_tile`, :func:`schedule_columns`; the loop nest of a
GEMM micro-kernel over a packed panel of the input): each parallel task copies the whole input
column of one tile of pixels (all channels, a few vectors of pixels) into a contiguous buffer
in the L1 cache, and every filter tile sums the whole reduction over it in registers and writes
its outputs once, with the epilogue.
"""

from tvm.s_tir.dlight.analysis import get_root_block
from tvm.tirx import IndexMap

from ..profiles import profile_for
from ..target_info import vector_lanes
from .blocks import (CONV_BLOCK, RegisterTileRule, cache_accumulator, column_stride, extents, inline_epilogue,
                     schedule_register_tile)
from .padding import pads_nothing, schedule_padding
from .pointwise_panels import column_tile, default_panel, input_bytes, output_bytes
from .prefetch import annotate_weight_prefetch, chunk_channels
from .tiling import (MIN_ACCUMULATORS, accumulator_budget, filter_tiles_innermost, largest_divisor, sample_divisor,
                     stack_accumulators)


def is_pointwise(sch, conv):
    """Whether the groups = 1 convolution block ``conv`` is 1x1, stride 1 and unpadded.

    Its weight may be packed or not. "Unpadded": no border is added to what it reads (a padding
    block of the function that pads nothing is not a border). A strided 1x1 convolution reaches
    the schedules as a stride-1 one on a copy of the pixels it reads (``relay_passes.strided_pointwise``).
    """
    weight = extents(sch.get(conv).reads[1].source)
    output_map = extents(sch.get(conv).writes[0].source)[2:]
    input_map = extents(sch.get(conv).reads[0].source)[2:]
    return weight[2:4] == [1, 1] and column_stride(sch, conv) == 1 and input_map == output_map


def is_pointwise_rows(sch, conv, target):
    """Whether the groups = 1 convolution block ``conv`` is pointwise, unpacked, with whole vectors of pixels.

    "Whole vectors": an image's ``H*W`` output pixels are a multiple of the vector width.
    """
    _, _, height, width = extents(sch.get(conv).writes[0].source)
    return (len(sch.get(conv).reads[1].source.shape) == 4 and is_pointwise(sch, conv)
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


def schedule_columns(sch, accumulate, tile, lanes):
    """Schedule a pointwise convolution by columns (:func:`~schedules.dense.pointwise_panels.column_tile`), in parallel; its pixels are flattened first.

    Each task is one tile of pixels: it copies their input column into a contiguous buffer, then
    each filter tile in turn sums all input channels in registers and writes its outputs.

    Parameters
    ----------
    sch : tvm.s_tir.Schedule
    accumulate : SBlockRV
        The convolution block (:func:`is_pointwise`, unpacked weight, whole vectors of pixels).
    tile : tuple of int
        ``(kt, xt)``: filters and pixels of the register tile; ``xt`` divides the map.
    lanes : int
        Vector lanes of the target.
    """
    kt, xt = tile
    if schedule_padding(sch, lanes) is not None:
        raise ValueError("schedule_columns takes a convolution whose padding block pads nothing (pads_nothing)")
    data = sch.get(accumulate).reads[0].source
    flatten_pixels(sch, accumulate)
    images, filters, pixels = sch.get_loops(inline_epilogue(sch, accumulate))
    filter_tiles, tile_filters = sch.split(filters, [None, kt])
    columns, column_pixels = sch.split(pixels, [None, xt])
    sch.reorder(images, columns, filter_tiles, tile_filters, column_pixels)
    parallel = sch.fuse(images, columns)
    sch.parallel(parallel)
    vectorize_split(sch, column_pixels, lanes)

    sch.compute_at(accumulate, filter_tiles, preserve_unit_loops=True)
    image, tile_filters, tile_pixels, channels, *taps = sch.get_loops(accumulate)[2:]
    sch.reorder(channels, *taps, image, tile_filters, tile_pixels)
    sch.unroll(tile_filters)
    sch.vectorize(tile_pixels)

    copy_flat_input(sch, accumulate, data, parallel, lanes)
    sch.decompose_reduction(accumulate, channels)


def schedule_panels(sch, accumulate, tile, panel, lanes, filters_in_lanes=False, prefetch_weights=False):
    """Schedule a pointwise convolution in panels (:class:`~schedules.dense.pointwise_panels.Panel`), in parallel; its pixels are flattened first.

    Parameters
    ----------
    sch : tvm.s_tir.Schedule
    accumulate : SBlockRV
        The convolution block (:func:`is_pointwise`).
    tile : tuple of int
        ``(kt, xt)``: filters and pixels of the register tile.
    panel : schedules.dense.pointwise_panels.Panel
    lanes : int
        Vector lanes of the target.
    filters_in_lanes : bool
        Whether the tile's filters are its vector lanes (the packed weight of
        :class:`schedules.dense.conv2d.WeightPacking`, each input pixel broadcast), rather than its pixels.
    prefetch_weights : bool
        Whether each pixel tile prefetches its share of the next filter tile's packed weights
        (``schedules.dense.prefetch``; only with ``filters_in_lanes``).
    """
    kt, xt = tile
    if schedule_padding(sch, lanes) is not None:
        raise ValueError("schedule_panels takes a convolution whose padding block pads nothing (pads_nothing)")
    data = sch.get(accumulate).reads[0].source
    flatten_pixels(sch, accumulate)
    if filters_in_lanes:
        sch.transform_layout(accumulate, ("write", 0), lambda n, k, p: (n, p, k))
    images, filters, pixels = sch.get_loops(inline_epilogue(sch, accumulate))
    filter_panels, panel_filters = sch.split(filters, [None, panel.filters])
    pixel_panels, panel_pixels = sch.split(pixels, [None, panel.pixels])
    written_in_vectors = panel_filters if filters_in_lanes else panel_pixels
    sch.reorder(images, filter_panels, pixel_panels, *([panel_pixels, panel_filters] if filters_in_lanes
                                                       else [panel_filters, panel_pixels]))
    parallel = sch.fuse(images, filter_panels, pixel_panels)
    sch.parallel(parallel)
    vectorize_split(sch, written_in_vectors, lanes)

    sch.compute_at(accumulate, parallel, preserve_unit_loops=True)
    image, filters, pixels, channels, *taps = sch.get_loops(accumulate)[1:]
    filter_tiles, tile_filters = sch.split(filters, [None, kt])
    pixel_tiles, tile_pixels = sch.split(pixels, [None, xt])
    channel_blocks, block_channels = sch.split(channels, [None, panel.channels])
    unrolled, vectorized = (tile_pixels, tile_filters) if filters_in_lanes else (tile_filters, tile_pixels)
    sch.reorder(channel_blocks, image, filter_tiles, pixel_tiles, block_channels, *taps, unrolled, vectorized)
    sch.unroll(unrolled)
    sch.vectorize(vectorized)
    if prefetch_weights and filters_in_lanes:
        annotate_weight_prefetch(sch, block_channels, pixel_tiles, 1, chunk_channels(panel.channels, xt * -(-kt // lanes)))

    copy_flat_input(sch, accumulate, data, channel_blocks, lanes)
    init = sch.decompose_reduction(accumulate, channel_blocks)
    vectorize_split(sch, sch.get_loops(init)[-1], lanes)


def copy_flat_input(sch, accumulate, data, loop, lanes):
    """Copy what ``accumulate`` reads of its input ``data`` under ``loop`` into a contiguous buffer, its pixels flattened.

    The copy (a ``cache_read``, compacted to the region one iteration of ``loop`` reads) runs at
    the top of ``loop``'s body in vector-wide pieces; the convolution then reads each channel's
    pixels as one contiguous run in the L1 cache.
    """
    copy = sch.cache_read(accumulate, [r.source.same_as(data) for r in sch.get(accumulate).reads].index(True), "global")
    width = int(sch.get(copy).reads[0].source.shape[3])
    sch.transform_layout(copy, ("write", 0), lambda n, c, y, x: (n, c, y * width + x))
    sch.transform_block_layout(copy, IndexMap.from_func(lambda n, c, y, x: (n, c, y * width + x), ndim=4))
    sch.compute_at(copy, loop)
    vectorize_split(sch, sch.get_loops(copy)[-1], lanes)


def vectorize_split(sch, loop, lanes):
    """Vectorize the innermost part of ``loop``: its largest divisor up to ``lanes``."""
    sch.vectorize(sch.split(loop, [None, largest_divisor(int(sch.get(loop).extent), lanes)])[1])


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
        Where the map holds a multiple of the profile's ``pointwise_pixel_vectors``, the tile takes
        as many vectors and divides ``kt`` by as many, if it keeps the accumulators it needs.
        """
        lanes, budget, stack = vector_lanes(target), accumulator_budget(target), stack_accumulators(target)
        wanted = profile_for(target).pointwise_pixel_vectors
        if wanted > 1 and (pixels // lanes) % wanted == 0:
            kt = largest_divisor(filters, min(budget // 2, stack) // wanted)
            if kt * wanted >= MIN_ACCUMULATORS:
                return kt, lanes * wanted
        kt = largest_divisor(filters, min(budget // 2, stack))
        vectors = min(-(-MIN_ACCUMULATORS // kt), max(1, min(budget, stack) // kt))
        return kt, lanes * largest_divisor(pixels // lanes, vectors)

    def schedule_block(self, sch, block, target, tunable):
        """Schedule by columns where :func:`~.pointwise_panels.column_tile` gives a tile, else in panels where :func:`~.pointwise_panels.default_panel`
        gives some (both with their default tile, not tuned), else by tiles."""
        _, filters, height, width = extents(sch.get(block).writes[0].source)
        channels = extents(sch.get(block).reads[1].source)[1]
        pixels, shape = height * width, (channels, filters, height, width)
        columns = column_tile(target, shape)
        if columns is not None and pads_nothing(sch):
            schedule_columns(sch, block, columns, vector_lanes(target))
            return
        kt, xt = self.default_tile(target, filters, pixels)
        panel = default_panel(target, shape, (kt, xt))
        if panel is not None and pads_nothing(sch):
            schedule_panels(sch, block, (kt, xt), panel, vector_lanes(target))
            return
        if tunable:
            kt = sample_divisor(sch, filters, 32, kt)
            xt = sample_divisor(sch, pixels, 4 * vector_lanes(target), xt)
        padding = schedule_padding(sch, vector_lanes(target))
        flatten_pixels(sch, block)
        schedule_register_tile(sch, block, [1, kt, xt], accumulator_order=[0, 1, 2], padding=padding,
                               tile_order=[0, 2, 1] if filter_tiles_innermost(target, channels * filters, input_bytes(shape),
                                                                              output_bytes(shape)) else None)
