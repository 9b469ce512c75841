"""The compact (table-driven) sparse kernels: knobs, random shapes, code size, Relax calls, candidates."""

import dataclasses
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tvm
from tvm import relax
from schedules import registry
from schedules.conv_geometry import make_geometry
from schedules.epilogue import Epilogue
from schedules.kernel_table import TABLE_ATTR, table_argument
from schedules.profiles import profile_for
from schedules.sparse_cpu.block_punched_conv2d import block_punched_conv2d
from schedules.sparse_cpu.bsr_conv2d import bsr_conv2d
from schedules.sparse_cpu.config import SpecializedConvConfig
from schedules.sparse_cpu.direct_conv import BUILD_CONFIG, compile_kernel
from schedules.sparse_cpu.pattern_conv2d import pattern_conv2d
from schedules.sparse_cpu.space import compact_config, one_row_split, private_input_split, stored_terms
from schedules.target_info import as_target
from tests.schedules.threaded_run import THREAD_COUNTS, outputs_at_thread_counts
from tvm_sparse.formats import BlockPunchedWeight, BSRWeight, PatternWeight
from tvm_sparse.formats.synthetic import block_punched, block_sparse, pattern_library, pattern_pruned

COMPACT_KNOBS = [
    SpecializedConvConfig(lanes=4, vectors=3, rows=2, filters=3, channel_block=3, row_tiles=1, filter_splits=2, codegen="compact"),
    SpecializedConvConfig(lanes=16, vectors=1, rows=3, filters=1, channel_block=100, row_tiles=4, codegen="compact"),
    SpecializedConvConfig(lanes=8, vectors=2, rows=1, filters=2, channel_block=1, row_tiles=3, filter_splits=3, codegen="compact"),
    SpecializedConvConfig(lanes=4, vectors=2, rows=3, filters=2, channel_block=4, row_tiles=2, codegen="compact", tap_copies=True),
    SpecializedConvConfig(lanes=16, vectors=1, rows=2, filters=1, channel_block=7, filter_splits=2, tap_copies=True),
    SpecializedConvConfig(lanes=16, vectors=1, rows=1, filters=1, channel_block=10, filter_splits=2, codegen="compact", im2col=True),
    SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=3, channel_block=3, codegen="compact", im2col=True),
    SpecializedConvConfig(lanes=8, vectors=2, rows=1, filters=2, channel_block=4, im2col=True),
    # Private input copies: a row block of one tile (halo rows copied twice), filter parts copying
    # the same rows, the specialised code, and im2col.
    SpecializedConvConfig(lanes=8, vectors=1, rows=2, filters=2, channel_block=4, row_tiles=1, codegen="compact",
                          private_input=True),
    SpecializedConvConfig(lanes=4, vectors=2, rows=3, filters=3, channel_block=3, row_tiles=2, filter_splits=2,
                          codegen="compact", tap_copies=True, private_input=True),
    SpecializedConvConfig(lanes=8, vectors=1, rows=2, filters=2, channel_block=5, row_tiles=1, filter_splits=2,
                          private_input=True),
    SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=3, channel_block=3, filter_splits=3, codegen="compact",
                          im2col=True, private_input=True),
    # Several sets of partial sums per accumulator (a pattern's five taps over five sets).
    SpecializedConvConfig(lanes=8, vectors=1, rows=2, filters=1, channel_block=4, codegen="compact", fma_chains=16),
    # Prefetches: an im2col row (its tiles prefetch), the row layout (no prefetch there).
    SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=3, channel_block=3, filter_splits=2, codegen="compact",
                          im2col=True, private_input=True, prefetch_tiles=2),
    SpecializedConvConfig(lanes=8, vectors=1, rows=2, filters=2, channel_block=4, codegen="compact", prefetch_tiles=1,
                          prefetch_table_bytes=256),
    # Filter tiles outside the output tiles: an im2col row split into filter parts that prefetches,
    # and the row layout with channel blocks (partial sums re-read per filter tile).
    SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=3, channel_block=3, filter_splits=2, codegen="compact",
                          im2col=True, private_input=True, prefetch_tiles=1, filter_tiles_outer=True),
    SpecializedConvConfig(lanes=8, vectors=1, rows=2, filters=2, channel_block=4, row_tiles=2, codegen="compact",
                          filter_tiles_outer=True),
]


@pytest.mark.parametrize(
    "config", COMPACT_KNOBS,
    ids=lambda c: f"{c.codegen}-f{c.filters}r{c.rows}v{c.vectors}cb{c.channel_block}-t{c.tap_copies:d}p{c.private_input:d}"
                  f"c{c.fma_chains}pf{c.prefetch_tiles}t{c.prefetch_table_bytes}fo{c.filter_tiles_outer:d}"
)
def test_knobs_keep_results(config, run_kernel):
    """Tails in width, height, channels and filters (padding slots of a tile), split tasks, every input layout."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 10, 11, 13)).astype("float32")
    library = pattern_library(6, 5, rng)
    pattern = PatternWeight.from_dense(pattern_pruned(rng, 9, 10, library, 0.4), library)
    out = run_kernel(pattern_conv2d(pattern, x.shape, padding=1, config=config), [x], (2, 9, 11, 13))
    np.testing.assert_allclose(out, pattern.conv2d(x, stride=1, padding=1), rtol=1e-4, atol=1e-4)
    punched = BlockPunchedWeight.from_dense(block_punched(rng, (11, 10, 3, 3), (4, 3), 0.4), (4, 3))
    out = run_kernel(block_punched_conv2d(punched, x.shape, stride=2, padding=1, config=config), [x], (2, 11, 6, 7))
    np.testing.assert_allclose(out, punched.conv2d(x, stride=2, padding=1), rtol=1e-4, atol=1e-4)
    wide = BlockPunchedWeight.from_dense(block_punched(rng, (6, 10, 5, 5), (4, 3), 0.5), (4, 3))
    padding = (2, 1, 0, 2)
    out = run_kernel(block_punched_conv2d(wide, x.shape, stride=2, padding=padding, config=config), [x], (2, 6, 5, 6))
    np.testing.assert_allclose(out, wide.conv2d(x, stride=2, padding=padding), rtol=1e-4, atol=1e-4)


def test_im2col_on_tiny_maps(run_kernel):
    """Whole vectors of pixels: a 4x4 pattern layer (the default on AVX-512), stride 2 into 2x3, and a 1x1
    BSR layer (its input already is its im2col matrix: no copy)."""
    rng = np.random.default_rng(5)
    target = as_target({"kind": "llvm", "mcpu": "skylake-avx512"})
    library = pattern_library(8, 4, rng)
    fmt = PatternWeight.from_dense(pattern_pruned(rng, 40, 300, library, 0.28), library)
    x = rng.standard_normal((1, 300, 4, 4)).astype("float32")
    func = pattern_conv2d(fmt, x.shape, padding=1, target=target)
    assert 'tvm_sparse.kernel": "compact_conv2d"' in func.script() and table_argument(func) is not None
    assert registry.kernel("pattern_conv2d").candidates(fmt, x.shape, target, padding=1)[0].im2col
    np.testing.assert_allclose(run_kernel(func, [x], (1, 40, 4, 4)), fmt.conv2d(x, padding=1), rtol=1e-4, atol=1e-4)
    x = rng.standard_normal((2, 300, 4, 5)).astype("float32")
    config = SpecializedConvConfig(lanes=4, vectors=1, rows=1, filters=1, channel_block=300, codegen="compact", im2col=True)
    func = pattern_conv2d(fmt, x.shape, stride=2, padding=1, config=config)
    np.testing.assert_allclose(run_kernel(func, [x], (2, 40, 2, 3)), fmt.conv2d(x, stride=2, padding=1), rtol=1e-4, atol=1e-4)
    bsr = BSRWeight.from_dense(block_sparse(rng, (16, 24, 1, 1), (4, 2), 0.5), (4, 2))
    x = rng.standard_normal((1, 24, 4, 4)).astype("float32")
    config = SpecializedConvConfig(lanes=16, vectors=1, rows=1, filters=4, channel_block=24, codegen="compact", im2col=True)
    func = bsr_conv2d(bsr, x.shape, config=config)
    np.testing.assert_allclose(run_kernel(func, [x], (1, 16, 4, 4)), bsr.conv2d(x), rtol=1e-4, atol=1e-4)


@st.composite
def _layers(draw):
    scheme = draw(st.sampled_from(["pattern", "block_punched", "bsr"]))
    channels, filters = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 20))
    kernel = 3 if scheme == "pattern" else 1 if scheme == "bsr" else draw(st.sampled_from([1, 3, 5]))
    pads = [draw(st.integers(0, kernel // 2 + 1)) for _ in range(4)]
    stride = draw(st.integers(1, 2))
    if height + pads[0] + pads[2] < kernel or width + pads[1] + pads[3] < kernel:
        pads = [kernel] * 4
    epilogue = Epilogue(draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from([None, "relu", "relu6"])))
    return scheme, draw(st.integers(1, 2)), channels, filters, height, width, kernel, stride, tuple(pads), epilogue


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layer=_layers(), pick=st.integers(0, 10))
def test_random_layers_match_torch(layer, pick, run_kernel, epilogue_case):
    """Random formats, shapes, strides, paddings and epilogues, with a random compact candidate config."""
    scheme, batch, channels, filters, height, width, kernel, stride, padding, epilogue = layer
    rng = np.random.default_rng(zlib.crc32(repr(layer).encode()))
    x = rng.standard_normal((batch, channels, height, width)).astype("float32")
    if scheme == "pattern":
        library = pattern_library(4, 4, rng)
        weight = pattern_pruned(rng, filters, channels, library, 0.5)
        fmt, function, name = PatternWeight.from_dense(weight, library), pattern_conv2d, "pattern_conv2d"
    elif scheme == "bsr":
        weight = block_sparse(rng, (filters, channels, 1, 1), (4, 2), 0.5)
        fmt, function, name = BSRWeight.from_dense(weight, (4, 2)), bsr_conv2d, "bsr_conv2d"
    else:
        weight = block_punched(rng, (filters, channels, kernel, kernel), (4, 2), 0.5)
        fmt, function, name = BlockPunchedWeight.from_dense(weight, (4, 2)), block_punched_conv2d, "block_punched_conv2d"
    compact = [c for c in registry.kernel(name).candidates(fmt, x.shape, stride=stride, padding=padding) if c.codegen == "compact"]
    config = compact[pick % len(compact)]
    extras, expected = epilogue_case(rng, x, weight, stride, padding, epilogue)
    func = function(fmt, x.shape, stride=stride, padding=padding, epilogue=epilogue, config=config)
    out = run_kernel(func, [x, *extras.values()], expected.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def _pattern_weight(density, channels=32, filters=32, seed=5):
    rng = np.random.default_rng(seed)
    library = pattern_library(8, 4, rng)
    return PatternWeight.from_dense(pattern_pruned(rng, filters, channels, library, density), library)


def test_code_size_does_not_grow_with_nonzeros():
    """Four times the non-zeros: the same code, a larger table."""
    config = SpecializedConvConfig(lanes=8, vectors=2, rows=2, filters=1, channel_block=8, codegen="compact")
    sparse, denser = _pattern_weight(0.2), _pattern_weight(0.8)
    assert stored_terms(denser) > 3 * stored_terms(sparse)
    small, large = (pattern_conv2d(w, (1, 32, 16, 16), config=config) for w in (sparse, denser))
    assert len(table_argument(large)) > 3 * len(table_argument(small)) / 2

    def code_lines(func):
        """The script with numbers (table size, section starts) blanked."""
        return [re.sub(r"\d+", "N", line) for line in func.without_attr(TABLE_ATTR).script().splitlines()]

    assert code_lines(small) == code_lines(large)


def test_default_picks_compact_for_large_layers():
    """Large layers get the compact code by default, small ones the specialised code."""
    small, large = _pattern_weight(0.3, 8, 8), _pattern_weight(0.3, 256, 256)
    assert table_argument(pattern_conv2d(small, (1, 8, 8, 8))) is None
    assert stored_terms(large) > profile_for(None).code_budget_default
    func = pattern_conv2d(large, (1, 256, 8, 8))
    assert [p.name for p in func.params] == ["data", "table", "out"]
    assert table_argument(func).dtype == np.int32


def test_candidates_are_small_valid_and_distinct():
    fmt = _pattern_weight(0.28, 32, 32)
    candidates = registry.kernel("pattern_conv2d").candidates(fmt, (1, 32, 16, 16))
    assert 2 <= len(candidates) <= 12 and len(set(candidates)) == len(candidates)
    assert {c.codegen for c in candidates} == {"specialized", "compact"}
    large = registry.kernel("pattern_conv2d").candidates(_pattern_weight(0.28, 64, 64), (1, 64, 32, 32))
    assert all(c.codegen == "compact" for c in large)  # its specialised code would take a minute to build
    assert all(c.filters == 1 for c in candidates if c.codegen == "compact")  # patterns share no inputs
    assert any(c.tap_copies for c in candidates)
    one_by_one = registry.kernel("bsr_conv2d").candidates(BSRWeight.from_dense(np.ones((8, 8, 1, 1), "float32"), (4, 4)), (1, 8, 8, 8))
    assert not any(c.tap_copies for c in one_by_one)  # one copy either way
    with pytest.raises(TypeError, match="PatternWeight"):
        registry.kernel("bsr_conv2d").candidates(fmt, (1, 32, 16, 16))
    with pytest.raises(ValueError, match="unknown sparse kernel"):
        registry.kernel("dense_conv2d").candidates(fmt, (1, 32, 16, 16))
    with pytest.raises(ValueError, match="codegen"):
        dataclasses.replace(candidates[0], codegen="jit")


def test_private_split_prefers_rows():
    """Two row blocks where the rows allow, filter parts up to the profile's tasks; none across four images."""
    one_image, four_images = make_geometry((1, 64, 32, 32), (64, 64, 3, 3)), make_geometry((4, 64, 32, 32), (64, 64, 3, 3))
    four_tasks = dataclasses.replace(profile_for(None), parallel_tasks=4, pixel_blocks=2)
    assert private_input_split(one_image, 32, 2, four_tasks) == (8, 2)  # 16 row tiles: 2 blocks x 2 filter parts
    assert private_input_split(one_image, 32, 5, four_tasks) == (4, 2)  # 7 row tiles: blocks of 4 and 3
    assert private_input_split(one_image, 1, 1, four_tasks) == (1, 4)  # an im2col row: filter parts only
    assert private_input_split(four_images, 32, 2, four_tasks) == (8, 1)
    two_tasks = dataclasses.replace(four_tasks, parallel_tasks=2)  # one task per core: the row blocks alone
    assert private_input_split(one_image, 32, 2, two_tasks) == (8, 1)
    assert private_input_split(one_image, 1, 1, two_tasks) == (1, 2)
    defaults = registry.kernel("pattern_conv2d").candidates(_pattern_weight(0.28, 64, 64), (1, 64, 32, 32))
    assert defaults[0].private_input and defaults[0].codegen == "compact"


def test_one_row_maps_split_their_pixels_between_tasks():
    """A 1x1 layer's map (one row of pixels) or a strided layer's im2col row is cut into column blocks, read in
    place or copied, its filters into the remaining parts, where its input is larger than its weight or the
    profile has one task per pixel block."""
    rng = np.random.default_rng(4)
    host = profile_for(None)
    weight = BlockPunchedWeight.from_dense(block_punched(rng, (64, 256, 1, 1), (8, 4), 0.25), (8, 4))
    kernel = registry.kernel("block_punched_conv2d")
    in_place = kernel.candidates(weight, (1, 256, 56, 56))[0]
    assert (in_place.codegen, in_place.column_blocks) == ("compact", host.pixel_blocks)
    assert in_place.column_blocks * in_place.filter_splits == host.parallel_tasks
    copied = kernel.candidates(weight, (1, 256, 14, 14))[0]  # 196 pixels: each task copies its part of the row
    assert copied.private_input and copied.column_blocks == host.pixel_blocks
    strided = kernel.candidates(weight, (1, 256, 28, 28), stride=2)[0]  # an im2col row of 196 pixels
    assert strided.im2col and strided.column_blocks == host.pixel_blocks
    three_by_three = BlockPunchedWeight.from_dense(block_punched(rng, (64, 64, 3, 3), (8, 4), 0.25), (8, 4))
    rows = kernel.candidates(three_by_three, (1, 64, 56, 56), padding=1)[0]  # several rows: row blocks
    assert rows.column_blocks == 1 and rows.row_tiles < 56
    wide = BlockPunchedWeight.from_dense(block_punched(rng, (512, 2048, 1, 1), (8, 4), 0.25), (8, 4))
    weights_larger = kernel.candidates(wide, (1, 2048, 7, 7))[0]  # 100,352 inputs, 262,144 weights
    if host.parallel_tasks > host.pixel_blocks:  # filter parts anyway: they read half the weight
        assert weights_larger.column_blocks == 1 and weights_larger.filter_splits == host.parallel_tasks
    else:  # one task per pixel block: column blocks on every one-row map
        assert weights_larger.column_blocks == host.pixel_blocks and weights_larger.filter_splits == 1
    pixels = make_geometry((1, 8, 1, 16), (8, 8, 1, 1))  # two tiles of 8 pixels: at most two blocks
    config = SpecializedConvConfig(lanes=8, vectors=1, rows=1, filters=4, channel_block=8, codegen="compact")
    four_tasks = dataclasses.replace(host, pixel_blocks=2, parallel_tasks=4)
    two_tasks = dataclasses.replace(four_tasks, parallel_tasks=2)
    assert one_row_split(pixels, config, dataclasses.replace(four_tasks, pixel_blocks=4), 64) == (2, 2)
    assert one_row_split(pixels, config, four_tasks, 128) == (1, config.filter_splits)  # 128 inputs, 128 weights
    assert one_row_split(pixels, config, two_tasks, 128) == (2, 1)  # one task per pixel block: columns anyway


@pytest.mark.parametrize(
    "config, shape",
    [
        # 6 column tiles in blocks of 2, two images, two filter parts: 12 tasks
        (SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=4, channel_block=5, filter_splits=2,
                               column_blocks=3, codegen="compact"), (2, 12, 6, 8)),
        # 7 column tiles in blocks of 2, 2, 2 and 1
        (SpecializedConvConfig(lanes=4, vectors=1, rows=1, filters=2, channel_block=12, column_blocks=4),
         (1, 12, 4, 7)),
        # a copied, padded row (35 pixels in tiles of 8), each task copying its own input
        (SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=4, channel_block=4, filter_splits=2,
                               column_blocks=2, codegen="compact", private_input=True), (1, 12, 5, 7)),
        # more blocks than tiles: one block per tile
        (SpecializedConvConfig(lanes=8, vectors=1, rows=1, filters=4, channel_block=12, column_blocks=9,
                               codegen="compact"), (1, 12, 2, 8)),
        # prefetching the next tile, and three tiles ahead (past the end of the row and the output)
        (SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=4, channel_block=5, filter_splits=2,
                               column_blocks=3, codegen="compact", prefetch_tiles=1), (2, 12, 6, 8)),
        (SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=4, channel_block=4, filter_splits=2,
                               column_blocks=2, codegen="compact", private_input=True, prefetch_tiles=3),
         (1, 12, 5, 7)),
        # each filter tile over the task's tiles: two images and parts, and a copied row that prefetches
        (SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=4, channel_block=5, filter_splits=2,
                               column_blocks=3, codegen="compact", filter_tiles_outer=True), (2, 12, 6, 8)),
        (SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=4, channel_block=4, filter_splits=2,
                               column_blocks=2, codegen="compact", private_input=True, prefetch_tiles=1,
                               filter_tiles_outer=True), (1, 12, 5, 7)),
    ],
    ids=["images-parts", "uneven", "copied-row", "clamped", "prefetch", "prefetch-copied-row", "filters-outer",
         "filters-outer-copied-row"],
)
def test_column_blocks_at_any_thread_count(config, shape, tmp_path):
    """1x1 layers whose tasks split the one row of pixels, with bias, residual and ReLU, against PyTorch at 1, 2 and 3 threads."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype("float32")
    filters = 11
    weight = BlockPunchedWeight.from_dense(block_punched(rng, (filters, shape[1], 1, 1), (4, 3), 0.5), (4, 3))
    bias = rng.standard_normal(filters).astype("float32")
    residual = rng.standard_normal((shape[0], filters, *shape[2:])).astype("float32")
    epilogue = Epilogue(bias=True, residual=True, activation="relu")
    func = block_punched_conv2d(weight, x.shape, epilogue=epilogue, config=config)
    table = table_argument(func)
    arrays = [x, bias, residual] + ([table] if table is not None else []) + [np.zeros(residual.shape, "float32")]
    expected = torch.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(weight.to_dense()), torch.from_numpy(bias))
                          + torch.from_numpy(residual)).numpy()
    for threads, out in outputs_at_thread_counts(func, as_target(None), arrays, tmp_path).items():
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4, err_msg=f"{threads} threads")


def test_compact_kernels_prefetch_by_their_profile():
    """Every entry of the compact code prefetches the profile's bytes ahead in its table; a 1x1
    layer's one row of pixels also the profile's tiles ahead: an entry its input, a store its
    output and residual. Maps of several rows, an im2col row (a task's own copy) and profiles
    without the fits do not; a config asks for them on an im2col row too."""
    rng = np.random.default_rng(4)
    pointwise = BlockPunchedWeight.from_dense(block_punched(rng, (64, 256, 1, 1), (8, 1), 0.75), (8, 1))
    strided = BlockPunchedWeight.from_dense(block_punched(rng, (64, 64, 1, 1), (8, 1), 0.75), (8, 1))
    wide = BlockPunchedWeight.from_dense(block_punched(rng, (64, 64, 3, 3), (8, 4), 0.875), (8, 4))
    epilogue = Epilogue(bias=True, residual=True, activation="relu")
    xeon, zen4 = as_target({"kind": "llvm", "mcpu": "rocketlake"}), as_target({"kind": "llvm", "mcpu": "znver4"})
    assert profile_for(xeon).one_row_prefetch_tiles > 0 and profile_for(zen4).one_row_prefetch_tiles == 0
    config = registry.kernel("block_punched_conv2d").candidates(pointwise, (1, 256, 56, 56), xeon)[0]
    assert config.codegen == "compact" and config.prefetch_tiles == profile_for(xeon).one_row_prefetch_tiles

    def prefetches(weight, shape, target, **kwargs):
        return block_punched_conv2d(weight, shape, epilogue=epilogue, target=target, **kwargs).script().count("T.prefetch(")

    # an entry's input vectors and its table ahead (weights, offsets); a stored vector's output and residual
    assert profile_for(xeon).table_prefetch_bytes > 0 and profile_for(zen4).table_prefetch_bytes == 0
    assert prefetches(pointwise, (1, 256, 56, 56), xeon) == config.vectors + 2 + 2 * config.filters * config.vectors
    assert prefetches(pointwise, (1, 256, 56, 56), zen4) == 0
    assert prefetches(wide, (1, 64, 56, 56), xeon, padding=1) == 2  # the table's only
    im2col = registry.kernel("block_punched_conv2d").candidates(strided, (1, 64, 56, 56), xeon, stride=2)[0]
    assert im2col.im2col and im2col.prefetch_tiles == 0 and im2col.prefetch_table_bytes > 0
    assert prefetches(strided, (1, 64, 56, 56), xeon, stride=2, config=im2col) == 2
    asked = dataclasses.replace(im2col, prefetch_tiles=2)
    assert prefetches(strided, (1, 64, 56, 56), xeon, stride=2, config=asked) > 2
    for knob in ("prefetch_tiles", "prefetch_table_bytes"):
        with pytest.raises(ValueError, match=knob):
            SpecializedConvConfig(lanes=4, **{knob: -1})


def test_one_row_maps_run_filter_tiles_outer_by_profile():
    """The default compact code on a one-row map (a 1x1 layer's pixels, a strided 1x1 layer's
    im2col row) runs each filter tile over the task's output tiles, in one block of all channels,
    where the profile says so; maps of several rows and profiles without the Xeon fits keep the
    output tiles outside. The tuner's candidates hold both orders of a one-row map."""
    rng = np.random.default_rng(6)
    pointwise = BlockPunchedWeight.from_dense(block_punched(rng, (256, 64, 1, 1), (8, 4), 0.75), (8, 4))
    wide = BlockPunchedWeight.from_dense(block_punched(rng, (64, 64, 3, 3), (8, 4), 0.875), (8, 4))
    xeon, zen4 = as_target({"kind": "llvm", "mcpu": "rocketlake"}), as_target({"kind": "llvm", "mcpu": "znver4"})
    assert profile_for(xeon).one_row_filter_tiles_outer and not profile_for(zen4).one_row_filter_tiles_outer
    candidates = registry.kernel("block_punched_conv2d").candidates
    for args, kwargs in (((pointwise, (1, 64, 56, 56)), {}), ((pointwise, (1, 64, 56, 56)), {"stride": 2})):
        xeon_configs = candidates(*args, xeon, **kwargs)
        assert xeon_configs[0].codegen == "compact" and xeon_configs[0].filter_tiles_outer, xeon_configs[0]
        assert any(not c.filter_tiles_outer for c in xeon_configs[1:] if c.codegen == "compact")
        assert not candidates(*args, zen4, **kwargs)[0].filter_tiles_outer
    assert candidates(pointwise, (1, 64, 56, 56), xeon, stride=2)[0].im2col
    reduction = BlockPunchedWeight.from_dense(block_punched(rng, (256, 1024, 1, 1), (8, 4), 0.75), (8, 4))
    blocks = {c.filter_tiles_outer: c.channel_block for c in candidates(reduction, (1, 1024, 14, 14), xeon)
              if c.codegen == "compact" and c.vectors == 2 and c.filters == 8}
    assert blocks == {True: 1024, False: 256}, blocks
    assert not candidates(wide, (1, 64, 56, 56), xeon, padding=1)[0].filter_tiles_outer


@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize("config", [
    SpecializedConvConfig(lanes=8, vectors=2, rows=2, filters=4, channel_block=5, codegen="compact"),
    SpecializedConvConfig(lanes=8, vectors=1, rows=2, filters=4, channel_block=3, codegen="compact", tap_copies=True,
                          private_input=True, row_tiles=2),
    SpecializedConvConfig(lanes=4, vectors=3, rows=1, filters=2, channel_block=5, codegen="compact", tap_copies=True),
], ids=["phases", "taps-private", "taps-4-lanes"])
def test_strided_copies_of_wide_rows_keep_results(config, stride, run_kernel):
    """Rows wide enough for several vector chunks of a strided copy (each but the last loaded whole
    and shuffled), with padding on both sides and widths that leave a tail."""
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((2, 5, 9, 61)).astype("float32")
    weight = BlockPunchedWeight.from_dense(block_punched(rng, (8, 5, 3, 3), (4, 1), 0.3), (4, 1))
    expected = weight.conv2d(x, stride=stride, padding=1)
    out = run_kernel(block_punched_conv2d(weight, x.shape, stride=stride, padding=1, config=config), [x], expected.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels, filters, size, outer", [
    (64, 256, 56, True), (128, 512, 28, False), (256, 64, 56, False), (512, 256, 28, False), (256, 1024, 14, False)])
def test_one_row_tasks_writing_many_streams_run_filter_tiles_outer(channels, filters, size, outer):
    """Zen 3's profile (no Xeon fits): a one-row map whose task (half its pixels on two blocks)
    writes at least ``one_row_outer_min_output_bytes`` from an input within the L2 cache runs its
    filter tiles outside, in one block of all channels; smaller outputs and reductions keep the
    output tiles outside. A profile without the field (Zen 4) never does, and a knob overrides it."""
    rng = np.random.default_rng(channels + filters)
    weight = BlockPunchedWeight.from_dense(block_punched(rng, (filters, channels, 1, 1), (8, 4), 0.75), (8, 4))
    zen3, zen4 = as_target({"kind": "llvm", "mcpu": "znver3"}), as_target({"kind": "llvm", "mcpu": "znver4"})
    profile = profile_for(zen3)
    assert not profile.one_row_filter_tiles_outer and profile_for(zen4).one_row_outer_min_output_bytes is None
    config = registry.kernel("block_punched_conv2d").candidates(weight, (1, channels, size, size), zen3)[0]
    task_pixels = size * size // config.column_blocks
    writes_many = (4 * filters * task_pixels >= profile.one_row_outer_min_output_bytes
                   and 4 * channels * task_pixels <= profile.l2_bytes)
    assert config.codegen == "compact" and config.filter_tiles_outer == writes_many == outer, config
    assert config.channel_block == channels or not outer
    geometry = make_geometry((1, channels, 1, size * size), (filters, channels, 1, 1))
    assert not compact_config(geometry, 8, 8, 8, profile_for(zen4), 0).filter_tiles_outer
    assert not compact_config(geometry, 8, 8, 8, profile, 0, filter_tiles_outer=False).filter_tiles_outer


def test_strided_layers_take_im2col_only_when_its_copy_is_small():
    """Every filter part copies the im2col input: a large one goes to the row layout, with tap copies."""
    rng = np.random.default_rng(3)
    target = {"kind": "llvm", "mcpu": "skylake-avx512"}

    def default(channels, filters, size):
        weight = BlockPunchedWeight.from_dense(block_punched(rng, (filters, channels, 3, 3), (8, 4), 0.125), (8, 4))
        return registry.kernel("block_punched_conv2d").candidates(weight, (1, channels, size, size), target, stride=2, padding=1)[0]

    large = default(64, 128, 32)  # im2col input: 590 KB
    assert not large.im2col and large.tap_copies and large.private_input
    assert default(256, 512, 8).im2col  # 147 KB


def test_pattern_layers_read_aligned_loads_by_default():
    """One filter per pattern tile: its loads bound it, so its default reads aligned vectors: rows it
    shifts in registers where a tile of full vectors spans the row, else one copy per tap column."""
    rng = np.random.default_rng(4)
    target = {"kind": "llvm", "mcpu": "skylake-avx512"}
    weight = _pattern_weight(0.28, 128, 128)
    for size in (16, 32, 28):
        pattern = registry.kernel("pattern_conv2d").candidates(weight, (1, 128, size, size), target)[0]
        assert pattern.codegen == "compact" and pattern.register_shifts and not pattern.tap_copies
        assert pattern.lanes * pattern.vectors >= size and pattern.rows * pattern.vectors <= 8
    narrow = registry.kernel("pattern_conv2d").candidates(weight, (1, 128, 8, 8), target)[0]  # 8 of 16 lanes
    assert narrow.tap_copies and not narrow.register_shifts
    strided = registry.kernel("pattern_conv2d").candidates(weight, (1, 128, 16, 16), target, stride=2)[0]
    assert not strided.register_shifts
    blocks = BlockPunchedWeight.from_dense(block_punched(rng, (128, 128, 3, 3), (8, 4), 0.125), (8, 4))
    config = registry.kernel("block_punched_conv2d").candidates(blocks, (1, 128, 16, 16), target, padding=1)[0]
    assert config.codegen == "compact" and not (config.tap_copies or config.register_shifts)  # each load feeds 8 filters


SHIFT_KNOBS = [
    SpecializedConvConfig(lanes=4, vectors=4, rows=3, filters=1, channel_block=4, row_tiles=2, filter_splits=2,
                          codegen="compact", private_input=True, register_shifts=True),
    SpecializedConvConfig(lanes=16, vectors=1, rows=2, filters=1, channel_block=10, codegen="compact",
                          register_shifts=True),
    SpecializedConvConfig(lanes=8, vectors=2, rows=2, filters=2, channel_block=3, register_shifts=True),
]


@pytest.mark.parametrize("config", SHIFT_KNOBS, ids=lambda c: f"{c.codegen}-l{c.lanes}v{c.vectors}r{c.rows}")
@pytest.mark.parametrize("padding", [1, (0, 0, 2, 2), (2, 2, 0, 0), (1, 2, 1, 0)], ids=str)
def test_register_shifts_keep_results(config, padding, run_kernel):
    """Tap columns shifted in registers: left paddings 0 to 2 (shifts of -2 to +2, zero filled at
    both ends of the row), a row narrower than the tile, batch 2, ragged rows and channels."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 10, 11, 13)).astype("float32")
    library = pattern_library(6, 5, rng)
    pattern = PatternWeight.from_dense(pattern_pruned(rng, 9, 10, library, 0.4), library)
    expected = pattern.conv2d(x, stride=1, padding=padding)
    out = run_kernel(pattern_conv2d(pattern, x.shape, padding=padding, config=config), [x], expected.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_register_shifts_refuse_what_they_cannot_shift():
    """A tile narrower than the input or output row, a strided width, block columns (taps not in the
    code): clear errors."""
    rng = np.random.default_rng(22)
    library = pattern_library(6, 4, rng)
    pattern = PatternWeight.from_dense(pattern_pruned(rng, 4, 6, library, 0.5), library)
    shifts = SpecializedConvConfig(lanes=4, vectors=2, rows=2, filters=1, channel_block=6, codegen="compact",
                                   register_shifts=True)
    with pytest.raises(ValueError, match="a tile of 8 columns for 12 input and 12 output columns"):
        pattern_conv2d(pattern, (1, 6, 8, 12), config=shifts)
    # no right padding: the output fits the tile, but the last tap reads input column 8
    with pytest.raises(ValueError, match="a tile of 8 columns for 9 input and 8 output columns"):
        pattern_conv2d(pattern, (1, 6, 8, 9), padding=(1, 1, 1, 0), config=shifts)
    with pytest.raises(ValueError, match="stride 1 along the width"):
        pattern_conv2d(pattern, (1, 6, 8, 16), stride=2, config=shifts)
    punched = BlockPunchedWeight.from_dense(block_punched(rng, (8, 6, 3, 3), (4, 3), 0.5), (4, 3))
    with pytest.raises(ValueError, match="block columns"):
        block_punched_conv2d(punched, (1, 6, 8, 8), padding=1, config=dataclasses.replace(shifts, filters=4))
    with pytest.raises(ValueError, match="not with tap_copies"):
        dataclasses.replace(shifts, tap_copies=True)


def test_table_as_relax_constant():
    """In a Relax program the table is one more ``relax.const`` argument after data and bias."""
    rng = np.random.default_rng(2)
    fmt = _pattern_weight(0.4, 6, 5)
    x = rng.standard_normal((1, 6, 7, 9)).astype("float32")
    bias = rng.standard_normal(5).astype("float32")
    config = registry.kernel("pattern_conv2d").candidates(fmt, x.shape)[-1]
    assert config.codegen == "compact"
    func = pattern_conv2d(fmt, x.shape, epilogue=Epilogue(bias=True, activation="relu"), config=config, name="sparse_conv")
    builder = relax.BlockBuilder()
    data = relax.Var("x", relax.TensorType(x.shape, "float32"))
    with builder.function("main", [data]):
        with builder.dataflow():
            callee = builder.add_func(func, "sparse_conv")
            args = relax.Tuple([data, relax.const(bias), relax.const(table_argument(func))])
            call = relax.call_tir(callee, args, out_ty=relax.TensorType((1, 5, 7, 9), "float32"))
            result = builder.emit_output(builder.emit(call))
        builder.emit_func_output(result)
    with tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG):
        executable = tvm.compile(builder.get(), target=as_target(None))
    got = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
    expected = torch.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(fmt.to_dense()), torch.from_numpy(bias), padding=1))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "config",
    [
        # one row block: as many filter parts as threads (1, 2, 3), each copying the input
        SpecializedConvConfig(lanes=8, vectors=1, rows=2, filters=2, channel_block=4, row_tiles=9, filter_splits=3,
                              codegen="compact", private_input=True),
        # two row blocks: one filter part for 1 and 2 threads, two for 3
        SpecializedConvConfig(lanes=4, vectors=2, rows=3, filters=3, channel_block=3, row_tiles=2, filter_splits=2,
                              codegen="compact", private_input=True),
        SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=3, channel_block=10, filter_splits=4,
                              codegen="compact", im2col=True, private_input=True),
        SpecializedConvConfig(lanes=8, vectors=1, rows=2, filters=2, channel_block=5, row_tiles=9, filter_splits=3,
                              private_input=True),
        # two column blocks of a 2-D map, each task copying the columns its tiles read (stride phases, tap copies)
        SpecializedConvConfig(lanes=4, vectors=1, rows=2, filters=3, channel_block=4, row_tiles=2, filter_splits=2,
                              column_blocks=2, codegen="compact", private_input=True),
        SpecializedConvConfig(lanes=4, vectors=1, rows=3, filters=3, channel_block=10, row_tiles=1, column_blocks=2,
                              codegen="compact", private_input=True, tap_copies=True),
        # an im2col row of 42 pixels in 11 tiles of 4, in blocks of 4, 4 and 3: each task copies the output rows
        # its pixels lie in, the last one the zeros past them
        SpecializedConvConfig(lanes=4, vectors=1, rows=1, filters=3, channel_block=10, filter_splits=2, column_blocks=3,
                              codegen="compact", im2col=True, private_input=True),
        # one shared copy, then the tasks, then the crop, in one launch with a barrier after each stage
        SpecializedConvConfig(lanes=4, vectors=2, rows=3, filters=3, channel_block=3, row_tiles=1, codegen="compact"),
        SpecializedConvConfig(lanes=4, vectors=2, rows=1, filters=3, channel_block=10, codegen="compact", im2col=True),
        SpecializedConvConfig(lanes=8, vectors=1, rows=2, filters=2, channel_block=5, row_tiles=1),
    ],
    ids=["rows", "row-blocks", "im2col", "specialized", "column-blocks", "column-blocks-tap-copies",
         "column-blocks-im2col", "shared-rows", "shared-im2col", "shared-specialized"],
)
def test_input_copies_at_any_thread_count(config, tmp_path):
    """Right at 1, 2 and 3 threads, each run after a run on other inputs.

    A private-input kernel runs as many filter parts as it has threads; a shared copy is filled by
    all threads before any task reads it (a missing barrier would read the earlier run's copy).
    """
    rng = np.random.default_rng(17)
    x = rng.standard_normal((1, 10, 11, 13)).astype("float32")
    weight = BlockPunchedWeight.from_dense(block_punched(rng, (11, 10, 3, 3), (4, 3), 0.4), (4, 3))
    func = block_punched_conv2d(weight, x.shape, stride=2, padding=1, config=config)
    compile_kernel(func, as_target(None)).export_library(tmp_path / "kernel.so")
    table = table_argument(func)
    arrays = [x] + ([table] if table is not None else []) + [np.zeros((1, 11, 6, 7), "float32")]
    np.savez(tmp_path / "args.npz", name=func.attrs["global_symbol"], **{f"arg{i}": a for i, a in enumerate(arrays)})
    subprocess.run(
        [sys.executable, "-m", "tests.schedules.threaded_run", tmp_path / "kernel.so", tmp_path / "args.npz",
         tmp_path / "out.npz"],
        check=True, cwd=Path(__file__).resolve().parents[3], env=dict(os.environ, TVM_NUM_THREADS="3"),
    )
    outputs = np.load(tmp_path / "out.npz")
    expected = weight.conv2d(x, stride=2, padding=1)
    for threads in THREAD_COUNTS:
        np.testing.assert_allclose(outputs[f"threads{threads}"], expected, rtol=1e-4, atol=1e-4, err_msg=f"{threads} threads")
