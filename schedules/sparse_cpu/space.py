"""The knob space of the sparse CPU kernels: the default config of a layer and the candidates a tuner tries.

A config (:class:`schedules.specialized_conv.SpecializedConvConfig`) picks the code generator
(``codegen``: literal weights, or the table-driven compact code), the input layout (rows split by
stride phase; one aligned copy per tap column; or, for maps much narrower than a vector, the
im2col matrix with the output pixels as one row) and the register tile, L1 blocking and parallel
split. The specialised code is the fastest on small layers, but its compile
time grows with the non-zeros; :func:`default_sparse_config` takes it while its estimated size
(vector FMAs in the code) is within :data:`SELECTION_BUDGET`, the compact code otherwise.
"""

import dataclasses
import math

import numpy as np

from tvm_sparse.formats import BlockPunchedWeight, BSRWeight, PatternWeight

from .specialized_conv import (MIN_CHANNEL_BLOCK, SpecializedConvConfig, accumulators_for, default_config, make_geometry,
                               shifts_fit)
from .target_info import as_target, vector_lanes

#: Most vector FMAs of a specialised kernel chosen by default; larger layers get the compact code.
#: Measured (1 thread, loaded machine): on 128 channels the compact code was as fast (32x32: 1.40
#: against 1.38 ms) or faster (16x16: 0.27 against 0.42 ms) and compiled in ~1 s against 85-141 s;
#: the specialised code stays ahead on small layers (a 1x1 MobileNetV2 layer: 0.044 against 0.051 ms).
SELECTION_BUDGET = 4_000

#: Most vector FMAs of a specialised kernel offered to a tuner. LLVM takes ~1 s per 1,000, so a
#: larger candidate costs about a minute per trial (47-75 s on ResNet-18-CIFAR's 3x3 layers, 3.4
#: sparse trials a minute), and there it won one of 20 layers, by 10% (0.204 against 0.227 ms).
CANDIDATE_CODE_BUDGET = 12_000

#: The kernels and their formats (names as in ``relay_passes.route_sparse.KERNEL_FUNCTIONS``).
KERNEL_FORMATS = {"pattern_conv2d": PatternWeight, "block_punched_conv2d": BlockPunchedWeight, "bsr_conv2d": BSRWeight}

#: Default padding of each kernel's entry point.
DEFAULT_PADDING = {"pattern_conv2d": 1, "block_punched_conv2d": 0, "bsr_conv2d": 0}


def kernel_geometry(weight, data_shape, stride, padding):
    """The convolution a kernel computes for ``weight`` and the parameter shapes it declares.

    A 1x1 BSR convolution with stride 1 and no padding runs as one row of ``H * W`` pixels (no
    input copy, full vectors); its parameters keep the NCHW shapes.

    Returns
    -------
    geometry : ConvGeometry
    param_shapes : tuple or None
        ``(data_shape, out_shape)`` when they differ from the geometry's.
    """
    is_bsr = isinstance(weight, BSRWeight)
    weight_shape = tuple(weight.shape[:2]) + ((1, 1) if is_bsr else tuple(weight.shape[2:]))
    geometry = make_geometry(data_shape, weight_shape, stride, padding)
    if not (is_bsr and geometry.stride == (1, 1) and geometry.padding == (0, 0, 0, 0)):
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


#: Row blocks per image of a default compact config: each task copies its block's rows and the
#: kernel's halo (:attr:`SpecializedConvConfig.private_input`).
PRIVATE_ROW_BLOCKS = 2

#: Most parallel tasks per layer a default compact config is cut into (row blocks x filter
#: parts); a kernel runs only as many filter parts as its threads need, each copying its rows.
MAX_TASKS = 4


def private_input_split(geometry, out_rows, rows):
    """``(row_tiles, filter_splits)`` of a config whose tasks copy their own input.

    Two row blocks per image, and the filters split into parts up to :data:`MAX_TASKS` tasks,
    which the kernel merges at run time when it has fewer threads. Measured on block-punched
    layers (ms, 1 / 2 threads, one process): 64 channels 32x32: shared input, four filter parts
    0.169 / 0.405; two row blocks 0.166 / 0.118; four row blocks 0.179 / 0.153. 512 channels,
    4x4 (one row): shared, four parts 0.154 / 0.254; two private parts 0.167 / 0.119.
    """
    row_tiles_total = math.ceil(out_rows / rows)
    row_tiles = math.ceil(row_tiles_total / min(row_tiles_total, PRIVATE_ROW_BLOCKS))
    row_blocks = math.ceil(row_tiles_total / row_tiles)
    return row_tiles, max(1, math.ceil(MAX_TASKS / (geometry.batch * row_blocks)))


def compact_config(geometry, lanes, accumulators, block_rows, l1_bytes=32 * 1024, **knobs):
    """The default compact config: a pattern tile is one filter, a block-row tile up to the register file.

    The compact code runs every filter tile on one output tile before the next, so a channel
    block is as many channels as make that output tile's input window fit ``l1_bytes`` (with
    register shifts: all channels). Tasks copy their own input (:func:`private_input_split`).
    """
    config = default_config(geometry, lanes, 0, _tile_filters(block_rows, lanes), accumulators)
    filters = 1 if block_rows == 1 else min(config.filters, block_rows)
    if block_rows == 1:
        # One filter per tile: the rows take the whole accumulator budget (up to 8 rows: 2.18
        # against 2.49 ms for 4 rows on 128 channels, 32x32, 1 thread, loaded machine), or half of
        # it with register shifts, whose shifted vectors need registers too (128 channels,
        # 32x32: 16 accumulators 0.298 ms, 8 accumulators 0.248 ms).
        budget = accumulators // 2 if knobs.get("register_shifts") else accumulators
        rows = max(1, min(geometry.out_height, budget // config.vectors, 8))
        while rows > 1 and math.ceil(geometry.out_height / rows) * rows > 1.15 * geometry.out_height:
            rows -= 1
        knobs = {"rows": rows, **knobs}
    config = dataclasses.replace(config, **{"filters": filters, "codegen": "compact", "fma_chains": accumulators,
                                            **knobs})
    row_tiles, filter_splits = private_input_split(geometry, geometry.out_height, config.rows)
    split = {"row_tiles": row_tiles, "filter_splits": filter_splits, "private_input": True}
    config = dataclasses.replace(config, **{**split, **knobs})
    if config.register_shifts:
        # One block of all channels: a register-shift tile loads an input row once for all its
        # tap columns, so it streams its input from L2 fast enough, and one block saves
        # reloading the partial sums. ms, L1-sized block against all channels: 1 thread, 128
        # channels 32x32 0.232 / 0.221, 28x28 0.201 / 0.189, 64 channels 56x56 0.236 / 0.215,
        # 256 channels 14x14 0.209 / 0.200; 2 threads, 128 channels 16x16 0.0295 / 0.0274.
        return dataclasses.replace(config, channel_block=geometry.channels)
    window = ((config.rows - 1) * geometry.stride[0] + geometry.kernel[0]) * (
        (config.vectors * config.lanes - 1) * geometry.stride[1] + geometry.kernel[1]
    )
    channel_block = min(geometry.channels, max(MIN_CHANNEL_BLOCK, l1_bytes // (4 * window)))
    return dataclasses.replace(config, channel_block=channel_block)


#: Largest im2col input (``R x S`` copies of the input) of a default config, in bytes.
IM2COL_BYTES = 1 << 20


def im2col_bytes(geometry):
    """Bytes of the im2col input of a layer."""
    g = geometry
    return 4 * g.batch * g.channels * g.kernel[0] * g.kernel[1] * g.out_height * g.out_width


def im2col_config(geometry, lanes, accumulators, block_rows):
    """The compact code on the im2col layout: the ``OH x OW`` output pixels as one row of full vectors.

    For maps much narrower than a vector (4x4 in 16 lanes) the row layout wastes lanes; here a tile
    is ``vectors`` vectors of pixels of one filter (a pattern) or of a block row cut to the register
    file. A channel block is the whole layer: its per-tile overhead outweighs L1 reuse (on 512
    channels, 4x4, 1 thread: 0.24 ms against 0.40 ms with a 56-channel, L1-sized block).
    """
    g = geometry
    pixels = g.out_height * g.out_width
    while lanes > 4 and math.ceil(pixels / lanes) * lanes > 1.15 * pixels:
        lanes //= 2
    width_vectors = math.ceil(pixels / lanes)
    filters = 1 if block_rows == 1 else min(block_rows, _tile_filters(block_rows, lanes))
    vectors = max(1, min(width_vectors, accumulators // filters, 4))
    while width_vectors % vectors:
        vectors -= 1
    row_tiles, filter_splits = private_input_split(g, 1, 1)
    return SpecializedConvConfig(lanes, vectors, 1, filters, g.channels, row_tiles, filter_splits, codegen="compact",
                                 im2col=True, private_input=True, fma_chains=accumulators)


#: Largest im2col input of a strided layer's default config (rows that fill more than a quarter
#: of a vector): every filter part copies it. On 64 to 128 channels, 32x32, stride 2 (590 KB;
#: ms at 1 / 2 threads): block-punched 0.119 / 0.096 on im2col against 0.077 / 0.053 on the row
#: layout with tap copies, patterns 0.146 / 0.121 against 0.093 / 0.087. On 128 to 256 channels,
#: 16x16 (295 KB), im2col stayed ahead or even (0.082 / 0.061 against 0.102 / 0.058).
STRIDED_IM2COL_BYTES = 512 * 1024


def prefers_im2col(geometry, lanes, row_lanes):
    """Whether the default compact code takes the im2col layout: rows that fill a quarter of a
    vector or less, with an im2col input within :data:`IM2COL_BYTES`, and strided layers whose
    im2col input is within :data:`STRIDED_IM2COL_BYTES`.

    Measured by ``tvm-sparse tune`` on ResNet-18-CIFAR pruned 8x (AVX-512, 1 thread, ms, row
    layout against im2col, tasks sharing one input copy): 512 channels, 4x4: 0.50-1.20 against
    0.37-0.50; the stride-2 3x3 layers: 0.257 against 0.174 (64 to 128 channels) and 0.240
    against 0.116 (128 to 256); the stride-2 1x1 projections: 0.050 against 0.031. On 8x8 maps
    with stride 1, where rows fill half a vector, neither won (256 channels: 0.305 against 0.244,
    0.252 against 0.297, 0.227 against 0.313).
    """
    if 4 * row_lanes <= lanes:
        return im2col_bytes(geometry) <= IM2COL_BYTES
    return max(geometry.stride) > 1 and im2col_bytes(geometry) <= STRIDED_IM2COL_BYTES


def prefers_tap_copies(geometry, block_rows):
    """Whether the default compact code on the row layout reads one aligned input copy per tap column.

    Strided layers do (see :data:`STRIDED_IM2COL_BYTES`), and pattern layers do: a pattern tile
    is one filter, so each input vector it loads feeds one FMA, and an unaligned vector load
    (two tap columns in three) costs two cache-line reads. Aligned copies, ms at 1 thread on
    this Zen 5 (`bench kernels` layers, 8x): 128 channels 16x16 0.0747 against 0.0655; 128
    channels 32x32 0.309 against 0.284; 64 channels 32x32 0.0845 against 0.0787; 256 channels
    8x8 0.0947 against 0.0922; 128 channels 28x28 0.331 against 0.300. A block-punched tile
    feeds each load to 8 filters and gains nothing (128 channels 16x16: 0.0467 against 0.0496).
    """
    if geometry.kernel[1] <= geometry.stride[1]:
        return False  # one copy either way: the stride phases
    return geometry.stride[1] > 1 or block_rows == 1


def prefers_register_shifts(geometry, lanes, accumulators):
    """Whether the default compact pattern code shifts tap columns in registers
    (:attr:`SpecializedConvConfig.register_shifts`): stride 1 along the width, and a register tile
    of full-width vectors that spans the input and output rows.

    A pattern tile loads one input vector per FMA, so the layout's loads are what it waits for;
    one aligned copy of the row whose shifts are shuffles (``valignd`` / ``vpermt2ps`` on
    AVX-512) beat three aligned tap copies, a third of the input to copy and to keep in L1. ms at
    1 thread on this Zen 5 (`bench kernels` layers, 8x), tap copies against shifts: 128 channels
    16x16 0.0622 against 0.0571; 32x32 0.283 against 0.240; 64 channels 32x32 0.080 against
    0.061; 64 channels 56x56 0.299 against 0.233; 128 channels 28x28 0.312 against 0.205; 256
    channels 14x14 0.245 against 0.209. Rows of half-width vectors (8 lanes of 16) lost: 256
    channels 8x8 0.087 against 0.103, 512 channels 7x7 0.371 against 0.417.
    """
    config = default_config(geometry, lanes, 0, _tile_filters(1, lanes), accumulators)
    return lanes > 1 and config.lanes == lanes and shifts_fit(geometry, config.lanes * config.vectors)


def default_sparse_config(geometry, target, n_terms, block_rows, selection_budget=SELECTION_BUDGET):
    """The config an entry point uses when it is given none.

    Parameters
    ----------
    geometry : ConvGeometry
    target : tvm.target.Target
    n_terms : int
        Terms of all filters (:func:`stored_terms`).
    block_rows : int
        Filters of a format block that share their inputs (1 for patterns).
    selection_budget : int
        Most vector FMAs of specialised code; above it the compact code is chosen.
    """
    lanes, accumulators = vector_lanes(target), accumulators_for(target)
    config = default_config(geometry, lanes, n_terms, _tile_filters(block_rows, lanes), accumulators)
    if n_terms * config.rows * config.vectors <= selection_budget:
        return config
    if prefers_im2col(geometry, lanes, config.lanes):
        return im2col_config(geometry, lanes, accumulators, block_rows)
    if block_rows == 1 and prefers_register_shifts(geometry, lanes, accumulators):
        return compact_config(geometry, lanes, accumulators, block_rows, register_shifts=True)
    return compact_config(geometry, lanes, accumulators, block_rows, tap_copies=prefers_tap_copies(geometry, block_rows))


def candidate_configs(kernel, weight, data_shape, target=None, *, stride=1, padding=None):
    """A small list of valid configs of one layer for a tuner, the default first.

    Parameters
    ----------
    kernel : str
        ``"pattern_conv2d"``, ``"block_punched_conv2d"`` or ``"bsr_conv2d"``.
    weight : PatternWeight, BlockPunchedWeight or BSRWeight
    data_shape : tuple of int
        ``(N, C, H, W)``.
    target : tvm.target.Target, dict or None
        A CPU target; None: this host.
    stride : int or pair
    padding : int, pair, 4-tuple or None
        None: the kernel's default (1 for patterns, 0 otherwise).

    Returns
    -------
    list of SpecializedConvConfig
        Distinct configs: the default; the specialised code when its size is within
        :data:`CANDIDATE_CODE_BUDGET`; the default compact code on the aligned input layout
        (``tap_copies``); pattern tiles spanning the row with register shifts; the compact code
        on the im2col layout when its input fits :data:`IM2COL_BYTES`; compact codes with other
        register tiles (rows x vectors x filters within the accumulator budget) and channel blocks.
    """
    if kernel not in KERNEL_FORMATS:
        raise ValueError(f"unknown sparse kernel {kernel!r}; expected one of {sorted(KERNEL_FORMATS)}")
    if not isinstance(weight, KERNEL_FORMATS[kernel]):
        raise TypeError(f"{kernel} takes a {KERNEL_FORMATS[kernel].__name__}, got {type(weight).__name__}")
    target = as_target(target)
    padding = DEFAULT_PADDING[kernel] if padding is None else padding
    geometry, _ = kernel_geometry(weight, data_shape, stride, padding)
    n_terms, block_rows = stored_terms(weight), block_rows_of(weight)
    lanes, accumulators = vector_lanes(target), accumulators_for(target)
    candidates = [default_sparse_config(geometry, target, n_terms, block_rows)]
    specialised = default_config(geometry, lanes, n_terms, _tile_filters(block_rows, lanes), accumulators)
    if n_terms * specialised.rows * specialised.vectors <= CANDIDATE_CODE_BUDGET:
        candidates.append(specialised)
    base = compact_config(geometry, lanes, accumulators, block_rows)
    width_vectors = math.ceil(geometry.out_width / base.lanes)
    filter_choices = [1] if block_rows == 1 else sorted({min(block_rows, f) for f in (2, 4, 8)})
    for filters in filter_choices:
        for vectors in sorted({1, min(2, width_vectors), min(4, width_vectors)}):
            for rows in (1, 2, 4, 8):
                if filters * rows * vectors > accumulators or rows > geometry.out_height:
                    continue
                candidates.append(
                    compact_config(geometry, lanes, accumulators, block_rows, filters=filters, vectors=vectors, rows=rows)
                )
    if block_rows == 1 and width_vectors <= 4 and shifts_fit(geometry, width_vectors * base.lanes):
        for rows in (2, 4, 8):
            if rows * width_vectors <= accumulators and rows <= geometry.out_height:
                candidates.append(compact_config(geometry, lanes, accumulators, block_rows, register_shifts=True,
                                                 vectors=width_vectors, rows=rows))
    candidates.append(dataclasses.replace(base, channel_block=min(geometry.channels, 2 * base.channel_block)))
    if geometry.kernel[1] > geometry.stride[1]:  # else the tap copies are the stride phases
        candidates.append(dataclasses.replace(base, tap_copies=True))
    if im2col_bytes(geometry) <= IM2COL_BYTES:
        candidates.append(im2col_config(geometry, lanes, accumulators, block_rows))
    unique = list(dict.fromkeys(candidates))
    aligned = lambda c: c.tap_copies or c.im2col or c.register_shifts  # noqa: E731
    return unique[:1] + sorted(unique[1:], key=lambda c: (c.codegen != "specialized", not aligned(c),
                                                          -c.filters * c.rows * c.vectors))[:11]
