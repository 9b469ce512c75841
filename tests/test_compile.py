"""tvm_sparse.compile: binding, BatchNorm folding, local runs, export, and errors that name the problem."""

import platform
import subprocess

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import tvm_sparse
from relay_passes.pipeline import prepare_phase
from tvm_sparse.relax_utils import bind_params
from tests.conftest import relative_error, require_aarch64_linker


@pytest.fixture(scope="module")
def compiled_resnet18(resnet18_relax):
    mod, params = resnet18_relax
    return tvm_sparse.compile(mod, params, target="llvm")


def test_dense_resnet18_matches_pytorch(resnet18, compiled_resnet18):
    model, example = resnet18
    with torch.no_grad():
        expected = model(example).numpy()
    assert relative_error(compiled_resnet18(example), expected) <= 1e-4
    other = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(compiled_resnet18.run(other.numpy()), model(other).numpy()) <= 1e-4


def test_dense_layers_are_reported_dense(compiled_resnet18):
    report = compiled_resnet18.report
    assert len(report) == 21  # 20 convolutions and the classifier
    assert report[0].name == "conv1.weight" and report[-1].name == "linear.weight"
    assert {(d.structure, d.kernel) for d in report} == {("dense", "tvm dense")}
    assert all("dense weight" in line for line in compiled_resnet18.summary())


def test_wrong_inputs_are_named(compiled_resnet18):
    with pytest.raises(ValueError, match=r"'x' must have shape \(1, 3, 32, 32\)"):
        compiled_resnet18(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="'x' must have dtype float32"):
        compiled_resnet18(np.zeros((1, 3, 32, 32), "float64"))
    with pytest.raises(ValueError, match="takes 1 input"):
        compiled_resnet18()
    with pytest.raises(ValueError, match="'x' is a meta tensor"):
        compiled_resnet18(torch.randn(1, 3, 32, 32, device="meta"))
    channels_last = torch.randn(1, 3, 32, 32).to(memory_format=torch.channels_last)
    np.testing.assert_array_equal(compiled_resnet18(channels_last), compiled_resnet18(channels_last.contiguous()))


def test_wrong_params_are_named(resnet18_relax):
    mod, params = resnet18_relax
    with pytest.raises(ValueError, match="'conv1.wieght', which is not a parameter"):
        bind_params(mod, {"conv1.wieght": params["conv1.weight"]})
    with pytest.raises(ValueError, match=r"'conv1.weight' is float32\[64, 3, 5, 5\]"):
        bind_params(mod, {"conv1.weight": np.zeros((64, 3, 5, 5), "float32")})


def _conv_bn_relu():
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU())
    with torch.no_grad():
        mask = torch.rand(8, 4, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.5
        model[0].weight.mul_(mask)
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 2)
        model[1].bias.uniform_(-1, 1)
    return model.eval(), mask


def test_batchnorm_folds_into_the_convolution_and_keeps_zeros():
    model, mask = _conv_bn_relu()
    example = torch.randn(1, 4, 8, 8)
    mod, params = tvm_sparse.from_torch(model, example)
    folded = tvm.transform.Sequential(prepare_phase())(bind_params(mod, params))
    calls = [node for node in _calls(folded["main"])]
    assert "relax.nn.batch_norm" not in calls and calls.count("relax.nn.conv2d") == 1
    weights = [c.value.numpy() for c in _constants(folded["main"]) if c.value.numpy().shape == (8, 4, 3, 3)]
    assert len(weights) == 1
    np.testing.assert_array_equal(weights[0] == 0, ~mask.numpy())
    with torch.no_grad():
        expected = model(example).numpy()
    assert relative_error(tvm_sparse.compile(mod, params)(example), expected) <= 1e-5


def _calls(func):
    names = []
    relax.analysis.post_order_visit(func, lambda e: names.append(e.op.name)
                                    if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) else None)
    return names


def _constants(func):
    found = []
    relax.analysis.post_order_visit(func, lambda e: found.append(e) if isinstance(e, tvm.ir.expr.GenericConst) else None)
    return found


def test_aarch64_export_is_an_aarch64_library(tmp_path):
    require_aarch64_linker()
    model, _ = _conv_bn_relu()
    example = torch.randn(1, 4, 8, 8)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target="llvm -mtriple=aarch64")
    assert not compiled.runs_here or platform.machine() == "aarch64"
    path = compiled.export_library(tmp_path / "net.so")
    described = subprocess.run(["file", "-b", path], capture_output=True, text=True, check=True).stdout
    assert "ARM aarch64" in described and "shared object" in described
    if platform.machine() != "aarch64":
        with pytest.raises(RuntimeError, match="export it with export_library"):
            compiled(example)


def test_android_export_needs_the_ndk(monkeypatch, tmp_path):
    model, _ = _conv_bn_relu()
    example = torch.randn(1, 4, 8, 8)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example),
                                  target="llvm -mtriple=aarch64-linux-android -mcpu=cortex-a76")
    monkeypatch.delenv("TVM_NDK_CC", raising=False)
    with pytest.raises(RuntimeError, match="TVM_NDK_CC"):
        compiled.export_library(tmp_path / "net.so")


def test_bad_target_fails_before_compiling(resnet18_relax):
    mod, params = resnet18_relax
    with pytest.raises(ValueError, match="-mcpu=cortex-zz"):
        tvm_sparse.compile(mod, params, target="llvm -mtriple=aarch64 -mcpu=cortex-zz")
