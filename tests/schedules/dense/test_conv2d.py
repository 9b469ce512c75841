"""Dense conv2d (groups = 1, grouped, depthwise) through the schedule phase, against PyTorch.

Each case builds ``epilogue(conv2d(x, w) + bias [+ residual])`` as a Relax module, checks that the
schedule phase packed the weight and scheduled every function (no naive loop nest is left), and
compares the compiled result with ``torch.nn.functional.conv2d``.
"""

import dataclasses
import re

import numpy as np
import pytest
import tvm
from tvm import s_tir

from schedules.dense.conv2d import DenseConv2dNCHW, WeightPacking, row_bands
from schedules.dense.depthwise import PER_CHANNEL_MIN_ELEMENTS, DepthwiseConv2dNCHW
from schedules.dense.stem import MAX_STEM_CHANNELS, StemConv2dNCHW
from schedules.dense.pointwise import PointwiseConv2dRows
from schedules.dense.pointwise_panels import (column_tile, default_panel, input_bytes, panel_filters, panel_tasks,
                                             ragged_filter_panel)
from schedules import profiles
from schedules.profiles import profile_for
from schedules.dense.winograd import winograd_tile_size
from schedules.dense.tiling import MIN_ACCUMULATORS, accumulator_budget, channel_block, conv_tile, filter_tiles_innermost
from schedules.target_info import vector_lanes
from tests.conftest import relative_error
from tests.schedules.threaded_run import outputs_at_thread_counts
from tests.schedules.dense.test_winograd import TOLERANCE as WINOGRAD_TOLERANCE
from tests.schedules.dense.harness import (AVX2, AVX512, ZEN3, conv2d_module, host_target, primfuncs, run, scheduled_module,
                                           torch_conv2d)

# (C, K, H, W, kernel, stride, padding, dilation, groups, bias, residual, epilogue)
CASES = [
    (3, 64, 32, 32, 3, 1, 1, 1, 1, True, False, "relu"),  # the CIFAR stem
    (64, 64, 16, 16, 3, 1, 1, 1, 1, True, True, "relu"),  # a ResNet block with its shortcut
    (32, 48, 8, 8, 1, 1, 0, 1, 1, True, False, None),  # pointwise, 8x8 pixels as one row (not packed)
    (24, 144, 32, 32, 1, 1, 0, 1, 1, True, True, "relu6"),  # pointwise with wide rows (not packed)
    (96, 576, 8, 8, 1, 1, 0, 1, 1, True, False, "relu6"),  # MobileNetV2 expansion on 8x8
    (160, 960, 4, 4, 1, 1, 0, 1, 1, True, False, "relu6"),  # expansion on 4x4: one AVX-512 vector of pixels
    (576, 96, 8, 8, 1, 1, 0, 1, 1, True, True, None),  # projection with the residual add
    (40, 24, 6, 6, 1, 1, 0, 1, 1, True, False, None),  # 36 pixels: no whole vectors (packed)
    (16, 32, 8, 8, 1, 1, 1, 1, 1, True, False, "relu"),  # padded pointwise (packed)
    (144, 24, 64, 64, 1, 1, 0, 1, 1, False, False, None),  # pointwise projection, 4 vectors a row
    (32, 32, 32, 32, 1, 2, 0, 1, 1, True, False, None),  # strided pointwise: stride 1 on the subsampled map
    (16, 24, 9, 7, 3, 2, 1, 1, 1, False, False, "relu6"),  # odd sizes, stride 2, K not a vector multiple
    (8, 20, 10, 10, 5, 1, 2, 1, 1, True, False, None),  # 5x5, K = 20 (block of 4 on AVX-512)
    (16, 32, 12, 12, (3, 1), (2, 1), (1, 0), 1, 1, True, False, "relu"),  # rectangular kernel and stride
    (8, 16, 11, 11, 3, 1, (0, 2, 1, 0), 2, 1, True, False, None),  # asymmetric padding, dilation 2
    (32, 32, 16, 16, 3, 1, 1, 1, 32, True, False, "relu6"),  # depthwise (MobileNetV2)
    (96, 96, 8, 8, 3, 2, 1, 1, 96, True, False, "relu6"),  # depthwise, stride 2
    (24, 24, 40, 40, 3, 2, 1, 1, 24, True, False, "relu6"),  # depthwise, stride 2, a vector and a rest per row
    (8, 8, 36, 36, 5, 2, 2, 1, 8, True, False, None),  # 5x5 depthwise, stride 2 (MobileNetV3)
    (16, 16, 23, 23, 5, 2, 2, 1, 16, False, False, "relu"),  # 5x5 depthwise, stride 2, odd width (no split)
    (12, 12, 25, 25, 3, 3, 1, 1, 12, True, False, None),  # depthwise, stride 3: columns split into 3 residues
    (16, 16, 70, 70, 3, 2, 1, 1, 16, True, False, "relu6"),  # depthwise, stride 2, interior long enough for LLVM's vectors
    (8, 8, 40, 40, 3, 1, 1, 1, 8, True, True, None),  # depthwise, stride 1, two vectors and a rest per row
    (16, 16, 28, 20, 5, 1, 2, 1, 16, True, True, "relu"),  # 5x5 depthwise, stride 1: a tile of 7 rows
    (8, 8, 14, 21, 7, 1, 3, 1, 8, False, False, None),  # 7x7 depthwise: 49 unrolled taps
    (16, 32, 8, 8, 3, 1, 1, 1, 4, True, True, "relu"),  # grouped, 4 groups, with residual
    (16, 32, 34, 34, 3, 2, 1, 1, 4, True, False, "relu"),  # grouped, stride 2: all channels padded first
    (7, 13, 5, 6, 2, 1, 0, 1, 1, False, False, None),  # nothing divides anything, no epilogue
    (3, 64, 64, 64, 7, 2, 3, 1, 1, True, False, "relu"),  # ResNet-50's stem (pixels in lanes, split columns)
    (3, 32, 64, 64, 3, 2, 1, 1, 1, True, False, "relu6"),  # MobileNetV2's stem
    (4, 16, 32, 32, 3, 1, 2, 2, 1, False, True, None),  # 4 channels, dilation 2, with a residual
    (3, 16, 66, 66, 3, 2, 0, 1, 1, True, False, None),  # unpadded stride 2: no split copy, so packed
    (3, 16, 63, 63, 3, 2, 1, 1, 1, True, False, None),  # padded width 65: no split by 2, so packed
]


def _case_id(case):
    c, k, h, w, kernel, stride, padding, dilation, groups, *_ = case
    return f"C{c}-K{k}-{h}x{w}-k{kernel}-s{stride}-p{padding}-d{dilation}-g{groups}"


def _pair(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


def _padding4(padding):
    """Relax's (top, left, bottom, right) from an int, a (rows, cols) pair or a 4-tuple."""
    if isinstance(padding, tuple) and len(padding) == 4:
        return padding
    rows, cols = _pair(padding)
    return rows, cols, rows, cols


#: Shapes whose untuned tiles differ with 16 registers (same columns as ``CASES``).
AVX2_CASES = [
    (320, 160, 7, 7, 1, 1, 0, 1, 1, True, True, "relu6"),  # 1x1 on 7x7: one vector of filters, 7 pixels
    (64, 64, 7, 7, 3, 1, 1, 1, 1, True, False, "relu"),  # 3x3 on 7x7
    (64, 32, 14, 14, 3, 1, 1, 1, 1, False, False, None),  # 3x3 on 14x14: two vectors of filters, 2x2 pixels
    (24, 144, 32, 32, 1, 1, 0, 1, 1, True, True, "relu6"),  # pointwise rows: 6 filters x 2 vectors of pixels
    (16, 20, 4, 4, 1, 1, 0, 1, 1, True, False, None),  # pointwise rows: 5 filters x the 2 vectors of the map
    (32, 16, 8, 8, 1, 1, 0, 1, 1, False, False, "relu"),  # pointwise rows: 4 filters x 2 vectors
    (16, 16, 56, 56, 3, 1, 1, 1, 16, True, False, "relu6"),  # depthwise on 56x56: tiles of one whole vector
    (8, 8, 112, 112, 3, 2, 1, 1, 8, True, False, "relu6"),  # depthwise, stride 2, 112 -> 56
    (8, 8, 24, 24, 5, 1, 2, 1, 8, False, True, None),  # 5x5 depthwise on 24x24: 8 columns, not 12
    (16, 16, 28, 28, 3, 1, 1, 1, 16, True, True, "relu6"),  # depthwise on 28x28: rows of 28 columns
    (24, 24, 56, 56, 5, 2, 2, 1, 24, True, False, "relu6"),  # 5x5 depthwise, stride 2, 56 -> 28
    (40, 40, 7, 7, 3, 1, 1, 1, 40, True, True, "relu6"),  # depthwise on 7x7: a tile of all 7 rows
    (24, 24, 14, 14, 3, 2, 1, 1, 24, True, False, "relu6"),  # depthwise, stride 2, 14 -> 7: all 7 rows
    (3, 32, 64, 64, 3, 2, 1, 1, 1, True, False, "relu6"),  # a stem: 8-lane rows, 12 filters x 2 rows
]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_dense_conv2d_matches_pytorch(case):
    _check_against_pytorch(case, host_target())


@pytest.mark.parametrize("case", AVX2_CASES, ids=_case_id)
def test_dense_conv2d_matches_pytorch_on_avx2(case):
    _check_against_pytorch(case, tvm.target.Target(AVX2))


def _check_against_pytorch(case, target):
    """Compile ``case`` for ``target``, check it against PyTorch and return its scheduled convolution."""
    c, k, h, w, kernel, stride, padding, dilation, groups, has_bias, has_residual, epilogue = case
    rng = np.random.default_rng(sum(map(ord, _case_id(case))))
    kh, kw = _pair(kernel)
    weight = rng.standard_normal((k, c // groups, kh, kw)).astype("float32")
    bias = rng.standard_normal(k).astype("float32") if has_bias else None
    x = rng.standard_normal((1, c, h, w)).astype("float32")
    top, left, bottom, right = _padding4(padding)
    x_padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))  # PyTorch pads symmetrically only
    out_shape = torch_conv2d(x_padded, weight, None, stride, 0, dilation, groups, None, None).shape
    residual = rng.standard_normal(out_shape).astype("float32") if has_residual else None
    expected = torch_conv2d(x_padded, weight, bias, stride, 0, dilation, groups, residual, epilogue)
    mod = conv2d_module(x.shape, weight, stride, _padding4(padding), dilation, groups, bias, epilogue,
                        None if residual is None else residual.shape)
    scheduled = scheduled_module(mod, target)
    funcs = primfuncs(scheduled)
    assert funcs and all(f.attrs.get("tirx.is_scheduled", False) for f in funcs.values())
    (conv,) = [f for name, f in funcs.items() if "conv2d" in name]
    # The register-tile schedule splits the reduction into init and update blocks and vectorizes
    # the accumulator; the fallback rule would do neither. (Winograd's products are tiled alike.)
    winograd = groups == 1 and winograd_tile_size(target, x.shape, weight.shape, _pair(stride), _padding4(padding),
                                                  _pair(dilation)) is not None
    block = "winograd_gemm" if winograd else "conv2d_nchw" if groups == 1 else "group_conv2d_nchw"
    assert f'T.sblock("{block}_update")' in conv.script() and "T.vectorized" in conv.script()
    # a strided unpadded 1x1 convolution runs with stride 1 on a copy of the pixels it reads
    subsampled = kernel == 1 and stride != 1 and padding == 0 and groups == 1
    assert ("subsample" in funcs) == subsampled
    pointwise_rows = kernel == 1 and padding == 0 and (out_shape[2] * out_shape[3]) % vector_lanes(target) == 0
    if groups == 1 and c > MAX_STEM_CHANNELS:  # stems: test_stems_run_pixels_in_lanes_where_rows_are_whole_vectors
        assert len(conv.params[1].shape) == (4 if pointwise_rows else 5)

    actual = run(scheduled, target, *([x] if residual is None else [x, residual]))
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= (WINOGRAD_TOLERANCE if winograd else 1e-5)
    return conv


@pytest.mark.parametrize("channels, block", [(64, 16), (24, 8), (20, 4), (13, 13)])
def test_weight_packing_round_trip(channels, block):
    packing = WeightPacking(param=1, channels_per_block=block)
    weight = np.arange(channels * 3 * 2 * 2, dtype="float32").reshape(channels, 3, 2, 2)
    packed = packing.pack(weight)
    assert packed.shape == (channels // block, 3, 2, 2, block)
    for k, c, r, s in [(0, 0, 0, 0), (channels - 1, 2, 1, 1), (block // 2, 1, 0, 1)]:
        assert packed[packing.index_map(k, c, r, s)] == weight[k, c, r, s]


def test_aarch64_neon_build():
    """The same schedules compile for an AArch64 NEON target (4 lanes); run on the phone tests."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((32, 16, 3, 3)).astype("float32")
    mod = conv2d_module((1, 16, 8, 8), weight, 1, 1, 1, 1, None, "relu", None)
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]})
    funcs = primfuncs(scheduled_module(mod, target))
    (conv,) = [f for name, f in funcs.items() if "conv2d" in name]
    assert [int(d) for d in conv.params[1].shape] == [32 // 4, 16, 3, 3, 4]
    from relay_passes.pipeline import build_pipeline

    tvm.compile(mod, target=target, relax_pipeline=build_pipeline(target))


@pytest.mark.parametrize(
    "case",
    [
        (3, 64, 32, 32, 3, 1, 1, 1, 1, True, False, "relu"),  # the stem: 3 channels to pad, 64 to compute
        (3, 64, 64, 64, 7, 2, 3, 1, 1, True, False, "relu"),  # ResNet-50's stem: split columns, 2-row tiles
        (3, 32, 64, 64, 3, 2, 1, 1, 1, True, False, "relu6"),  # MobileNetV2's stem
        (8, 20, 10, 10, 5, 1, 2, 1, 1, True, False, None),  # 5x5, 8 channels
        (32, 32, 16, 16, 3, 1, 1, 1, 32, True, False, "relu6"),  # depthwise, small map: all padded first
        (96, 96, 8, 8, 3, 2, 1, 1, 96, True, False, "relu6"),  # depthwise, stride 2 (columns split by residue)
        (16, 16, 32, 32, 3, 1, 1, 1, 16, True, False, "relu6"),  # depthwise, 34x34 padded: per channel
        (8, 8, 112, 112, 3, 1, 1, 1, 8, True, True, "relu6"),  # depthwise, 114x114 padded: per band of rows
        (12, 12, 112, 112, 3, 2, 1, 1, 12, True, False, "relu6"),  # the same, stride 2: bands of split columns
        (8, 8, 100, 100, 5, 2, 2, 1, 8, False, False, None),  # 5x5, stride 2, bands of 104-wide padded rows
        (8, 8, 36, 36, 5, 2, 2, 1, 8, True, False, None),  # 5x5 depthwise, stride 2: vector-copied interior
        (16, 32, 8, 8, 3, 1, 1, 1, 4, True, False, "relu"),  # grouped: a channel's tiles read 4 padded channels
        (16, 32, 34, 34, 3, 2, 1, 1, 4, True, False, "relu"),  # grouped, stride 2: split columns, all padded first
    ],
    ids=_case_id,
)
def test_padding_shares_the_parallel_launch_at_any_thread_count(case, tmp_path):
    """A padded kernel fills its padding and its tiles in one parallel launch.

    A depthwise convolution with padded channels of at least ``PER_CHANNEL_MIN_ELEMENTS`` pads
    each channel right before its tiles, in the same parallel iteration (a padded channel larger
    than the L1 cache: each band of tile rows right before the band's tiles); other kernels pad all
    channels first, a barrier between padding and tiles. The
    kernel runs at 1, 2 and 3 threads in a fresh process, each time right after a run on other
    inputs: without the barrier a thread would read channels another thread has not padded yet,
    and find the earlier run's values there.
    """
    c, k, h, w, kernel, stride, padding, dilation, groups, _, _, epilogue = case
    rng = np.random.default_rng(sum(map(ord, _case_id(case))))
    weight = rng.standard_normal((k, c // groups, kernel, kernel)).astype("float32")
    bias = rng.standard_normal(k).astype("float32")
    x = rng.standard_normal((1, c, h, w)).astype("float32")
    expected = torch_conv2d(x, weight, bias, stride, padding, dilation, groups, None, epilogue)
    target = host_target()
    mod = conv2d_module(x.shape, weight, stride, padding, dilation, groups, bias, epilogue, None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    script = conv.script()
    padded = (h + 2 * padding) * (w + 2 * padding)
    if groups == c == k and padded >= PER_CHANNEL_MIN_ELEMENTS:
        assert script.count("T.parallel(") == 1
        assert script.index("T.parallel(") < script.index('T.sblock("pad_temp')
        sch = s_tir.Schedule(conv)
        first_padding = re.search(r'T\.sblock\("(pad_temp\w*)"\)', script).group(1)
        channel_loop, *inner = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock(first_padding))]
        bands = int(inner[0].extent) if inner[0].kind == tvm.tirx.ForKind.SERIAL else 1
        rows = DepthwiseConv2dNCHW().default_tile(target, *expected.shape[2:], kernel)[0]
        in_bands = 4 * padded > profile_for(target).l1_data_bytes
        assert channel_loop.kind == tvm.tirx.ForKind.PARALLEL
        assert bands == (expected.shape[2] // rows if in_bands else 1), (bands, rows)
    else:
        assert script.count("T.parallel(") == 2
        assert '"pragma_parallel_launch_point": 1' in script and '"pragma_parallel_barrier_when_finish": 1' in script

    if groups == 1 and len(conv.params[1].shape) == 5:
        weight = WeightPacking(param=1, channels_per_block=int(conv.params[1].shape[-1])).pack(weight)
    arrays = [x, weight, bias.reshape(1, k, 1, 1), np.zeros(expected.shape, "float32")]
    for threads, output in outputs_at_thread_counts(conv, target, arrays, tmp_path).items():
        assert relative_error(output, expected) <= 1e-5, f"{threads} threads"


def test_padded_convolutions_take_bands_of_rows_where_their_input_is_large():
    """ResNet-50's strided 3x3 layer on 56x56 maps (a 1.7 MB padded input, 0.6 MB of weights) on Rocket Lake;
    not ResNet-18's 64-channel layers (0.3 MB), nor layers whose weights are larger than their input,
    nor odd row tiles, nor profiles without the fit."""
    rocket_lake = tvm.target.Target({"kind": "llvm", "mcpu": "rocketlake"})
    assert row_bands(rocket_lake, [1, 128, 58, 58], [8, 128, 3, 3, 16], 14) == 2
    assert row_bands(rocket_lake, [1, 128, 58, 58], [8, 128, 3, 3, 16], 7) == 1
    assert row_bands(rocket_lake, [1, 64, 34, 34], [4, 64, 3, 3, 16], 16) == 1
    assert row_bands(rocket_lake, [1, 512, 30, 30], [32, 512, 3, 3, 16], 14) == 1  # 1.8 MB < 9.4 MB of weights
    for mcpu in ("znver3", "znver4", "skylake"):
        assert row_bands(tvm.target.Target({"kind": "llvm", "mcpu": mcpu}), [1, 128, 58, 58], [8, 128, 3, 3, 16], 14) == 1


@pytest.mark.parametrize("channels, filters, size, stride", [(32, 64, 24, 1), (32, 64, 48, 2), (16, 96, 40, 1)])
def test_bands_of_rows_match_pytorch_at_any_thread_count(channels, filters, size, stride, tmp_path, monkeypatch):
    """A padded convolution shared out by bands of rows (the profile made to take them on small layers;
    weights beyond the L1 cache, whose filter tiles do not run innermost): the padding by rows of every
    channel, the tiles by bands, then filter tiles; against PyTorch at 1, 2 and 3 threads (at 3 the
    threads' shares of padding and tiles do not line up: the barrier must hold)."""
    target = host_target()
    mcpu = str(target.attrs["mcpu"])
    monkeypatch.setitem(profiles._CPU_PROFILES, mcpu,  # pylint: disable=protected-access
                        profile_for(target).derived(mcpu, "x86", "test", row_band_min_input_bytes=1,
                                                    winograd_min_channels=None))  # direct, not Winograd (Zen 3)
    rng = np.random.default_rng(filters * size)
    weight = rng.standard_normal((filters, channels, 3, 3)).astype("float32")
    bias = rng.standard_normal(filters).astype("float32")
    x = rng.standard_normal((1, channels, size, size)).astype("float32")
    expected = torch_conv2d(x, weight, bias, stride, 1, 1, 1, None, "relu")
    mod = conv2d_module(x.shape, weight, stride, 1, 1, 1, bias, "relu", None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    kb = int(conv.params[1].shape[-1])
    rows = expected.shape[2] // DenseConv2dNCHW().default_tile(target, kb, *expected.shape[2:])[0]
    bands = row_bands(target, [1, channels, size + 2, size + 2], [filters // kb, channels, 3, 3, kb], rows)
    assert bands == (2 if rows % 2 == 0 else 1) and not filter_tiles_innermost(target, weight.size)
    parallel_loops = re.findall(r"for (\w+) in T\.parallel\(", conv.script())
    if bands == 2:  # the padding by images, rows, channels; the tiles by images, bands, filters, rows, columns
        assert parallel_loops == ["ax0_ax2_ax1_fused", "i0_0_i2_0_0_i1_0_i2_0_1_i3_0_fused"], parallel_loops
    weight = WeightPacking(param=1, channels_per_block=kb).pack(weight)
    arrays = [x, weight, bias.reshape(1, filters, 1, 1), np.zeros(expected.shape, "float32")]
    for threads, output in outputs_at_thread_counts(conv, target, arrays, tmp_path).items():
        assert relative_error(output, expected) <= 1e-5, f"{threads} threads"


@pytest.mark.parametrize("channels, filters, size", [(16, 16, 32), (24, 144, 16), (144, 24, 16), (64, 384, 8),
                                                     (16, 96, 112)])
def test_pointwise_rows_match_pytorch_at_any_thread_count(channels, filters, size, tmp_path):
    """The 1x1 kernel with pixels in the lanes (unpacked weight), its filter tiles innermost (weights in
    the L1 cache) or outermost (64 x 384; 16 x 96 on 112x112 where the profile's L2 holds the input
    but not the output), at 1, 2 and 3 threads in a fresh process."""
    rng = np.random.default_rng(channels * filters)
    weight = rng.standard_normal((filters, channels, 1, 1)).astype("float32")
    bias = rng.standard_normal(filters).astype("float32")
    x = rng.standard_normal((1, channels, size, size)).astype("float32")
    expected = torch_conv2d(x, weight, bias, 1, 0, 1, 1, None, "relu6")
    target = host_target()
    mod = conv2d_module(x.shape, weight, 1, 0, 1, 1, bias, "relu6", None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    arrays = [x, weight, bias.reshape(1, filters, 1, 1), np.zeros(expected.shape, "float32")]
    assert [tuple(int(d) for d in p.shape) for p in conv.params] == [a.shape for a in arrays]  # not packed
    for threads, output in outputs_at_thread_counts(conv, target, arrays, tmp_path).items():
        assert relative_error(output, expected) <= 1e-5, f"{threads} threads"


def pointwise_tile_order(target, channels, filters, size):
    """``(filter tiles innermost, filter tiles outermost)`` in the scheduled 1x1 kernel without panels."""
    weight = np.ones((filters, channels, 1, 1), "float32")
    mod = conv2d_module((1, channels, size, size), weight, 1, 0, 1, 1, None, "relu6", None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    kt, xt = PointwiseConv2dRows.default_tile(target, filters, size * size)
    filter_index = re.search(r'sblock\("conv2d_nchw_init"\).*?v1 = T\.axis\.spatial\(T\.int64\(\d+\), (.*?)\n',
                             conv.script(), re.DOTALL).group(1)
    return (f"_fused % T.int64({filters // kt}) * T.int64({kt})" in filter_index,
            f"_fused // T.int64({size * size // xt}) * T.int64({kt})" in filter_index)


@pytest.mark.parametrize("channels, filters, size", [(32, 16, 112), (16, 96, 112), (192, 32, 28), (64, 384, 16),
                                                     (96, 576, 8)])
def test_pointwise_tiles_run_filter_tiles_innermost_where_the_weights_fit_in_l1(channels, filters, size):
    """Without panels, the parallel loop over tiles takes the filter tiles of a pixel tile in turn where
    all weights fit in the L1 cache (the input is then read once), else the pixel tiles of a filter tile.
    On Zen 3 (512 KiB of L2) none of these inputs fits in L2 where its output does not."""
    target = tvm.target.Target(ZEN3)
    fits_l1 = 4 * channels * filters <= profile_for(target).l1_data_bytes
    assert pointwise_tile_order(target, channels, filters, size) == ((True, False) if fits_l1 else (False, True))


@pytest.mark.parametrize("channels, filters, size, outermost", [
    (16, 96, 112, True), (16, 64, 112, True), (32, 16, 112, False), (16, 96, 56, False), (24, 144, 56, False)])
def test_pointwise_expansions_beyond_l2_run_filter_tiles_outermost(channels, filters, size, outermost):
    """Rocket Lake's profile (2 MiB of L2): weights in L1, but an output beyond L2 from an input within
    it (MobileNets' expansions on 112x112 maps) takes the pixel tiles of a filter tile in turn, each
    tile writing a few rows in sequence; an output within L2 keeps the filter tiles innermost."""
    target = tvm.target.Target({"kind": "llvm", "mcpu": "rocketlake"})
    profile = profile_for(target)
    assert 4 * channels * filters <= profile.l1_data_bytes
    assert (4 * filters * size * size > profile.l2_bytes >= 4 * channels * size * size) == outermost
    assert pointwise_tile_order(target, channels, filters, size) == (not outermost, outermost)


@pytest.mark.parametrize("channels, filters, size, stride", [
    (64, 256, 56, 1), (256, 64, 16, 1), (160, 64, 24, 1), (144, 72, 32, 1), (1024, 256, 14, 1), (512, 160, 7, 1),
    (192, 64, 10, 1), (256, 128, 28, 2), (160, 72, 21, 2), (128, 64, 48, 3), (160, 96, 7, 1), (256, 64, 13, 2),
    (256, 80, 9, 1)])
def test_pointwise_panels_match_pytorch_at_any_thread_count(channels, filters, size, stride, tmp_path):
    """The 1x1 kernels in panels (Zen 3's profile), pixels in the lanes or (on maps of no whole vectors,
    with packed weights) filters in the lanes: one or several channel blocks, at 1, 2 and 3 threads;
    a strided layer on the copy of the pixels it reads."""
    target = tvm.target.Target(ZEN3)
    rng = np.random.default_rng(channels * filters)
    # scaled as trained weights are, so that the sums of 1024 terms stay below the ReLU6 clip
    weight = (rng.standard_normal((filters, channels, 1, 1)) / np.sqrt(channels)).astype("float32")
    bias = rng.standard_normal(filters).astype("float32")
    x = rng.standard_normal((1, channels, size, size)).astype("float32")
    expected = torch_conv2d(x, weight, bias, stride, 0, 1, 1, None, "relu6")
    mod = conv2d_module(x.shape, weight, stride, 0, 1, 1, bias, "relu6", None)
    funcs = primfuncs(scheduled_module(mod, target))
    assert ("subsample" in funcs) == (stride > 1)
    (conv,) = [f for name, f in funcs.items() if "conv2d" in name]
    assert re.search(r'T\.sblock\("\w+_global"\)', conv.script()), "the panel's input copy is missing"
    packed = len(conv.params[1].shape) == 5
    assert packed == (expected.shape[2] * expected.shape[3] % vector_lanes(target) != 0)
    if packed:
        weight = WeightPacking(param=1, channels_per_block=int(conv.params[1].shape[-1])).pack(weight)
    arrays = [x[:, :, ::stride, ::stride], weight, bias.reshape(1, filters, 1, 1), np.zeros(expected.shape, "float32")]
    for threads, output in outputs_at_thread_counts(conv, target, arrays, tmp_path).items():
        assert relative_error(output, expected) <= 1e-5, f"{threads} threads"


@pytest.mark.parametrize("channels, filters, size", [(64, 256, 56), (512, 128, 28), (1024, 256, 16), (160, 64, 24),
                                                     (144, 96, 112), (2048, 2048, 16)])
def test_panels_are_whole_rows_of_whole_tiles_within_the_caches(channels, filters, size):
    """A panel is whole rows and whole tiles, its partial sums and a channel block's operands fit the
    profile's bounds, its tasks split evenly between threads, and weights read again per panel stay in the L2 cache."""
    target = tvm.target.Target(ZEN3)
    profile = profile_for(target)
    kt, xt = PointwiseConv2dRows.default_tile(target, filters, size * size)
    panel = default_panel(target, (channels, filters, size, size), (kt, xt))
    assert panel.pixels % size == 0 and (size * size) % panel.pixels == 0 and panel.pixels % xt == 0
    assert panel.pixels <= profile.panel_pixels
    assert filters % panel.filters == 0 and panel.filters % kt == 0
    assert panel.filters == kt or panel.filters * panel.pixels * 4 <= profile.panel_accumulator_bytes
    assert channels % panel.channels == 0
    assert panel.channels == 1 or panel.channels * (panel.pixels + kt) * 4 <= profile.input_slab_bytes
    panels = size * size // panel.pixels
    tasks = (filters // panel.filters) * panels
    can_split_evenly = any((filters // group) * panels % profile.panel_task_multiple == 0
                           for group in range(kt, filters + 1, kt) if filters % group == 0)
    assert panel.filters == kt or tasks % profile.panel_task_multiple == 0 or not can_split_evenly
    if size * size > panel.pixels and input_bytes((channels, filters, size, size)) <= profile.l2_bytes // 2:
        assert panel.filters == kt or 4 * panel.filters * channels <= profile.l2_bytes // 2


@pytest.mark.parametrize("channels, filters, size, residual", [
    (256, 64, 16, False),  # 256 pixels: columns of two vectors
    (512, 128, 28, True),  # ResNet-50's 512 -> 128 on 28x28: 49 vectors, columns of one
    (128, 512, 14, True),  # 196 pixels: not whole vectors, not by columns
    (64, 100, 16, False),  # filters in tiles of 5 (the largest divisor of 100 up to 8), two vectors
    (96, 72, 12, False),  # 144 pixels: 9 vectors on AVX-512, 18 on AVX2
])
@pytest.mark.parametrize("isa", ["host", "avx2"])
def test_pointwise_columns_match_pytorch_at_any_thread_count(channels, filters, size, residual, isa, tmp_path, monkeypatch):
    """The 1x1 kernel by columns (the profile made to take them, without panels), with ReLU6 and the
    residual add, on this CPU and on AVX2 (16 registers), at 1, 2 and 3 threads in a fresh process."""
    target = host_target() if isa == "host" else tvm.target.Target(AVX2)
    mcpu = str(target.attrs["mcpu"])
    monkeypatch.setitem(profiles._CPU_PROFILES, mcpu,  # pylint: disable=protected-access
                        profile_for(target).derived(mcpu, "x86", "test", pointwise_columns=True, panel_pixels=None,
                                                    l2_bytes=None, pointwise_pixel_vectors=2))
    by_columns = column_tile(target, (channels, filters, size, size)) is not None
    assert by_columns == ((size * size) % vector_lanes(target) == 0)
    rng = np.random.default_rng(channels * filters)
    # scaled as trained weights are, so that the sums of 512 terms stay below the ReLU6 clip
    weight = (rng.standard_normal((filters, channels, 1, 1)) / np.sqrt(channels)).astype("float32")
    bias = rng.standard_normal(filters).astype("float32")
    x = rng.standard_normal((1, channels, size, size)).astype("float32")
    shortcut = rng.standard_normal((1, filters, size, size)).astype("float32") if residual else None
    expected = torch_conv2d(x, weight, bias, 1, 0, 1, 1, shortcut, "relu6")
    mod = conv2d_module(x.shape, weight, 1, 0, 1, 1, bias, "relu6", None if shortcut is None else shortcut.shape)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    assert bool(re.search(r'T\.sblock\("\w+_global"\)', conv.script())) == by_columns, "a column's input copy"
    if not by_columns:
        return
    arrays = [x, weight, bias.reshape(1, filters, 1, 1), *([] if shortcut is None else [shortcut]),
              np.zeros(expected.shape, "float32")]
    assert [tuple(int(d) for d in p.shape) for p in conv.params] == [a.shape for a in arrays]  # not packed
    for threads, output in outputs_at_thread_counts(conv, target, arrays, tmp_path).items():
        assert relative_error(output, expected) <= 1e-5, f"{threads} threads"


def test_columns_take_long_reductions_whose_column_fits_l1_and_whose_output_fits_l2():
    """Rocket Lake's profile: ResNet-50's 1x1 layers on 56x56 and 28x28 maps, but not the expansions
    whose output exceeds the L2 cache, short reductions, few filters, maps of no whole vectors, columns
    beyond the input slab, or too few columns to share between threads; Zen 5's profile, which has the Xeon's
    fits, takes them too; no other profile does."""
    rocket_lake = tvm.target.Target({"kind": "llvm", "mcpu": "rocketlake"})
    profile = profile_for(rocket_lake)
    assert column_tile(rocket_lake, (256, 64, 56, 56)) == (MIN_ACCUMULATORS, 32)
    assert column_tile(rocket_lake, (256, 128, 56, 56)) == (MIN_ACCUMULATORS, 32)
    assert column_tile(rocket_lake, (512, 128, 28, 28)) == (MIN_ACCUMULATORS, 16)  # 49 vectors
    assert column_tile(rocket_lake, (128, 512, 28, 28)) == (MIN_ACCUMULATORS, 16)
    assert 4 * 256 * 56 * 56 > profile.l2_bytes
    assert column_tile(rocket_lake, (64, 256, 56, 56)) is None
    assert column_tile(rocket_lake, (32, 192, 28, 28)) is None  # a short reduction
    assert column_tile(rocket_lake, (144, 24, 56, 56)) is None  # few filters
    assert column_tile(rocket_lake, (1024, 256, 14, 14)) is None  # 196 pixels
    assert 4 * 1024 * 16 > profile.input_slab_bytes
    assert column_tile(rocket_lake, (1024, 64, 16, 16)) is None
    assert column_tile(rocket_lake, (256, 64, 4, 4)) is None  # one column
    assert column_tile(rocket_lake, (256, 100, 28, 28)) is None  # 5 filters x 1 vector: too few accumulators
    assert column_tile(tvm.target.Target({"kind": "llvm", "mcpu": "znver5"}), (256, 64, 56, 56)) == (MIN_ACCUMULATORS, 32)
    for mcpu in ("znver3", "znver4", "skylake"):
        assert column_tile(tvm.target.Target({"kind": "llvm", "mcpu": mcpu}), (256, 64, 56, 56)) is None, mcpu


def test_panel_filters_are_the_largest_group_that_splits_evenly_and_keeps_its_weights_in_l2():
    """ResNet-50's and MobileNetV3-Large's 1x1 layers on 14x14 and 7x7 maps (Zen 3's profile, 2 threads)."""
    zen3 = profile_for(tvm.target.Target(ZEN3))
    # 7 panels of 2 rows: all 256 filters would make 7 tasks, one core idle for the last
    assert panel_filters(zen3, (1024, 256, 14, 14), 16, 28) == 128
    # the 200 KiB input fits in half the L2 cache: 256 filters' weights (256 KiB) too, 512 filters' not
    assert panel_filters(zen3, (256, 1024, 14, 14), 16, 28) == 256
    # one panel (the whole 7x7 map): 2 tasks of 80 filters rather than 5 of 32
    assert panel_filters(zen3, (960, 160, 7, 7), 16, 49) == 80
    assert panel_filters(zen3, (2048, 512, 7, 7), 16, 49) == 256  # 512 filters: one task
    # 7 panels x 5 tiles of 16 filters: no group gives an even count, so at least parallel_tasks (MobileNetV3-Large)
    assert panel_filters(zen3, (240, 80, 14, 14), 16, 28) == 80
    # without a task multiple, at least parallel_tasks (4) tasks, and no L2 bound without the cache's size
    generic = dataclasses.replace(zen3, panel_task_multiple=None, l2_bytes=None, parallel_tasks=4)
    assert panel_filters(generic, (1024, 256, 14, 14), 16, 28) == 256
    assert panel_filters(generic, (256, 1024, 14, 14), 16, 28) == 1024
    assert panel_filters(generic, (960, 160, 7, 7), 16, 49) == 32


def test_maps_without_a_filling_tile_take_ragged_tiles_of_two_vectors_of_filters():
    """On 7x7 maps (49 pixels) the whole tiles hold 8 filters x 7 pixels; the ragged ones 16 x 6, within tile_waste."""
    zen3, avx512 = tvm.target.Target(ZEN3), tvm.target.Target(AVX512)
    assert ragged_filter_panel(zen3, (960, 160, 7, 7))[0] == (16, 6)
    panel = ragged_filter_panel(zen3, (960, 160, 7, 7))[1]
    assert panel == default_panel(zen3, (960, 160, 7, 7), (16, 6), filters_in_lanes=True, ragged=True)
    assert panel.pixels == 49 and panel.filters % 16 == 0 and 960 % panel.channels == 0
    assert ragged_filter_panel(zen3, (576, 96, 14, 14)) is None  # 16 filters x 4 pixels fill the accumulators
    assert ragged_filter_panel(zen3, (960, 72, 7, 7)) is None  # two vectors do not divide the filters
    assert ragged_filter_panel(zen3, (96, 160, 7, 7)) is None  # no panels on a short reduction
    assert ragged_filter_panel(zen3, (960, 160, 5, 5)) is None  # 30 pixels computed for 25
    assert ragged_filter_panel(avx512, (960, 160, 7, 7)) is None  # no panels on this profile


def test_ragged_tiles_take_one_vector_of_filters_where_two_leave_a_thread_idle():
    """MobileNetV2 (224)'s 96-filter projections on 14x14 maps: two vectors of filters make 3 tasks of 32
    filters on Rocket Lake (one core idle for the last), one vector 2 tasks of 48; ResNet-50's 1x1 layers
    there split evenly with two vectors and keep them."""
    rocket_lake, zen3 = tvm.target.Target({"kind": "llvm", "mcpu": "rocketlake"}), tvm.target.Target(ZEN3)
    assert profile_for(rocket_lake).panel_task_multiple == 2
    for shape in [(576, 96, 14, 14), (384, 96, 14, 14)]:
        tile, panel = ragged_filter_panel(rocket_lake, shape)
        assert tile == (16, accumulator_budget(rocket_lake)) and panel_tasks(shape, panel) % 2 == 0
    for shape in [(384, 64, 14, 14), (256, 1024, 14, 14), (1024, 256, 14, 14)]:
        tile, panel = ragged_filter_panel(rocket_lake, shape)
        assert tile == (32, accumulator_budget(rocket_lake) // 2) and panel_tasks(shape, panel) % 2 == 0
    # 80 filters on a 9x9 map (Zen 3, AVX2): 5 tiles of two vectors, or 2 tasks of 40 with one
    tile, panel = ragged_filter_panel(zen3, (256, 80, 9, 9))
    assert tile == (8, 12) and panel_tasks((256, 80, 9, 9), panel) == 2


def test_no_panels_where_they_do_not_pay_or_on_profiles_without_them():
    zen3, avx512 = tvm.target.Target(ZEN3), tvm.target.Target(AVX512)
    # short reductions whose input fits in the L2 cache, and few filters (MobileNetV2 (224)'s expansions and projections)
    assert default_panel(zen3, (96, 576, 14, 14), (16, 4), filters_in_lanes=True) is None
    assert default_panel(zen3, (144, 24, 56, 56), PointwiseConv2dRows.default_tile(zen3, 24, 3136)) is None
    # a short reduction over an input larger than the L2 cache, and a long one (ResNet-50's)
    assert default_panel(zen3, (64, 256, 56, 56), PointwiseConv2dRows.default_tile(zen3, 256, 3136)) is not None
    assert default_panel(zen3, (128, 512, 28, 28), PointwiseConv2dRows.default_tile(zen3, 512, 784)) is not None
    assert default_panel(zen3, (576, 96, 8, 8), PointwiseConv2dRows.default_tile(zen3, 96, 64)) is None
    assert default_panel(zen3, (240, 960, 1, 1), (8, 1), filters_in_lanes=True) is None
    assert default_panel(zen3, (960, 160, 7, 7), (8, 7), filters_in_lanes=True) is not None
    assert default_panel(avx512, (256, 256, 32, 32), PointwiseConv2dRows.default_tile(avx512, 256, 1024)) is None
    assert default_panel(zen3, (32, 192, 32, 32), PointwiseConv2dRows.default_tile(zen3, 192, 1024)) is None
    assert default_panel(zen3, (256, 256, 32, 32), PointwiseConv2dRows.default_tile(zen3, 256, 1024)) is not None


@pytest.mark.parametrize("case", [(8, 8, 40, 40, 3, 1, 1, 1, 8, True, False, None),
                                  (3, 64, 32, 32, 3, 1, 1, 1, 1, True, False, None)], ids=_case_id)
def test_padding_interior_is_copied_in_vectors(case):
    """The padding stage copies the columns between the borders with vector stores, no bounds test per element."""
    c, k, h, w, kernel, stride, padding, dilation, groups, *_ = case
    weight = np.ones((k, c // groups, kernel, kernel), "float32")
    mod = conv2d_module((1, c, h, w), weight, stride, padding, dilation, groups, None, None, None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, host_target())).items() if "conv2d" in name]
    lines = conv.script().splitlines()
    padding_loops = [line for line, block in zip(lines, lines[1:]) if 'T.sblock("pad_temp_' in block]
    assert any("T.vectorized(" in line for line in padding_loops)
    assert any("T.vectorized(" not in line for line in padding_loops)  # the borders keep their test


@pytest.mark.parametrize("target", [{"kind": "llvm", "mcpu": "znver4"}, {"kind": "llvm", "mcpu": "skylake"},
                                    {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}],
                         ids=["avx512", "avx2", "neon"])
def test_strided_padding_deinterleaves_contiguous_loads(target):
    """A stride-2 depthwise convolution's padding copy reads its input in contiguous vectors.

    Its interior loop runs over the split columns with the two residues unrolled inside, left to
    LLVM, whose vectorizer loads contiguous vectors and splits them into even and odd columns (a
    ``shufflevector`` taking every second lane); TVM's own vectors would gather one element at a time.
    """
    target = tvm.target.Target(target)
    weight = np.ones((24, 1, 3, 3), "float32")
    mod = conv2d_module((1, 24, 112, 112), weight, 2, 1, 1, 24, None, None, None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    lines = conv.script().splitlines()
    copies = [index for index, line in enumerate(lines) if re.search(r'T.sblock\("pad_temp_ax\d+"\)', line)]
    assert len(copies) == 3  # left border, interior, right border
    for index in copies:  # the columns, then the residues unrolled inside
        assert "in T.unroll(T.int64(2)):" in lines[index - 1] and "in range(" in lines[index - 2]
    library = tvm.tirx.build(tvm.IRModule({"main": conv.with_attr("global_symbol", "main")}), target=target)
    assert re.search(r"shufflevector <\d+ x float> [^\n]*<i32 0, i32 2, i32 4, i32 6", library.inspect_source("ll"))


@pytest.mark.parametrize("kernel, tile_rows", [(3, 4), (5, 7), (7, 7)])
def test_depthwise_window_is_unrolled_and_tall_windows_get_tall_tiles(kernel, tile_rows):
    """A depthwise tile runs its window's taps unrolled (the taps share the input rows they load);
    a window taller than three rows gets a tile of at least twice its overlap in rows."""
    target = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})
    weight = np.ones((16, 1, kernel, kernel), "float32")
    mod = conv2d_module((1, 16, 28, 28), weight, 1, kernel // 2, 1, 16, None, None, None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    sch = s_tir.Schedule(conv)
    loops = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock("group_conv2d_nchw_update"))]
    # ..., window rows, window columns, then the tile: images, channels, rows, columns (vectorized)
    window, rows = loops[-6:-4], loops[-2]
    assert [(int(loop.extent), loop.kind) for loop in window] == [(kernel, tvm.tirx.ForKind.UNROLLED)] * 2
    assert int(rows.extent) == tile_rows


@pytest.mark.parametrize("mcpu", ["znver5", "rocketlake"])
@pytest.mark.parametrize("channels, filters", [(24, 144), (576, 96), (16, 16)])
def test_pointwise_tiles_are_stack_buffers(channels, filters, mcpu):
    """On AVX-512 the untuned accumulator tile of an expansion or a projection stays under TVM's
    stack limit (no workspace call per tile), with one vector of pixels or two."""
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu})
    rng = np.random.default_rng(channels)
    weight = rng.standard_normal((filters, channels, 1, 1)).astype("float32")
    mod = conv2d_module((1, channels, 8, 8), weight, 1, 0, 1, 1, None, "relu6", None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    library = tvm.tirx.build(tvm.IRModule({"main": conv.with_attr("global_symbol", "main")}), target=target)
    assert "TVMBackendAllocWorkspace" not in library.inspect_source("ll")


def test_two_pixel_vector_profiles_trade_filters_for_pixels_where_the_map_allows():
    """Rocket Lake's profile takes two vectors of pixels and at most 6 filters (fewer operands loaded
    per FMA) on maps of an even number of vectors, if the tile keeps MIN_ACCUMULATORS; one vector elsewhere."""
    two, one = tvm.target.Target({"kind": "llvm", "mcpu": "rocketlake"}), tvm.target.Target({"kind": "llvm",
                                                                                           "mcpu": "znver4"})
    assert (profile_for(two).pointwise_pixel_vectors, profile_for(one).pointwise_pixel_vectors) == (2, 1)
    for filters, pixels, two_vectors, one_vector in [
        (96, 112 * 112, (6, 32), (12, 16)),  # MobileNetV2's expansion on 112x112
        (24, 56 * 56, (6, 32), (12, 16)),
        (256, 56 * 56, (4, 32), (8, 16)),  # ResNet-50's 64 -> 256
        (192, 28 * 28, (12, 16), (12, 16)),  # 49 vectors: one
        (7, 56 * 56, (7, 32), (7, 32)),  # one filter x two vectors would leave the FMA pipes waiting
    ]:
        assert PointwiseConv2dRows.default_tile(two, filters, pixels) == two_vectors, (filters, pixels)
        assert PointwiseConv2dRows.default_tile(one, filters, pixels) == one_vector, (filters, pixels)


@pytest.mark.parametrize("target", [{"kind": "llvm", "mcpu": "znver4"}, {"kind": "llvm", "mcpu": "rocketlake"}, AVX2,
                                    {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}],
                         ids=["avx512", "avx512-two-pixel-vectors", "avx2", "neon"])
def test_untuned_tiles_keep_enough_multiply_adds_in_flight(target):
    """Every untuned register tile holds at least MIN_ACCUMULATORS independent accumulators (or a
    whole 7-pixel row), and no more than the registers allow."""
    target = tvm.target.Target(target)
    lanes, budget = vector_lanes(target), accumulator_budget(target)
    for filters, pixels in [(144, 1024), (24, 1024), (32, 1024), (16, 64), (96, 64), (1280, 16), (20, 16)]:
        kt, xt = PointwiseConv2dRows.default_tile(target, filters, pixels)
        assert filters % kt == 0 and pixels % xt == 0 and xt % lanes == 0
        assert MIN_ACCUMULATORS <= kt * xt // lanes <= budget, (filters, pixels, kt, xt)
    for channels, size in [(1280, 7), (512, 7), (160, 7), (256, 14), (128, 28), (64, 56), (64, 32), (32, 16)]:
        kb = channel_block(channels, target, size, size)
        yt, xt = conv_tile(target, kb, size, size)
        accumulators = -(-kb // lanes) * yt * xt
        assert min(MIN_ACCUMULATORS, size) <= accumulators <= budget, (channels, size, kb, yt, xt)


def test_small_maps_take_two_vectors_of_filters_where_they_hold_more_accumulators():
    """With 32 registers and the profile's ``filter_vector_pairs`` (Zen 5), a tile takes two vectors of
    filters where they hold more accumulators than one (7-wide maps: 14 against 7; a 14x14 1x1 layer in
    panels, whose tiles run along the flattened map: 7 pixels either way), not where they hold as many;
    without it (Zen 4) one vector; with 16 registers also where they hold as many."""
    zen5, zen4, avx2 = (tvm.target.Target(t) for t in ({"kind": "llvm", "mcpu": "znver5"}, AVX512, AVX2))
    assert profile_for(zen5).filter_vector_pairs and not profile_for(zen4).filter_vector_pairs
    assert [channel_block(512, zen5, size, size) for size in (7, 14, 28, 56)] == [32, 16, 16, 16]
    assert channel_block(512, zen5, 1, 14 * 14) == 32
    assert channel_block(80, zen5, 7, 7) == 16  # two vectors do not divide 80
    assert channel_block(512, zen4, 7, 7) == 16 and channel_block(512, zen4, 1, 14 * 14) == 16
    assert channel_block(512, avx2, 7, 7) == 8 and channel_block(512, avx2, 14, 14) == 16
    for channels, filters, size, kb in [(576, 96, 14, 32), (1024, 256, 14, 32), (64, 384, 14, 16),
                                        (512, 2048, 7, 32), (256, 64, 56, None)]:
        weight = np.zeros((filters, channels, 1, 1), "float32")
        mod = conv2d_module((1, channels, size, size), weight, 1, 0, 1, 1, None, "relu", None)
        (conv,) = [f for name, f in primfuncs(scheduled_module(mod, zen5)).items() if "conv2d" in name]
        packed = int(conv.params[1].shape[-1]) if len(conv.params[1].shape) == 5 else None
        assert packed == kb, (channels, filters, size)


@pytest.mark.parametrize("channels, filters, size, kernel, stride", [
    (512, 64, 7, 1, 1), (64, 96, 7, 3, 1), (32, 64, 14, 3, 2), (128, 64, 14, 1, 2), (576, 96, 14, 1, 1),
    (96, 160, 14, 1, 1), (256, 64, 14, 1, 1)])
def test_two_vectors_of_filters_match_pytorch_at_any_thread_count(channels, filters, size, kernel, stride, tmp_path,
                                                                  monkeypatch):
    """Layers into 7x7 maps and 1x1 layers on 14x14 maps with Zen 5's profile on this CPU (two vectors
    of filters per tile with 32 registers, in panels or not), against PyTorch at 1, 2 and 3 threads."""
    target = host_target()
    mcpu = str(target.attrs["mcpu"])
    monkeypatch.setitem(profiles._CPU_PROFILES, mcpu,  # pylint: disable=protected-access
                        profiles.ZEN5.derived(mcpu, "x86", "test", l1_data_bytes=profile_for(target).l1_data_bytes,
                                              input_slab_bytes=profile_for(target).input_slab_bytes))
    rng = np.random.default_rng(channels * filters * size)
    weight = (rng.standard_normal((filters, channels, kernel, kernel)) / np.sqrt(channels)).astype("float32")
    bias = rng.standard_normal(filters).astype("float32")
    x = rng.standard_normal((1, channels, size, size)).astype("float32")
    padding = kernel // 2
    expected = torch_conv2d(x, weight, bias, stride, padding, 1, 1, None, "relu")
    mod = conv2d_module(x.shape, weight, stride, padding, 1, 1, bias, "relu", None)
    funcs = primfuncs(scheduled_module(mod, target))
    (conv,) = [f for name, f in funcs.items() if "conv2d" in name]
    subsampled = "subsample" in funcs
    if len(conv.params[1].shape) == 5:
        weight = WeightPacking(param=1, channels_per_block=int(conv.params[1].shape[-1])).pack(weight)
    inputs = x[:, :, ::stride, ::stride] if subsampled else x
    arrays = [inputs, weight, bias.reshape(1, filters, 1, 1), np.zeros(expected.shape, "float32")]
    for threads, output in outputs_at_thread_counts(conv, target, arrays, tmp_path).items():
        assert relative_error(output, expected) <= 1e-5, f"{threads} threads"


@pytest.mark.parametrize("target", [AVX2, AVX512], ids=["avx2", "avx512"])
def test_depthwise_tiles_fill_the_accumulators_where_the_height_allows(target):
    """A depthwise tile whose rows (a divisor of the height) leave fewer than MIN_ACCUMULATORS
    accumulators takes the most rows the registers allow: a 7x7 map gets all its 7 rows, not 1."""
    target = tvm.target.Target(target)
    lanes, budget = vector_lanes(target), accumulator_budget(target)
    for size in (7, 14, 28, 56, 112):
        for window_rows in (3, 5):
            rows, xt = DepthwiseConv2dNCHW().default_tile(target, size, size, window_rows)
            vectors = -(-xt // lanes)
            assert size % rows == 0 and rows * vectors <= budget, (size, rows, xt)
            if rows * vectors < MIN_ACCUMULATORS:
                taller = [d for d in range(rows + 1, size + 1) if size % d == 0 and d * vectors <= budget]
                assert not taller, (size, rows, xt, taller)
    assert DepthwiseConv2dNCHW().default_tile(target, 7, 7) == (7, 7)


def test_depthwise_tiles_are_whole_vectors_wide_with_16_registers():
    """With 16 registers a depthwise tile's columns are whole vectors where the width allows (a row
    ending inside a vector computes its rest apart); other widths take the widest divisor up to
    four vectors, and targets with 32 registers the widest up to two."""
    avx2, avx512 = tvm.target.Target(AVX2), tvm.target.Target(AVX512)
    for width in (56, 40, 24, 112):
        _, xt = DepthwiseConv2dNCHW().default_tile(avx2, width, width)
        assert xt % vector_lanes(avx2) == 0 and width % xt == 0 and xt <= 2 * vector_lanes(avx2), (width, xt)
    assert DepthwiseConv2dNCHW().default_tile(avx2, 28, 28) == (2, 28)
    assert DepthwiseConv2dNCHW().default_tile(avx2, 14, 14)[1] == 14
    assert DepthwiseConv2dNCHW().default_tile(avx2, 50, 50)[1] == 25
    assert DepthwiseConv2dNCHW().default_tile(avx512, 56, 56)[1] == 28


#: A profile that runs stems with pixels in the lanes (``stem_pixels_in_lanes``).
ROCKET_LAKE = {"kind": "llvm", "mcpu": "rocketlake"}


@pytest.mark.parametrize("case, target, stem", [
    ((3, 64, 64, 64, 7, 2, 3, 1, 1), ROCKET_LAKE, True),  # ResNet-50's stem
    ((3, 32, 64, 64, 3, 2, 1, 1, 1), ROCKET_LAKE, True),  # MobileNetV2's
    ((3, 64, 32, 32, 3, 1, 1, 1, 1), ROCKET_LAKE, True),  # the CIFAR stem
    ((4, 16, 32, 32, 3, 1, 2, 2, 1), ROCKET_LAKE, True),  # dilated
    ((1, 32, 28, 28, 3, 1, 1, 1, 1), ROCKET_LAKE, False),  # 28-wide rows: not whole vectors
    ((3, 16, 66, 66, 3, 2, 0, 1, 1), ROCKET_LAKE, False),  # unpadded stride 2: the columns would be gathered
    ((3, 16, 63, 63, 3, 2, 1, 1, 1), ROCKET_LAKE, False),  # padded width 65: no split by 2
    ((8, 32, 32, 32, 3, 1, 1, 1, 1), ROCKET_LAKE, False),  # 8 channels: not an image's
    ((3, 32, 32, 32, 1, 1, 0, 1, 1), ROCKET_LAKE, False),  # 1x1: the pointwise kernel's
    ((3, 64, 64, 64, 7, 2, 3, 1, 1), AVX512, False),  # Zen 4's profile keeps the packed kernel
], ids=lambda value: _case_id(value) if isinstance(value, tuple) else str(value.get("mcpu", value))
   if isinstance(value, dict) else str(value))
def test_stems_run_pixels_in_lanes_where_rows_are_whole_vectors(case, target, stem):
    """On a profile that takes it, a convolution over an image's channels keeps its weight unpacked and
    vectorizes its tile along the output row (contiguous stores, no transposed write-out) when the
    rows are whole vectors and a strided one's padding splits its columns; otherwise it is left to
    the other kernels."""
    c, k, h, w, kernel, stride, padding, dilation, groups = case
    target = tvm.target.Target(target)
    weight = np.ones((k, c, kernel, kernel), "float32")
    mod = conv2d_module((1, c, h, w), weight, stride, padding, dilation, groups, None, None, None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    assert (len(conv.params[1].shape) == 4 and kernel > 1) == stem
    if stem:
        sch = s_tir.Schedule(conv)
        loops = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock("conv2d_nchw_update"))]
        kt, yt, xt = StemConv2dNCHW.default_tile(target, k, h // stride, w // stride)
        # the tile: images, filters, rows, columns (vectorized)
        assert [int(loop.extent) for loop in loops[-4:]] == [1, kt, yt, xt]
        assert loops[-1].kind == tvm.tirx.ForKind.VECTORIZED and xt == vector_lanes(target)
        if stride > 1:  # the padded copy's columns split by residue: [.., x % 2, x // 2]
            (allocation,) = [line for line in conv.script().splitlines() if "pad_temp = T.sblock_alloc_buffer" in line]
            assert f"T.int64({stride}), T.int64({(w + 2 * padding) // stride})))" in allocation


@pytest.mark.parametrize("case", [
    (3, 64, 64, 64, 7, 2, 3, 1, 1, True, False, "relu"),
    (3, 16, 96, 96, 3, 2, 1, 1, 1, True, False, "relu6"),  # rows of 3 vectors
    (4, 16, 32, 32, 3, 1, 2, 2, 1, False, True, None),
], ids=_case_id)
def test_stems_match_pytorch_on_a_profile_that_takes_them(case, monkeypatch):
    """The stem kernel against PyTorch on this CPU, its profile made to take stems if it does not."""
    target = host_target()
    monkeypatch.setitem(profiles._CPU_PROFILES, str(target.attrs["mcpu"]),  # pylint: disable=protected-access
                        profile_for(target).derived(str(target.attrs["mcpu"]), "x86", "test", stem_pixels_in_lanes=True))
    conv = _check_against_pytorch(case, target)
    assert len(conv.params[1].shape) == 4  # the stem kernel's unpacked weight


@pytest.mark.parametrize("channels, filters, size, kernel, stride", [(3, 16, 64, 3, 2), (3, 24, 64, 7, 2), (4, 16, 32, 3, 1)])
def test_stems_pad_the_rows_their_threads_read_at_any_thread_count(channels, filters, size, kernel, stride, tmp_path,
                                                                     monkeypatch):
    """A stem's tiles run in bands of rows (every filter of a band before the next band), and the threads
    share out its padding by rows, not by channels: each thread pads the rows its band reads instead of
    reading channels padded in the other core's cache. Against PyTorch at 1, 2 and 3 threads (where the
    threads' shares of padding and of tiles no longer line up, the barrier between them must hold)."""
    target = host_target()
    mcpu = str(target.attrs["mcpu"])
    monkeypatch.setitem(profiles._CPU_PROFILES, mcpu,  # pylint: disable=protected-access
                        profile_for(target).derived(mcpu, "x86", "test", stem_pixels_in_lanes=True))
    rng = np.random.default_rng(filters * size)
    weight = rng.standard_normal((filters, channels, kernel, kernel)).astype("float32")
    bias = rng.standard_normal(filters).astype("float32")
    x = rng.standard_normal((1, channels, size, size)).astype("float32")
    padding = kernel // 2
    expected = torch_conv2d(x, weight, bias, stride, padding, 1, 1, None, "relu")
    mod = conv2d_module(x.shape, weight, stride, padding, 1, 1, bias, "relu", None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    script = conv.script()
    parallel_loops = re.findall(r"for (\w+) in T\.parallel\(", script)
    assert parallel_loops == ["ax0_ax2_ax1_fused",  # the padding: images, rows, channels
                              "i0_0_i2_0_i1_0_i3_0_fused"], parallel_loops  # the tiles: images, rows, filters, columns
    arrays = [x, weight, bias.reshape(1, filters, 1, 1), np.zeros(expected.shape, "float32")]
    for threads, output in outputs_at_thread_counts(conv, target, arrays, tmp_path).items():
        assert relative_error(output, expected) <= 1e-5, f"{threads} threads"


@pytest.mark.parametrize("target, tiles", [
    (ROCKET_LAKE, [(64, 112, 112, (8, 2, 16)), (32, 112, 112, (8, 2, 16)), (24, 16, 16, (12, 2, 16))]),
    (AVX2, [(64, 112, 112, (4, 2, 8)), (32, 112, 112, (4, 2, 8)), (24, 16, 16, (6, 2, 8))]),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}, [(64, 112, 112, (8, 2, 4)), (16, 8, 8, (8, 2, 4))]),
], ids=["avx512", "avx2", "neon"])
def test_stem_tiles_are_a_vector_by_two_rows_by_the_filters_the_accumulators_allow(target, tiles):
    target = tvm.target.Target(target)
    for filters, height, width, expected in tiles:
        kt, yt, xt = StemConv2dNCHW.default_tile(target, filters, height, width)
        assert (kt, yt, xt) == expected
        assert MIN_ACCUMULATORS <= kt * yt <= accumulator_budget(target)
