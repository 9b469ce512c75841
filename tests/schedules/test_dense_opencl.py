"""OpenCL (Mali, Adreno) targets: the dense layers get dlight's GPU schedules, which the GPU
backend's legalize passes apply (the convolution as an implicit GEMM with thread-bound tiles).
Numerical checks need an OpenCL device (PoCL); here the build and the binding are checked."""

import numpy as np
import pytest
import tvm

from relay_passes.pipeline import build_pipeline
from tests.schedules.dense_harness import conv2d_module, primfuncs, scheduled_module


@pytest.mark.parametrize("device", ["mali", "adreno"])
@pytest.mark.parametrize("groups", [1, 16])
def test_opencl_dense_conv2d_is_thread_bound_and_builds(device, groups):
    weight = np.random.default_rng(0).standard_normal((16, 16 // groups, 3, 3)).astype("float32")
    mod = conv2d_module((1, 16, 16, 16), weight, 1, (1, 1, 1, 1), 1, groups, np.zeros(16, "float32"), "relu", None)
    target = tvm.target.Target({"kind": "opencl", "device": device,
                                "host": {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}})
    funcs = primfuncs(scheduled_module(mod, target))
    assert funcs and all("T.thread_binding" in f.script() for f in funcs.values())
    executable = tvm.compile(mod, target=target, relax_pipeline=build_pipeline(target))
    (opencl,) = executable.mod.imports[0].imports  # the VM executable imports the host code, which imports it
    assert opencl.kind == "opencl" and "__kernel" in opencl.inspect_source()
