"""One-term reductions are rewritten as products, and their epilogue is applied once on OpenCL.

Each model below once gave a wrong answer on PoCL (the epilogue applied twice by dlight's
``gpu.Fallback``); the first ones are the shapes the fuzz test found.
"""

import numpy as np
import pytest
import torch
from torch import nn

import tvm
import tvm_sparse
from tvm import relax
from relay_passes.one_term_reductions import ExpandOneTermReductions
from relay_passes.sparse_rules import SparseRules
from tests.schedules import pocl
from tvm_sparse.relax_utils import bind_params


class _Head(nn.Module):
    """A layer, then an epilogue a GPU legalization fuses into it."""

    def __init__(self, layer, epilogue=None):
        super().__init__()
        self.layer = layer
        self.epilogue = epilogue if epilogue is not None else nn.Identity()

    def forward(self, x):
        return self.epilogue(self.layer(x))


class _MeanScaled(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.mean(dim=self.dims, keepdim=True) * 3.0 - 1.0


class _MaxShifted(nn.Module):
    def forward(self, x):
        return x.max() + 2.0


class _SumScaled(nn.Module):
    def forward(self, x):
        return x.sum(dim=-1) * 0.5 + 1.0


def _batch_norm(channels):
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    return norm.eval()


CASES = {
    "linear, one input feature": (lambda: nn.Linear(1, 8), (2, 1)),
    "linear, one feature, batched": (lambda: nn.Linear(1, 5), (3, 4, 1)),
    "1x1 conv, one input channel, batch norm": (
        lambda: _Head(nn.Conv2d(1, 4, 1), _batch_norm(4)), (1, 1, 6, 5)),
    "1x1 conv, one input channel, padded and strided": (
        lambda: _Head(nn.Conv2d(1, 4, 1, stride=(2, 1), padding=1), nn.ReLU()), (2, 1, 7, 5)),
    "depthwise 1x1 conv, batch norm": (
        lambda: _Head(nn.Conv2d(4, 4, 1, groups=4), _batch_norm(4)), (1, 4, 6, 5)),
    "depthwise 1x1 conv, channel multiplier 2": (
        lambda: _Head(nn.Conv2d(3, 6, 1, groups=3, stride=2, padding=1, bias=False), _batch_norm(6)), (1, 3, 6, 5)),
    "mean over a 1x1 map, scaled": (lambda: _MeanScaled((2, 3)), (2, 3, 1, 1)),
    "max of one element, shifted": (lambda: _MaxShifted(), (1, 1, 1, 1)),
    "sum over a last axis of one, scaled": (lambda: _SumScaled(), (3, 4, 1)),
}


def _model(case):
    factory, shape = CASES[case]
    torch.manual_seed(len(case))
    return factory().eval(), torch.randn(*shape)


@pytest.mark.parametrize("case", CASES)
def test_the_pass_leaves_no_one_term_reduction_and_keeps_the_value(case):
    model, example = _model(case)
    mod, params = tvm_sparse.from_torch(model, example)
    before = bind_params(mod, params)
    after = ExpandOneTermReductions()(before)
    reductions = {"relax.matmul", "relax.nn.conv2d", "relax.sum", "relax.mean", "relax.max", "relax.min"}
    assert not reductions & set(_ops(after["main"]))
    assert reductions & set(_ops(before["main"])), "the case had a one-term reduction to rewrite"
    np.testing.assert_array_equal(_run_on_llvm(after, example), _run_on_llvm(before, example))


def _run_on_llvm(mod, example):
    """``mod``'s ``main`` on ``example``, built with TVM's default pipeline for the CPU."""
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    (output,) = vm["main"](tvm.runtime.tensor(example.numpy()))
    return output.numpy()


def _ops(func):
    names = []

    def visit(expr):
        if isinstance(expr, relax.Call) and hasattr(expr.op, "name"):
            names.append(expr.op.name)

    relax.analysis.post_order_visit(func, visit)
    return names


@pytest.mark.parametrize("case", CASES)
def test_one_term_reductions_match_torch_on_pocl(case, opencl_context):
    model, example = _model(case)
    actual = pocl.run_torch_model(opencl_context, model, example, rules=SparseRules(min_macs=0))
    assert actual is not None, "the model runs on PoCL"
    with torch.no_grad():
        expected = model(example).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
