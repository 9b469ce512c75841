"""Winograd F(m x m, 3 x 3) for dense 3x3 stride-1 convolutions: the transforms, the layers it takes, the
kernel against PyTorch (with its fused epilogue, at 1, 2 and 3 threads) and the rewrite in the pipeline."""

import numpy as np
import pytest
import torch
import tvm
from torch import nn

import tvm_sparse
from schedules.dense.winograd import (GEMM, WinogradConv2d, filters_per_block, transform_matrices,
                                      transform_weight, winograd_conv2d, winograd_tile_size)
from tests.conftest import relative_error
from tests.schedules.dense.harness import AVX2, AVX512, ZEN3, conv2d_module, primfuncs, run, scheduled_module, torch_conv2d
from tests.schedules.threaded_run import outputs_at_thread_counts

ARM = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76"}

#: Largest error relative to the output's magnitude: the transforms' coefficients (up to 8 in
#: F(4x4)) add rounding that the direct convolution (within 1e-5) does not have.
TOLERANCE = 5e-5


@pytest.mark.parametrize("tile", [2, 4])
def test_the_transforms_compute_a_correlation(tile):
    """A^T [(G g) * (B^T d)] is the correlation of a window of m + 2 inputs with a 3-tap filter."""
    a, b, g = transform_matrices(tile)
    rng = np.random.default_rng(tile)
    for _ in range(5):
        window, taps = rng.standard_normal(tile + 2), rng.standard_normal(3)
        np.testing.assert_allclose(a.T @ ((g @ taps) * (b.T @ window)), np.correlate(window, taps, "valid"),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("filters", [8, 6, 5])
def test_the_transformed_weight_is_packed_by_blocks_of_filters(filters):
    rng = np.random.default_rng(filters)
    weight = rng.standard_normal((filters, 3, 3, 3)).astype("float32")
    _, _, g = transform_matrices(4)
    packed, kb = transform_weight(weight, 4), filters_per_block(filters)
    assert packed.shape == (6, 6, filters // kb, 3, kb)
    for k in range(filters):
        for c in range(3):
            np.testing.assert_allclose(packed[:, :, k // kb, c, k % kb], g @ weight[k, c] @ g.T, rtol=1e-5, atol=1e-6)


def _tile(target, data_shape, weight_shape, strides=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1)):
    return winograd_tile_size(tvm.target.Target(target), data_shape, weight_shape, strides, padding, dilation)


def test_winograd_takes_3x3_stride_1_layers_with_enough_channels_and_tiles():
    # ResNet-50's and ResNet-18's stride-1 3x3 layers: F(4x4) where whole tiles cover the map ...
    assert _tile(ZEN3, (1, 64, 56, 56), (64, 64, 3, 3)) == 4
    assert _tile(ZEN3, (1, 256, 14, 14), (256, 256, 3, 3)) == 4
    assert _tile(ZEN3, (1, 64, 32, 32), (64, 64, 3, 3)) == 4
    # ... F(2x2) where the F(4x4) tiles would be mostly padding of a register tile (two vectors of tiles)
    assert _tile(ZEN3, (1, 512, 7, 7), (512, 512, 3, 3)) == 2
    assert _tile(ZEN3, (1, 256, 8, 8), (256, 256, 3, 3)) == 2
    assert _tile(ZEN3, (4, 256, 8, 8), (256, 256, 3, 3)) == 4  # four images: 16 tiles of 4x4 fill a register tile
    # none at all on maps so small that even F(2x2)'s tiles are mostly padding (4 tiles in a register tile of 16)
    assert _tile(ZEN3, (1, 512, 4, 4), (512, 512, 3, 3)) is None


@pytest.mark.parametrize("data_shape, weight_shape, options", [
    ((1, 16, 32, 32), (16, 16, 3, 3), {}),  # too few channels
    ((1, 64, 32, 32), (16, 64, 3, 3), {}),  # too few filters
    ((1, 3, 224, 224), (64, 3, 3, 3), {}),  # a stem
    ((1, 64, 56, 56), (64, 64, 3, 3), {"strides": (2, 2)}),
    ((1, 64, 56, 56), (64, 64, 3, 3), {"padding": (0, 0, 0, 0)}),
    ((1, 64, 56, 56), (64, 64, 3, 3), {"padding": (1, 1, 0, 0)}),
    ((1, 64, 56, 56), (64, 64, 3, 3), {"padding": (2, 2, 2, 2), "dilation": (2, 2)}),
    ((1, 64, 56, 56), (64, 64, 5, 5), {"padding": (2, 2, 2, 2)}),
    ((1, 64, 56, 56), (64, 64, 3, 1), {"padding": (1, 0, 1, 0)}),
])
def test_other_layers_stay_direct(data_shape, weight_shape, options):
    assert _tile(ZEN3, data_shape, weight_shape, **options) is None


@pytest.mark.parametrize("target", [AVX512, AVX2, ARM], ids=["znver4", "skylake", "cortex-a76"])
def test_profiles_without_winograd_keep_every_layer_direct(target):
    assert _tile(target, (1, 256, 14, 14), (256, 256, 3, 3)) is None


# (N, C, K, H, W, bias, residual, epilogue): F(4x4) and F(2x2), maps that whole tiles do not cover,
# tile counts that are not whole vectors, filters in blocks of 4, 2 and 1, two images
CASES = [
    (1, 64, 64, 14, 14, True, True, "relu"),  # a ResNet block: 16 tiles of 4x4, the last row and column ragged
    (1, 32, 48, 13, 9, False, False, "relu6"),  # 12 tiles padded to 16 (two vectors)
    (1, 64, 36, 7, 7, True, False, None),  # F(2x2): 16 tiles
    (1, 40, 34, 8, 8, True, True, None),  # F(2x2), blocks of 2 filters
    (1, 33, 35, 28, 28, False, False, "relu"),  # 49 tiles padded to 64, blocks of 1 filter
    (2, 32, 32, 12, 12, True, False, "relu"),  # two images: 18 tiles padded to 32
    (1, 64, 64, 56, 56, True, False, "relu"),  # 196 tiles padded to 208
]


def _case_id(case):
    n, c, k, h, w, *_ = case
    return f"N{n}-C{c}-K{k}-{h}x{w}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_winograd_layers_match_pytorch(case):
    n, c, k, h, w, has_bias, has_residual, epilogue = case
    target = tvm.target.Target(ZEN3)
    rng = np.random.default_rng(sum(map(ord, _case_id(case))))
    weight = rng.standard_normal((k, c, 3, 3)).astype("float32")
    bias = rng.standard_normal(k).astype("float32") if has_bias else None
    x = rng.standard_normal((n, c, h, w)).astype("float32")
    residual = rng.standard_normal((n, k, h, w)).astype("float32") if has_residual else None
    assert winograd_tile_size(target, x.shape, weight.shape, (1, 1), (1, 1, 1, 1), (1, 1)) is not None
    mod = conv2d_module(x.shape, weight, 1, (1, 1, 1, 1), 1, 1, bias, epilogue,
                        None if residual is None else residual.shape)
    scheduled = scheduled_module(mod, target)
    (conv,) = [f for name, f in primfuncs(scheduled).items() if "conv2d" in name]
    script = conv.script()
    # the epilogue is fused in, and the products run on vectors in parallel
    assert f'T.sblock("{GEMM}_update")' in script and "T.vectorized" in script and "T.parallel" in script
    assert len(primfuncs(scheduled)) == 1
    expected = torch_conv2d(x, weight, bias, 1, 1, 1, 1, residual, epilogue)
    actual = run(scheduled, target, *([x] if residual is None else [x, residual]))
    assert relative_error(actual, expected) <= TOLERANCE


@pytest.mark.parametrize("data_shape, filters, tile", [
    ((1, 64, 14, 14), 64, 4), ((2, 24, 10, 11), 20, 4), ((1, 48, 7, 7), 32, 2), ((3, 16, 5, 9), 12, 2),
])
def test_winograd_kernel_matches_pytorch_at_any_thread_count(data_shape, filters, tile, tmp_path):
    target = tvm.target.Target(ZEN3)
    rng = np.random.default_rng(filters)
    x = rng.standard_normal(data_shape).astype("float32")
    weight = rng.standard_normal((filters, data_shape[1], 3, 3)).astype("float32")
    scheduled = WinogradConv2d().apply(winograd_conv2d(data_shape, filters, tile, 8), target, False)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), padding=1).numpy()
    arrays = [x, transform_weight(weight, tile), np.zeros(expected.shape, "float32")]
    for threads, actual in outputs_at_thread_counts(scheduled.mod["main"], target, arrays, tmp_path).items():
        assert relative_error(actual, expected) <= TOLERANCE, f"{threads} threads"


class _Block(nn.Module):
    """A ResNet basic block: conv-BN-ReLU, conv-BN, shortcut add, ReLU."""

    def __init__(self, channels):
        super().__init__()
        self.a, self.b = (nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(2))
        self.bn_a, self.bn_b = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(self.bn_b(self.b(torch.relu(self.bn_a(self.a(x))))) + x)


def _random_block(channels, seed):
    torch.manual_seed(seed)
    block = _Block(channels).eval()
    with torch.no_grad():
        for bn in (block.bn_a, block.bn_b):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    return block


def _fused_functions(compiled):
    return [gv.name_hint for gv, f in compiled.lowered.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]


def test_compile_runs_a_resnet_block_by_winograd_with_its_epilogues_fused():
    block = _random_block(64, 0)
    x = torch.randn(1, 64, 16, 16)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(block, x), target=ZEN3)
    names = _fused_functions(compiled)
    assert sorted(names) == ["fused_conv2d_winograd_add_add1_relu", "fused_conv2d_winograd_add_relu"], names
    assert [d.decision for d in compiled.report] == ["dense", "dense"]
    assert all(d.reason.endswith("; runs by Winograd F(4x4, 3x3)") for d in compiled.report), compiled.report
    with torch.no_grad():
        expected = block(x).numpy()
    assert relative_error(compiled(x), expected) <= TOLERANCE


def test_a_weight_that_is_not_finite_or_not_constant_keeps_the_direct_convolution():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()).eval()
    with torch.no_grad():
        model[0].weight[0, 0, 1, 1] = float("inf")  # the transform would turn it into NaN (inf - inf)
    x = torch.randn(1, 32, 8, 8)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, x), target=ZEN3)
    assert not any("winograd" in name for name in _fused_functions(compiled))
    assert "Winograd" not in compiled.report[0].reason
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.isinf(expected).any()
    np.testing.assert_allclose(compiled(x), expected, rtol=1e-5, atol=1e-5, equal_nan=True)
    mod, _ = tvm_sparse.from_torch(_random_block(32, 1), x)  # weights left unbound: runtime inputs
    assert not any("winograd" in gv.name_hint for gv in scheduled_module(mod, tvm.target.Target(ZEN3)).functions)


def test_a_non_finite_input_reaches_the_outputs_of_its_tiles():
    """Where PyTorch gives NaN or infinity, so does Winograd; elsewhere it may give NaN only in the
    4x4 output tiles whose windows hold the value, and agrees with PyTorch outside them."""
    torch.manual_seed(2)
    conv = nn.Conv2d(32, 32, 3, padding=1).eval()
    x = torch.randn(1, 32, 16, 16)
    x[0, 3, 5, 6], x[0, 9, 12, 1] = float("nan"), float("inf")
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(conv, x), target=ZEN3)
    assert any("winograd" in name for name in _fused_functions(compiled))
    with torch.no_grad():
        expected = conv(x).numpy()
    actual = compiled(x)
    assert np.all(~np.isfinite(actual[~np.isfinite(expected)]))
    reached = np.zeros((16, 16), bool)  # outputs of the tiles whose 6x6 windows hold (5, 6) or (12, 1)
    for y, x_ in ((5, 6), (12, 1)):
        for tile_row in range(4):
            for tile_column in range(4):
                if tile_row * 4 - 1 <= y <= tile_row * 4 + 4 and tile_column * 4 - 1 <= x_ <= tile_column * 4 + 4:
                    reached[tile_row * 4 : tile_row * 4 + 4, tile_column * 4 : tile_column * 4 + 4] = True
    np.testing.assert_allclose(actual[..., ~reached], expected[..., ~reached], rtol=TOLERANCE, atol=TOLERANCE)
