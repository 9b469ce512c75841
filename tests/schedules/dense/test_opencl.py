"""Dense layers on OpenCL (Mali, Adreno) targets, run on PoCL against PyTorch.

The GPU backend's legalize passes give the dense layers dlight's GPU schedules (the convolution
as an implicit GEMM with thread-bound tiles, shared-memory staging). ``tests/schedules/pocl.py``
launches the generated kernels with the launch sizes of the host code.
"""

import numpy as np
import pytest
import torch
import tvm

from relay_passes.pipeline import build_pipeline
from tests.conftest import relative_error
from tests.schedules import pocl
from tests.schedules.dense.harness import conv2d_module, linear_module, primfuncs, scheduled_module, torch_conv2d


def opencl_target(device):
    return tvm.target.Target({"kind": "opencl", "device": device, "host": {"kind": "llvm"}})


# (channels, filters, height, width, kernel, stride, padding, dilation, groups, bias, residual, epilogue, device)
CONV_CASES = [
    (16, 16, 16, 16, 3, 1, 1, 1, 1, True, False, "relu", "mali"),
    (16, 32, 16, 16, 3, 2, 1, 1, 1, True, True, "relu", "adreno"),
    (8, 24, 9, 11, 1, 1, 0, 1, 1, True, False, "relu6", "mali"),  # pointwise, odd map
    (3, 16, 32, 32, 3, 1, 1, 1, 1, True, False, "relu", "adreno"),  # the stem
    (13, 7, 10, 7, 5, 2, 2, 1, 1, False, False, None, "mali"),  # nothing divides a tile
    (12, 12, 14, 14, 3, 1, 2, 2, 1, True, False, "relu", "adreno"),  # dilated
    (32, 32, 16, 16, 3, 2, 1, 1, 32, True, False, "relu6", "mali"),  # depthwise
    (16, 16, 8, 8, 3, 1, 1, 1, 4, True, True, "relu", "adreno"),  # grouped
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[-1]}_c{c[0]}k{c[1]}_{c[2]}x{c[3]}_r{c[4]}s{c[5]}g{c[8]}")
def test_dense_conv2d_matches_pytorch_on_pocl(case, opencl_context):
    channels, filters, h, w, kernel, stride, padding, dilation, groups, has_bias, has_residual, epilogue, device = case
    rng = np.random.default_rng(sum(case[:9]))
    weight = rng.standard_normal((filters, channels // groups, kernel, kernel)).astype("float32")
    bias = rng.standard_normal(filters).astype("float32") if has_bias else None
    x = rng.standard_normal((1, channels, h, w)).astype("float32")
    out_shape = torch_conv2d(x, weight, None, stride, padding, dilation, groups, None, None).shape
    residual = rng.standard_normal(out_shape).astype("float32") if has_residual else None
    expected = torch_conv2d(x, weight, bias, stride, padding, dilation, groups, residual, epilogue)
    mod = conv2d_module(x.shape, weight, stride, padding, dilation, groups, bias, epilogue,
                        None if residual is None else residual.shape)
    target = opencl_target(device)

    scheduled = scheduled_module(mod, target)
    assert all("T.thread_binding" in f.script() for f in primfuncs(scheduled).values())
    actual = pocl.run_module(opencl_context, scheduled, target, *([x] if residual is None else [x, residual]))
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= 1e-5


@pytest.mark.parametrize("batch, features_in, features_out, epilogue", [(1, 512, 10, None), (4, 37, 29, "relu")])
def test_dense_linear_matches_pytorch_on_pocl(batch, features_in, features_out, epilogue, opencl_context):
    rng = np.random.default_rng(features_in)
    x = rng.standard_normal((batch, features_in)).astype("float32")
    weight = rng.standard_normal((features_out, features_in)).astype("float32")
    bias = rng.standard_normal(features_out).astype("float32")
    expected = torch.nn.functional.linear(*map(torch.from_numpy, (x, weight, bias)))
    expected = (torch.relu(expected) if epilogue == "relu" else expected).numpy()
    target = opencl_target("mali")

    actual = pocl.run_module(opencl_context, scheduled_module(linear_module(x.shape, weight, bias, epilogue), target), target, x)
    assert relative_error(actual, expected) <= 1e-5


@pytest.mark.parametrize("device", ["mali", "adreno"])
def test_opencl_model_builds_with_an_aarch64_host(device):
    """The whole pipeline builds for a phone GPU: OpenCL kernels imported by aarch64 host code."""
    weight = np.random.default_rng(0).standard_normal((16, 16, 3, 3)).astype("float32")
    mod = conv2d_module((1, 16, 16, 16), weight, 1, (1, 1, 1, 1), 1, 1, np.zeros(16, "float32"), "relu", None)
    target = tvm.target.Target({"kind": "opencl", "device": device,
                                "host": {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}})
    executable = tvm.compile(mod, target=target, relax_pipeline=build_pipeline(target))
    (opencl,) = executable.mod.imports[0].imports  # the VM executable imports the host code, which imports it
    assert opencl.kind == "opencl" and "__kernel" in opencl.inspect_source()
