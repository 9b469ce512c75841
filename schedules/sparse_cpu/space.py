"""The knob space of the sparse CPU kernels: the default config of a layer and the candidates a tuner tries.

A config (:class:`schedules.sparse_cpu.config.SpecializedConvConfig`) picks the code generator
(``codegen``: literal weights, or the table-driven compact code), the input layout (rows split by
stride phase; one aligned copy per tap column; register shifts; or, for maps much narrower than a
vector, the im2col matrix with the output pixels as one row) and the register tile, L1 blocking
and parallel split. The specialised code is the fastest on small layers, but its compile time
grows with the non-zeros; :func:`default_sparse_config` takes it while its estimated size is
within the target profile's ``code_budget_default``, the compact code otherwise. The numbers
fitted by measurement come from the target's :class:`schedules.profiles.TargetProfile`.
"""

import dataclasses
import math

import numpy as np

from tvm_sparse.formats import BlockPunchedWeight, BSRWeight, PatternWeight

from ..conv_geometry import make_geometry
from ..profiles import profile_for
from ..target_info import as_target, vector_lanes
from .config import SpecializedConvConfig, estimated_code_size
from .heuristics import (MIN_CHANNEL_BLOCK, accumulators_for, default_config, filter_parts, lanes_within_waste,
                         tile_within_waste)
from .layout import Layout, shifts_fit


def kernel_geometry(weight, data_shape, stride, padding):
    """The convolution a kernel computes for ``weight`` and the parameter shapes it declares.

    A 1x1 convolution (BSR, or block-punched with a 1x1 kernel) with stride 1 and no padding runs
    as one row of ``H * W`` pixels: no input copy, and full vectors however narrow the map; its
    parameters keep the NCHW shapes.

    Returns
    -------
    geometry : ConvGeometry
    param_shapes : tuple or None
        ``(data_shape, out_shape)`` when they differ from the geometry's.
    """
    is_bsr = isinstance(weight, BSRWeight)
    weight_shape = tuple(weight.shape[:2]) + ((1, 1) if is_bsr else tuple(weight.shape[2:]))
    geometry = make_geometry(data_shape, weight_shape, stride, padding)
    if not (geometry.kernel == (1, 1) and geometry.stride == (1, 1) and geometry.padding == (0, 0, 0, 0)):
        return geometry, None
    n, c, h, w = geometry.data_shape
    return make_geometry((n, c, 1, h * w), weight_shape), (geometry.data_shape, geometry.out_shape)


def stored_terms(weight):
    """Multiply-adds per output pixel of a sparse weight: the terms of the specialised code."""
    if isinstance(weight, BSRWeight):
        return int(np.count_nonzero(weight.values))
    if isinstance(weight, BlockPunchedWeight):
        n_filters = weight.shape[0]
        rows = np.minimum(weight.block[0], n_filters - np.arange(weight.grid[0]) * weight.block[0])
        kept = np.diff(weight.block_ptr).reshape(weight.grid)
        return int((kept * rows[:, None]).sum())
    return int(weight.values.size)


def block_rows_of(weight):
    """Filters that share their inputs in the format: the block rows (1 for patterns)."""
    return 1 if isinstance(weight, PatternWeight) else int(weight.block[0])


def _tile_filters(block_rows, lanes):
    """Preferred filters per register tile: a pattern pair, or a block row cut to the register file."""
    return 2 if block_rows == 1 else min(block_rows, 8 if lanes >= 16 else 4)


def one_row_block_tile(width_vectors, block_rows, lanes, accumulators, profile):
    """``(vectors, filters)`` of a block-row register tile over one row of ``width_vectors`` vectors.

    Each input vector feeds ``filters`` FMAs and each weight ``vectors``, so a tile that shares the
    accumulators between them loads least per FMA (2 vectors x 4 filters on AVX2: 6 loads per 8
    FMAs, against 9 for 1 x 8). Rows too short for more vectors (a linear layer's one pixel) give
    the accumulators to the filters of the block row.
    """
    tile_filters = _tile_filters(block_rows, lanes)
    vectors = tile_within_waste(width_vectors, min(width_vectors, accumulators // tile_filters, 4), profile)
    return vectors, min(block_rows, max(tile_filters, accumulators // vectors))


def private_input_split(geometry, out_rows, rows, profile):
    """``(row_tiles, filter_splits)`` of a config whose tasks copy their own input
    (:attr:`SpecializedConvConfig.private_input`).

    The profile's ``pixel_blocks`` row blocks per image, and the filters split into parts
    up to its ``parallel_tasks`` tasks, which the kernel merges at run time when it has fewer
    threads; each task copies its block's rows and the kernel's halo.
    """
    row_tiles_total = math.ceil(out_rows / rows)
    row_tiles = math.ceil(row_tiles_total / min(row_tiles_total, profile.pixel_blocks))
    row_blocks = math.ceil(row_tiles_total / row_tiles)
    return row_tiles, filter_parts(geometry, row_blocks, profile)


def one_row_split(geometry, config, profile, n_terms):
    """``(column_blocks, filter_splits)`` of a config whose output is one row of pixels per image.

    A 1x1 layer's map is one row (:func:`kernel_geometry`): read in place when its pixels are
    whole register tiles, else copied by each task (the part its tiles read) and cropped; so
    is the im2col row of a strided layer (:func:`im2col_config`). The row is cut into the
    profile's ``pixel_blocks`` column blocks and the filters into parts up to its
    ``parallel_tasks`` tasks. With two threads each core then computes every filter of
    half the pixels, the half it wrote in the layer before (a 3x3 layer's row blocks, or this
    split), rather than half the filters of all pixels: the other core's half of the input
    would come from its cache. But each core then reads the whole weight, where filter parts
    read half of it and the whole input. Where the profile's tasks outnumber its pixel blocks
    (the filters are split anyway), column blocks only where an image's input is larger than
    the weight's ``n_terms`` values; with one task per pixel block, on every one-row map.
    ``(1, filter_splits)`` unchanged otherwise, and for maps of several rows (their tasks take
    row blocks).
    """
    g = geometry
    layout = Layout(g, config)
    input_elements = im2col_bytes(g) // 4 if config.im2col else g.channels * g.height * g.width
    keeps_filter_parts = input_elements <= n_terms and profile.parallel_tasks > profile.pixel_blocks
    if layout.out_h != 1 or keeps_filter_parts:
        return 1, config.filter_splits
    blocks = min(layout.column_tiles_total, profile.pixel_blocks)
    return blocks, filter_parts(g, blocks, profile)


def compact_config(geometry, lanes, accumulators, block_rows, profile, n_terms, **knobs):
    """The default compact config: a pattern tile is one filter, a block-row tile up to the register file.

    The compact code runs every filter tile on one output tile before the next, so a channel
    block is as many channels as make that output tile's input window fit the profile's
    ``input_slab_bytes``. Tasks copy their own input (:func:`private_input_split`); a one-row
    map's tasks may split its pixels (:func:`one_row_split`, which weighs the input against the
    weight's ``n_terms``), prefetch the profile's ``one_row_prefetch_tiles`` tiles ahead and, with
    its ``one_row_filter_tiles_outer`` or where a task writes many streams
    (:func:`writes_many_streams`), run the filter tiles outside the output tiles. With
    register shifts or the filter tiles outside, one block of all channels. Every entry
    prefetches the profile's ``table_prefetch_bytes`` ahead in the table.
    """
    config = default_config(geometry, lanes, 0, profile, _tile_filters(block_rows, lanes), accumulators)
    filters = 1 if block_rows == 1 else min(config.filters, block_rows)
    if block_rows == 1:
        # One filter per tile: the rows take the whole accumulator budget (up to 8 rows), or half
        # of it with register shifts, whose shifted vectors need registers too.
        budget = accumulators // 2 if knobs.get("register_shifts") else accumulators
        rows = tile_within_waste(geometry.out_height, min(geometry.out_height, budget // config.vectors, 8), profile)
        knobs = {"rows": rows, **knobs}
    elif config.rows == 1:  # one-row tiles (a 1x1 layer's map as one row): vectors and filters share the budget
        vectors, filters = one_row_block_tile(math.ceil(geometry.out_width / config.lanes), block_rows, lanes,
                                              accumulators, profile)
        knobs = {"vectors": vectors, **knobs}
    # A 1x1 layer's one row of pixels: its tiles read a vector of every kept channel.
    one_row = geometry.out_height == 1
    prefetch = profile.one_row_prefetch_tiles if one_row else 0
    config = dataclasses.replace(config, **{"filters": filters, "codegen": "compact", "fma_chains": accumulators,
                                            "prefetch_tiles": prefetch,
                                            "prefetch_table_bytes": profile.table_prefetch_bytes, **knobs})
    row_tiles, filter_splits = private_input_split(geometry, geometry.out_height, config.rows, profile)
    split = {"row_tiles": row_tiles, "filter_splits": filter_splits, "private_input": True}
    config = dataclasses.replace(config, **{**split, **knobs})
    column_blocks, filter_splits = one_row_split(geometry, config, profile, n_terms)
    config = dataclasses.replace(config, **{"column_blocks": column_blocks, "filter_splits": filter_splits, **knobs})
    outer = one_row and (profile.one_row_filter_tiles_outer or writes_many_streams(geometry, config, profile))
    config = dataclasses.replace(config, **{"filter_tiles_outer": outer, **knobs})
    if config.register_shifts or config.filter_tiles_outer:
        # One block of all channels: a register-shift tile loads an input row once for all its
        # tap columns, so it streams its input from L2 fast enough; with the filter tiles outside,
        # no filter tile reads an output tile's input window while another left it in L1. One
        # block saves reloading the partial sums.
        return dataclasses.replace(config, channel_block=geometry.channels)
    window = ((config.rows - 1) * geometry.stride[0] + geometry.kernel[0]) * (
        (config.vectors * config.lanes - 1) * geometry.stride[1] + geometry.kernel[1]
    )
    channel_block = min(geometry.channels, max(MIN_CHANNEL_BLOCK, profile.input_slab_bytes // (4 * window)))
    return dataclasses.replace(config, channel_block=channel_block)


def writes_many_streams(geometry, config, profile):
    """Whether a task of a one-row map (a column block of its pixels, a part of its filters) writes
    at least the profile's ``one_row_outer_min_output_bytes`` from an input within its ``l2_bytes``:
    its filter tiles then run outside its output tiles, each writing a few rows in sequence and
    reading the input again from L2."""
    g, least = geometry, profile.one_row_outer_min_output_bytes
    if least is None:
        return False
    pixels = g.out_height * g.out_width / config.column_blocks
    task_input = 4 * g.channels * g.height * g.width / config.column_blocks
    fits_l2 = profile.l2_bytes is None or task_input <= profile.l2_bytes
    return fits_l2 and 4 * g.filters / config.filter_splits * pixels >= least


def im2col_bytes(geometry):
    """Bytes of the im2col input of a layer."""
    g = geometry
    return 4 * g.batch * g.channels * g.kernel[0] * g.kernel[1] * g.out_height * g.out_width


def im2col_config(geometry, lanes, accumulators, block_rows, profile, n_terms):
    """The compact code on the im2col layout: the ``OH x OW`` output pixels as one row of full vectors.

    For maps much narrower than a vector (4x4 in 16 lanes) the row layout wastes lanes; here a tile
    is ``vectors`` vectors of pixels of one filter (a pattern) or of a block row cut to the register
    file (its size, not the narrower vectors a short row takes, sets the filters). A channel block
    is the whole layer: its per-tile overhead outweighs L1 reuse. No prefetches of the input, the
    task's own copy in its cache; the table's as the profile's ``table_prefetch_bytes``, and the
    order of filter and output tiles as its ``one_row_filter_tiles_outer``.
    """
    g = geometry
    pixels = g.out_height * g.out_width
    row_lanes = lanes_within_waste(pixels, lanes, profile)
    width_vectors = math.ceil(pixels / row_lanes)
    if block_rows == 1:
        filters, vectors = 1, tile_within_waste(width_vectors, min(width_vectors, accumulators, 4), profile)
    else:
        vectors, filters = one_row_block_tile(width_vectors, block_rows, lanes, accumulators, profile)
    row_tiles, filter_splits = private_input_split(g, 1, 1, profile)
    config = SpecializedConvConfig(row_lanes, vectors, 1, filters, g.channels, row_tiles, filter_splits,
                                   codegen="compact", im2col=True, private_input=True, fma_chains=accumulators,
                                   prefetch_table_bytes=profile.table_prefetch_bytes,
                                   filter_tiles_outer=profile.one_row_filter_tiles_outer)
    column_blocks, filter_splits = one_row_split(g, config, profile, n_terms)
    return dataclasses.replace(config, column_blocks=column_blocks, filter_splits=filter_splits)


def prefers_im2col(geometry, lanes, row_lanes, profile):
    """Whether the default compact code takes the im2col layout: rows that fill a quarter of a
    vector or less, with an im2col input within the profile's ``im2col_bytes``, and strided layers
    whose im2col input (which every filter part copies) is within its ``strided_im2col_bytes``, or
    whose kernel skips input pixels (a strided 1x1 layer): their im2col input is the pixels they
    read, a fraction of what the row layout copies. On maps where rows fill half a vector,
    neither layout won.
    """
    if 4 * row_lanes <= lanes:
        return im2col_bytes(geometry) <= profile.im2col_bytes
    if max(geometry.stride) == 1:
        return False
    skips_input = all(k <= s for k, s in zip(geometry.kernel, geometry.stride))
    return skips_input or im2col_bytes(geometry) <= profile.strided_im2col_bytes


def prefers_tap_copies(geometry, block_rows):
    """Whether the default compact code on the row layout reads one aligned input copy per tap column.

    Strided layers do, and pattern layers do: a pattern tile is one filter, so each input vector
    it loads feeds one FMA, and an unaligned vector load (two tap columns in three) costs two
    cache-line reads. A block-punched tile feeds each load to 8 filters and gains nothing.
    """
    if geometry.kernel[1] <= geometry.stride[1]:
        return False  # one copy either way: the stride phases
    return geometry.stride[1] > 1 or block_rows == 1


def prefers_register_shifts(geometry, lanes, accumulators, profile):
    """Whether the default compact pattern code shifts tap columns in registers
    (:attr:`SpecializedConvConfig.register_shifts`): stride 1 along the width, and a register tile
    of full-width vectors that spans the input and output rows.

    A pattern tile loads one input vector per FMA, so the layout's loads are what it waits for;
    one aligned copy of the row whose shifts are shuffles (``valignd`` / ``vpermt2ps`` on
    AVX-512) beat three aligned tap copies, a third of the input to copy and to keep in L1. Rows
    of half-width vectors lost.
    """
    config = default_config(geometry, lanes, 0, profile, _tile_filters(1, lanes), accumulators)
    return lanes > 1 and config.lanes == lanes and shifts_fit(geometry, config.lanes * config.vectors)


def default_sparse_config(geometry, target, n_terms, block_rows):
    """The config an entry point uses when it is given none.

    Parameters
    ----------
    geometry : ConvGeometry
    target : tvm.target.Target
        Its vector registers and its :func:`schedules.profiles.profile_for`.
    n_terms : int
        Terms of all filters (:func:`stored_terms`).
    block_rows : int
        Filters of a format block that share their inputs (1 for patterns).
    """
    profile = profile_for(target)
    lanes, accumulators = vector_lanes(target), accumulators_for(target)
    config = default_config(geometry, lanes, n_terms, profile, _tile_filters(block_rows, lanes), accumulators)
    if estimated_code_size(n_terms, config.rows, config.vectors) <= profile.code_budget_default:
        return config
    if prefers_im2col(geometry, lanes, config.lanes, profile):
        return im2col_config(geometry, lanes, accumulators, block_rows, profile, n_terms)
    if block_rows == 1 and prefers_register_shifts(geometry, lanes, accumulators, profile):
        return compact_config(geometry, lanes, accumulators, block_rows, profile, n_terms, register_shifts=True)
    return compact_config(geometry, lanes, accumulators, block_rows, profile, n_terms,
                          tap_copies=prefers_tap_copies(geometry, block_rows))


def layer_default_config(weight, data_shape, target=None, *, stride=1, padding=0):
    """The config an entry point picks for ``weight`` on a ``data_shape`` input when it is given none."""
    target = as_target(target)
    geometry, _ = kernel_geometry(weight, data_shape, stride, padding)
    return default_sparse_config(geometry, target, stored_terms(weight), block_rows_of(weight))


def candidate_configs(weight, data_shape, target=None, *, stride=1, padding=0):
    """A small list of valid configs of one layer for a tuner, the default first.

    Tuners reach it through ``schedules.registry.kernel(name).candidates``, which checks the
    weight's format and fills the kernel's default padding.

    Parameters
    ----------
    weight : PatternWeight, BlockPunchedWeight or BSRWeight
    data_shape : tuple of int
        ``(N, C, H, W)``.
    target : tvm.target.Target, dict or None
        A CPU target; None: this host.
    stride : int or pair
    padding : int, pair or 4-tuple

    Returns
    -------
    list of SpecializedConvConfig
        Distinct configs: the default; the specialised code when its size is within the
        profile's ``code_budget_tuning``; the default compact code on the aligned input layout
        (``tap_copies``); pattern tiles spanning the row with register shifts; the compact code
        on the im2col layout when its input fits the profile's ``im2col_bytes``; compact codes
        with other register tiles (rows x vectors x filters within the accumulator budget) and
        channel blocks; on a one-row map, the default with prefetches if it has none, else without,
        and the default with the other order of filter and output tiles.
    """
    target = as_target(target)
    profile = profile_for(target)
    geometry, _ = kernel_geometry(weight, data_shape, stride, padding)
    n_terms, block_rows = stored_terms(weight), block_rows_of(weight)
    lanes, accumulators = vector_lanes(target), accumulators_for(target)
    candidates = [default_sparse_config(geometry, target, n_terms, block_rows)]
    specialised = default_config(geometry, lanes, n_terms, profile, _tile_filters(block_rows, lanes), accumulators)
    if estimated_code_size(n_terms, specialised.rows, specialised.vectors) <= profile.code_budget_tuning:
        candidates.append(specialised)
    base = compact_config(geometry, lanes, accumulators, block_rows, profile, n_terms)
    width_vectors = math.ceil(geometry.out_width / base.lanes)
    filter_choices = [1] if block_rows == 1 else sorted({min(block_rows, f) for f in (2, 4, 8)})
    for filters in filter_choices:
        for vectors in sorted({1, min(2, width_vectors), min(4, width_vectors)}):
            for rows in (1, 2, 4, 8):
                if filters * rows * vectors > accumulators or rows > geometry.out_height:
                    continue
                candidates.append(compact_config(geometry, lanes, accumulators, block_rows, profile, n_terms,
                                                 filters=filters, vectors=vectors, rows=rows))
    if block_rows == 1 and width_vectors <= 4 and shifts_fit(geometry, width_vectors * base.lanes):
        for rows in (2, 4, 8):
            if rows * width_vectors <= accumulators and rows <= geometry.out_height:
                candidates.append(compact_config(geometry, lanes, accumulators, block_rows, profile, n_terms,
                                                 register_shifts=True, vectors=width_vectors, rows=rows))
    candidates.append(dataclasses.replace(base, channel_block=min(geometry.channels, 2 * base.channel_block)))
    if candidates[0].codegen == "compact" and (geometry.out_height == 1 or candidates[0].im2col):
        candidates.append(dataclasses.replace(candidates[0], prefetch_tiles=0 if candidates[0].prefetch_tiles else 1))
        other_order = not candidates[0].filter_tiles_outer
        candidates.append(dataclasses.replace(candidates[0], filter_tiles_outer=other_order) if candidates[0].im2col
                          else compact_config(geometry, lanes, accumulators, block_rows, profile, n_terms,
                                              filter_tiles_outer=other_order))
    if geometry.kernel[1] > geometry.stride[1]:  # else the tap copies are the stride phases
        candidates.append(dataclasses.replace(base, tap_copies=True))
    if im2col_bytes(geometry) <= profile.im2col_bytes:
        candidates.append(im2col_config(geometry, lanes, accumulators, block_rows, profile, n_terms))
    unique = list(dict.fromkeys(candidates))
    aligned = lambda c: c.tap_copies or c.im2col or c.register_shifts  # noqa: E731
    return unique[:1] + sorted(unique[1:], key=lambda c: (c.codegen != "specialized", not aligned(c),
                                                          -c.filters * c.rows * c.vectors))[:11]


def within_code_ceiling(config, weight, target):
    """Whether ``config``'s code for ``weight`` stays under the target profile's ``code_budget_ceiling``.

    Only literal-weight code (``codegen="specialized"``) grows with the weights; a config a
    tuning log hands over beyond the ceiling would compile for minutes.
    """
    if getattr(config, "codegen", None) != "specialized":
        return True
    size = estimated_code_size(stored_terms(weight), config.rows, config.vectors)
    return size <= profile_for(as_target(target)).code_budget_ceiling

