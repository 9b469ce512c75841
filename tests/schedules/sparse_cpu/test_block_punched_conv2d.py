import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.epilogue import Epilogue
from schedules.sparse_cpu.block_punched_conv2d import block_punched_conv2d, block_punched_entries, block_punched_terms
from schedules.sparse_cpu.compact import block_row_entries
from schedules.sparse_cpu.specialized import filter_blocks_of
from schedules.profiles import profile_for
from schedules.sparse_cpu.heuristics import MIN_CHANNEL_BLOCK, accumulators_for
from schedules.target_info import as_target
from schedules.sparse_cpu.space import kernel_geometry, layer_default_config
from tvm_sparse.formats import BlockPunchedWeight
from tvm_sparse.formats.synthetic import block_punched

# (batch, channels, filters, kernel, height, width, stride, padding, block, density, epilogue)
CASES = [
    (1, 8, 16, 3, 8, 8, 1, 1, (8, 4), 0.25, Epilogue(bias=True, activation="relu")),
    (2, 7, 10, 3, 9, 11, 2, 1, (8, 4), 0.4, Epilogue(bias=True, residual=True, activation="relu6")),
    (1, 6, 5, 1, 7, 5, 1, 0, (4, 2), 0.5, Epilogue(residual=True)),
    # 1x1 layers run as one row of pixels: two images, a row that ends inside a vector
    (2, 64, 40, 1, 14, 14, 1, 0, (8, 4), 0.25, Epilogue(bias=True, residual=True, activation="relu")),
    (1, 24, 16, 1, 9, 9, 1, 0, (8, 4), 0.25, Epilogue(bias=True)),
    (1, 12, 8, 1, 6, 6, 1, 1, (8, 4), 0.5, Epilogue()),
    # a sparse 1x1 layer whose channel blocks each keep 8 channels: 64 and 32 channels
    (1, 96, 16, 1, 10, 10, 1, 0, (8, 8), 0.125, Epilogue(bias=True)),
    # a strided 1x1 layer reads every second pixel: its default copies them as one row (im2col)
    (2, 16, 24, 1, 11, 11, 2, 0, (8, 4), 0.3, Epilogue(bias=True, activation="relu")),
    # one-row tiles of two vectors on rows of an odd count of vectors (7x7 and 14 -> 7 on AVX2)
    (1, 32, 24, 1, 7, 7, 1, 0, (8, 4), 0.3, Epilogue(bias=True, activation="relu")),
    (1, 32, 16, 1, 14, 14, 2, 0, (8, 4), 0.3, Epilogue(bias=True)),
    (1, 5, 9, 5, 10, 9, 1, 2, (8, 4), 0.3, Epilogue(bias=True)),
    (1, 3, 8, 7, 12, 12, 2, 3, (8, 4), 0.3, Epilogue(activation="relu")),
    (1, 9, 6, 3, 6, 13, 1, (0, 1, 2, 0), (3, 5), 0.6, Epilogue()),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"c{c[1]}k{c[2]}r{c[3]}_{c[4]}x{c[5]}_s{c[6]}b{c[8][0]}x{c[8][1]}")
@pytest.mark.parametrize("codegen", ["default", "compact"])
def test_matches_torch(case, codegen, kernel_matches_torch):
    batch, channels, filters, kernel, height, width, stride, padding, block, density, epilogue = case
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    weight = block_punched(rng, (filters, channels, kernel, kernel), block, density)
    x = rng.standard_normal((batch, channels, height, width)).astype("float32")
    kernel_matches_torch(block_punched_conv2d, BlockPunchedWeight.from_dense(weight, block), weight, x, rng, stride,
                         padding, epilogue, codegen)


def test_rejects_other_formats():
    with pytest.raises(TypeError, match="BlockPunchedWeight"):
        block_punched_conv2d(np.zeros((4, 4, 3, 3)), (1, 4, 8, 8))


def test_pointwise_layers_run_as_one_row_of_pixels():
    """A 1x1 layer with stride 1 and no padding computes its ``H * W`` pixels as one row (no input
    copy, full vectors); strided or padded 1x1 layers and larger kernels keep their map."""
    rng = np.random.default_rng(3)
    pointwise = BlockPunchedWeight.from_dense(block_punched(rng, (16, 8, 1, 1), (8, 4), 0.5), (8, 4))
    geometry, param_shapes = kernel_geometry(pointwise, (2, 8, 14, 14), 1, 0)
    assert geometry.data_shape == (2, 8, 1, 196)
    assert param_shapes == ((2, 8, 14, 14), (2, 16, 14, 14))
    spatial = BlockPunchedWeight.from_dense(block_punched(rng, (16, 8, 3, 3), (8, 4), 0.5), (8, 4))
    for weight, stride, padding in ((pointwise, 2, 0), (pointwise, 1, 1), (spatial, 1, 1)):
        geometry, param_shapes = kernel_geometry(weight, (2, 8, 14, 14), stride, padding)
        assert param_shapes is None and geometry.data_shape == (2, 8, 14, 14)


def test_strided_pointwise_layers_copy_only_the_pixels_they_read():
    """A strided 1x1 layer's default copies the pixels it reads as one row (its im2col matrix,
    smaller than the input), however large; on AVX-512 a tile of such a row keeps a block row of
    8 filters even where the row is cut into 8-lane vectors, since the register file holds them."""
    rng = np.random.default_rng(4)
    avx512 = {"kind": "llvm", "mcpu": "znver4"}
    for channels, filters, size in ((256, 512, 56), (1024, 2048, 14)):
        weight = BlockPunchedWeight.from_dense(block_punched(rng, (filters, channels, 1, 1), (8, 4), 0.25), (8, 4))
        config = layer_default_config(weight, (1, channels, size, size), avx512, stride=2)
        assert config.im2col and config.filters == 8, config
    spatial = BlockPunchedWeight.from_dense(block_punched(rng, (128, 128, 3, 3), (8, 4), 0.25), (8, 4))
    assert not layer_default_config(spatial, (1, 128, 56, 56), avx512, stride=2, padding=1).im2col


def test_pointwise_channel_blocks_keep_enough_channels():
    """The literal code of a 1x1 layer blocks its input channels so that each block keeps
    ``MIN_CHANNEL_BLOCK`` of them: its L1 slab is the whole map, which left 8 channels, one kept
    column of an 8x8 block, per block (partial sums re-read for every FMA)."""
    rng = np.random.default_rng(5)
    weight = BlockPunchedWeight.from_dense(block_punched(rng, (64, 256, 1, 1), (8, 8), 0.125), (8, 8))
    config = layer_default_config(weight, (1, 256, 56, 56), {"kind": "llvm", "mcpu": "znver4"})
    assert config.codegen == "specialized"
    assert config.channel_block * 0.125 >= MIN_CHANNEL_BLOCK, config


@pytest.mark.parametrize("target", [{"kind": "llvm", "mcpu": "znver3"}, {"kind": "llvm", "mcpu": "znver4"},
                                    {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76"}],
                         ids=["avx2", "avx512", "neon"])
def test_one_row_tiles_fill_the_accumulators_with_vectors_and_filters(target):
    """A default tile of a 1x1 layer's one row of pixels (stride 1 as one row, strided as its im2col
    row) fills the register budget with vectors and filters, not filters alone (1 vector x 8
    filters used half of it on AVX-512 and NEON and loaded more per FMA on AVX2); a row of one
    pixel (a linear layer) gives the budget to a block row's filters."""
    rng = np.random.default_rng(6)
    target = as_target(target)
    accumulators, waste = accumulators_for(target), profile_for(target).tile_waste
    for filters, channels, size, stride in ((256, 1024, 14, 1), (2048, 512, 7, 1), (2048, 1024, 14, 2), (64, 64, 56, 1)):
        weight = BlockPunchedWeight.from_dense(block_punched(rng, (filters, channels, 1, 1), (8, 4), 0.25), (8, 4))
        config = layer_default_config(weight, (1, channels, size, size), target, stride=stride)
        if config.codegen == "specialized":
            continue  # the literal code of a small layer keeps its own tile
        pixels = (size // stride) ** 2
        row_vectors = -(-pixels // config.lanes)
        assert config.rows == 1 and config.filters <= 8, config
        assert config.filters * config.vectors == accumulators, config
        assert -(-row_vectors // config.vectors) * config.vectors <= waste * row_vectors, config
    linear = BlockPunchedWeight.from_dense(block_punched(rng, (1000, 2048, 1, 1), (8, 4), 0.25), (8, 4))
    config = layer_default_config(linear, (1, 2048, 1, 1), target)
    assert config.vectors == 1 and config.filters == 8, config


def test_vector_width_follows_the_profiles_vector_waste(run_kernel, epilogue_case):
    """A 7x7 map's 49 pixels in whole vectors: 4 of 16 lanes (64 computed, 1.31 per pixel) where
    the profile's ``vector_waste`` allows it (two full-width FMA pipes), else 7 of 8 lanes (1.14);
    the row of 16-lane vectors matches PyTorch."""
    rng = np.random.default_rng(7)
    weight = BlockPunchedWeight.from_dense(block_punched(rng, (512, 2048, 1, 1), (8, 4), 0.25), (8, 4))
    xeon, zen4 = as_target({"kind": "llvm", "mcpu": "rocketlake"}), as_target({"kind": "llvm", "mcpu": "znver4"})
    assert layer_default_config(weight, (1, 2048, 7, 7), xeon).lanes == 16
    assert layer_default_config(weight, (1, 2048, 7, 7), zen4).lanes == 8
    assert not profile_for(xeon).exceeds_vector_waste(49, 16) and profile_for(zen4).exceeds_vector_waste(49, 16)
    dense = block_punched(rng, (24, 48, 1, 1), (8, 4), 0.3)
    small = BlockPunchedWeight.from_dense(dense, (8, 4))
    x = rng.standard_normal((1, 48, 7, 7)).astype("float32")
    epilogue = Epilogue(bias=True, residual=True, activation="relu")
    config = layer_default_config(small, x.shape, xeon)
    assert config.lanes == 16, config
    extras, expected = epilogue_case(rng, x, dense, 1, 0, epilogue)
    func = block_punched_conv2d(small, x.shape, epilogue=epilogue, config=config)
    np.testing.assert_allclose(run_kernel(func, [x, *extras.values()], expected.shape), expected, rtol=1e-4, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), filters=st.integers(1, 30), channels=st.integers(1, 12),
       kernel=st.sampled_from([1, 3, 5]), bk=st.integers(1, 9), bc=st.integers(1, 5), tile=st.integers(1, 16),
       density=st.floats(0.0, 1.0), dtype=st.sampled_from([np.float32, np.float64]))
def test_compact_entries_from_the_arrays_equal_those_from_the_terms(seed, filters, channels, kernel, bk, bc, tile,
                                                                     density, dtype):
    """The block-punched compact code's entries, built from the format's arrays, are those of its terms."""
    rng = np.random.default_rng(seed)
    weight = BlockPunchedWeight.from_dense(
        block_punched(rng, (filters, channels, kernel, kernel), (bk, bc), density).astype(dtype), (bk, bc))
    tiles = filter_blocks_of(filters, bk, tile)

    def entries_of(entries):
        return [sorted((e.channel, e.row, e.col, e.group, e.weights.astype(np.float32).tobytes(), e.weights.shape)
                       for e in tile_entries) for tile_entries in entries]

    assert entries_of(block_punched_entries(weight, tiles)) == \
        entries_of(block_row_entries(block_punched_terms(weight), tiles))
