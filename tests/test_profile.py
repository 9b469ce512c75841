"""CompiledModel.profile: one row per layer of the report, positive times, shares of the model."""

import json

import pytest
import torch

import tvm_sparse
from tvm_sparse.pruning.one_shot import magnitude_prune


@pytest.fixture(scope="module")
def pruned_small_cnn():
    """The README's small CNN pruned 8x: a dense first layer, pattern, block-punched 1x1 and linear layers."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 64, 1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10),
    ).eval()
    plan = magnitude_prune(model, compression=8)
    example = torch.randn(1, 3, 32, 32)
    mod, params = tvm_sparse.from_torch(model, example)
    return tvm_sparse.compile(mod, params, plan=plan), example


def test_one_row_per_report_layer_with_its_kernel_and_time(pruned_small_cnn):
    compiled, example = pruned_small_cnn
    profile = compiled.profile(example, repeat=3, min_repeat_ms=2)
    assert [row.layer for row in profile.layers] == [d.name for d in compiled.report]
    assert [row.implementation for row in profile.layers] == [d.kernel for d in compiled.report]
    decisions = [d.decision for d in compiled.report]
    assert "sparse" in decisions and "dense" in decisions
    for row, decision in zip(profile.layers, compiled.report):
        assert row.ms > 0, row
        if decision.decision == "sparse":
            assert row.kernel.startswith("sparse_"), row
        else:
            assert "conv2d" in row.kernel or "matmul" in row.kernel, row
    assert len({row.kernel for row in profile.layers}) == len(profile.layers)
    shares = sum(row.share for row in profile.layers)
    assert 0 < shares <= 1
    parts = profile.breakdown()
    assert parts["other kernels"] > 0  # ReLU and pooling are kernels of no layer
    assert sum(parts.values()) == pytest.approx(profile.model_ms)
    assert json.loads(json.dumps(profile.to_dict()))["layers"][0]["layer"] == compiled.report[0].name
    table = profile.table()
    assert all(d.name in table for d in compiled.report) and "outside kernels" in table


def test_profiling_checks_inputs_and_the_target(pruned_small_cnn):
    compiled, example = pruned_small_cnn
    with pytest.raises(ValueError, match="must have shape"):
        compiled.profile(torch.randn(1, 3, 16, 16))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)).eval()
    phone = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target="llvm -mtriple=aarch64")
    with pytest.raises(RuntimeError, match="cannot run"):
        phone.profile(example)
