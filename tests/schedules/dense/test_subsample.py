"""Dense strided 1x1 convolutions on a copy of the pixels they read: the copy kernel against numpy
(at 1, 2 and 3 threads), the layers the rewrite takes, and whole models against PyTorch."""

import numpy as np
import pytest
import torch
import tvm
from torch import nn

import tvm_sparse
from relay_passes.strided_pointwise import subsample_strides
from schedules.dense.subsample import subsample_func, subsampled_shape
from tests.conftest import relative_error
from tests.schedules.dense.harness import (AVX2, AVX512, conv2d_module, host_target, primfuncs, run, scheduled_module,
                                          torch_conv2d)
from tests.schedules.threaded_run import outputs_at_thread_counts

ARM = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76"}
MALI = {"kind": "opencl", "device": "mali"}


@pytest.mark.parametrize("data_shape, strides", [
    ((1, 256, 56, 56), (2, 2)), ((2, 24, 15, 9), (2, 2)), ((1, 8, 7, 7), (3, 3)), ((1, 16, 10, 12), (1, 2)),
    ((3, 5, 9, 4), (2, 3)), ((1, 2, 1, 1), (2, 2)),
])
def test_the_copy_holds_every_strided_pixel_at_any_thread_count(data_shape, strides, tmp_path):
    rng = np.random.default_rng(sum(data_shape))
    x = rng.standard_normal(data_shape).astype("float32")
    expected = x[:, :, ::strides[0], ::strides[1]]
    assert subsampled_shape(data_shape, strides) == expected.shape
    func = subsample_func(data_shape, strides)
    assert func.attrs["tirx.is_scheduled"]
    arrays = [x, np.zeros(expected.shape, "float32")]
    for threads, actual in outputs_at_thread_counts(func, tvm.target.Target(AVX512), arrays, tmp_path).items():
        np.testing.assert_array_equal(actual, expected, err_msg=f"{threads} threads")


def test_the_copy_refuses_strides_below_one():
    with pytest.raises(ValueError, match="strides must be two integers of at least 1"):
        subsample_func((1, 4, 8, 8), (0, 2))


def _conv_call(data_shape, weight_shape, stride, padding, groups=1):
    mod = conv2d_module(data_shape, np.ones(weight_shape, "float32"), stride, padding, 1, groups, None, None, None)
    (call,) = [b.value for b in mod["main"].body.blocks[0].bindings
               if isinstance(b.value, tvm.relax.Call) and b.value.op.name == "relax.nn.conv2d"]
    return call


@pytest.mark.parametrize("target", [AVX512, AVX2, ARM])
def test_strided_unpadded_1x1_convolutions_are_subsampled_on_cpus(target):
    target = tvm.target.Target(target)
    assert subsample_strides(_conv_call((1, 256, 56, 56), (512, 256, 1, 1), 2, 0), target) == (2, 2)
    assert subsample_strides(_conv_call((1, 16, 10, 12), (8, 16, 1, 1), (1, 2), 0), target) == (1, 2)


@pytest.mark.parametrize("data_shape, weight_shape, stride, padding, groups, target", [
    ((1, 64, 56, 56), (64, 64, 1, 1), 1, 0, 1, AVX512),  # stride 1
    ((1, 64, 56, 56), (64, 64, 1, 1), 2, 1, 1, AVX512),  # padded
    ((1, 64, 56, 56), (64, 64, 3, 3), 2, 1, 1, AVX512),  # 3x3
    ((1, 64, 56, 56), (64, 1, 1, 1), 2, 0, 64, AVX512),  # depthwise
    ((1, 64, 56, 56), (64, 64, 1, 1), 2, 0, 1, MALI),  # a GPU target: dlight's schedules
])
def test_other_convolutions_are_left_alone(data_shape, weight_shape, stride, padding, groups, target):
    target = tvm.target.Target(target)
    assert subsample_strides(_conv_call(data_shape, weight_shape, stride, padding, groups), target) is None


@pytest.mark.parametrize("case", [
    # C, K, H, W, stride, bias, residual, epilogue
    (64, 128, 16, 16, 2, True, False, "relu"),
    (32, 48, 15, 9, 2, False, True, None),  # odd map, residual add
    (24, 16, 14, 14, 3, True, False, "relu"),  # stride 3 on a map it does not divide
    (16, 32, 10, 12, (1, 2), True, True, "relu"),  # a stride along the columns only
    (256, 512, 28, 28, 2, True, False, "relu"),  # ResNet-50's downsampling shapes, halved
], ids=lambda case: "C{}-K{}-{}x{}-s{}".format(*case[:5]))
def test_subsampled_layers_match_pytorch_with_their_epilogue_fused(case):
    c, k, h, w, stride, has_bias, has_residual, epilogue = case
    target = tvm.target.Target(AVX512)
    rng = np.random.default_rng(c * k + h)
    weight = rng.standard_normal((k, c, 1, 1)).astype("float32")
    bias = rng.standard_normal(k).astype("float32") if has_bias else None
    x = rng.standard_normal((1, c, h, w)).astype("float32")
    expected_shape = torch_conv2d(x, weight, None, stride, 0, 1, 1, None, None).shape
    residual = rng.standard_normal(expected_shape).astype("float32") if has_residual else None
    mod = conv2d_module(x.shape, weight, stride, 0, 1, 1, bias, epilogue, None if residual is None else residual.shape)
    scheduled = scheduled_module(mod, target)
    names = sorted(primfuncs(scheduled))
    assert names[-1] == "subsample" and len(names) == 2 and names[0].startswith("fused_conv2d"), names
    expected = torch_conv2d(x, weight, bias, stride, 0, 1, 1, residual, epilogue)
    actual = run(scheduled, target, *([x] if residual is None else [x, residual]))
    assert relative_error(actual, expected) <= 1e-5


class _Downsample(nn.Module):
    """A ResNet-50 bottleneck's entry: 1x1, strided 3x3, 1x1, and the strided 1x1 shortcut, each with BatchNorm."""

    def __init__(self, channels, width):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(width, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width))
        self.shortcut = nn.Sequential(nn.Conv2d(channels, 4 * width, 1, 2, bias=False), nn.BatchNorm2d(4 * width))

    def forward(self, x):
        return torch.relu(self.c(self.b(self.a(x))) + self.shortcut(x))


def test_compile_reports_the_subsampled_shortcut_and_matches_pytorch():
    torch.manual_seed(0)
    block = _Downsample(64, 32).eval()
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 64, 20, 20)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(block, x), target=host_target())
    reasons = {d.name: d.reason for d in compiled.report}
    subsampled = [name for name, reason in reasons.items() if reason.endswith("on a copy of the pixels it reads")]
    assert len(subsampled) == 1 and "shortcut" in subsampled[0], reasons
    with torch.no_grad():
        expected = block(x).numpy()
    assert relative_error(compiled(x), expected) <= 1e-5

