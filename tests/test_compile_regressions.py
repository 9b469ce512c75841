"""Models that once crashed ``tvm_sparse.compile`` inside TVM: each now compiles and matches PyTorch."""

import numpy as np
import pytest
import torch
from torch import nn

import tvm_sparse


def _block_punched_columns(conv, block_rows, removed, seed):
    """Zero ``removed`` of the (``block_rows`` filters x 1 channel x kernel position) columns of ``conv``."""
    generator = torch.Generator().manual_seed(seed)
    filters, channels, height, width = conv.weight.shape
    keep = torch.rand(filters // block_rows, channels, height, width, generator=generator) >= removed
    conv.weight.data.mul_(keep.repeat_interleave(block_rows, 0).float())


def _compiled_matches_torch(model, example):
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target="llvm")
    with torch.no_grad():
        expected = model(example).numpy()
    np.testing.assert_allclose(compiled(example), expected, rtol=1e-5, atol=1e-6)
    return compiled


@pytest.mark.parametrize("batch", [1, 2])
def test_a_sparse_kernel_whose_only_argument_is_the_input(batch):
    """A (3, 1) convolution without bias, 8x1 block-punched: the kernel reads nothing but its input.

    TVM's RewriteDataflowReshape asks such a call whether it is a reshape, an analysis that failed
    on a PrimFunc whose body was not a block.
    """
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 16, (3, 1), padding=1, bias=False)
    _block_punched_columns(conv, block_rows=8, removed=0.9, seed=batch)
    compiled = _compiled_matches_torch(nn.Sequential(conv).eval(), torch.randn(batch, 24, 20, 20))
    assert compiled.report[0].kernel == "block_punched_conv2d"


@pytest.mark.parametrize("batch", [1, 2])
def test_an_all_zero_convolution_without_bias(batch):
    conv = nn.Conv2d(16, 8, 3, bias=False)
    conv.weight.data.zero_()
    _compiled_matches_torch(nn.Sequential(conv).eval(), torch.randn(batch, 16, 9, 9))


@pytest.mark.parametrize("params, message", [({}, "params is empty"), ({"nope.weight": np.zeros(1, "float32")}, "nope.weight")])
def test_empty_or_unknown_params_are_refused(params, message):
    from tvm_sparse.checks import ParamsError

    mod, _ = tvm_sparse.from_torch(nn.Sequential(nn.Conv2d(4, 4, 3)).eval(), torch.randn(1, 4, 8, 8))
    with pytest.raises(ParamsError, match=message):
        tvm_sparse.compile(mod, params, target="llvm")


def test_a_model_without_weights_compiles_with_its_empty_params():
    class Scaled(nn.Module):
        def forward(self, x):
            return torch.relu(x) * 2.0

    _compiled_matches_torch(Scaled().eval(), torch.randn(2, 3, 4, 4))


def _conv_and_params():
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1)).eval()
    return tvm_sparse.from_torch(model, torch.randn(1, 8, 6, 6))


@pytest.mark.parametrize("plan, message", [
    ([("0.weight", "bsr")], "a plan is a dict"),
    ({"0.weight": {"scheme": "bsr"}}, "is not a scheme"),
    ("/nonexistent/plan.json", "no plan file"),
])
def test_a_plan_of_the_wrong_kind_is_refused_by_name(plan, message):
    from tvm_sparse.plan import PlanError

    mod, params = _conv_and_params()
    with pytest.raises(PlanError, match=message):
        tvm_sparse.compile(mod, params, target="llvm", plan=plan)


def test_a_plan_without_its_weights_is_refused():
    from tvm_sparse.plan import BlockPunchedScheme, PlanError

    mod, _ = _conv_and_params()
    with pytest.raises(PlanError, match="needs the weights"):
        tvm_sparse.compile(mod, None, target="llvm", plan={"0.weight": BlockPunchedScheme(block=(4, 1))})


def test_a_plan_file_is_read_from_its_path(tmp_path):
    from tvm_sparse.plan import BlockPunchedScheme, save_plan

    mod, params = _conv_and_params()
    save_plan({"0.weight": BlockPunchedScheme(block=(4, 1))}, tmp_path / "plan.json")
    compiled = tvm_sparse.compile(mod, params, target="llvm", plan=tmp_path / "plan.json")
    assert [d.kernel for d in compiled.report] == ["block_punched_conv2d"]


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_a_pointwise_convolution_of_one_input_channel(batch):
    """Its reduction has one term: the dense register-tile rules leave it to the fallback rule."""
    torch.manual_seed(batch)
    model = nn.Sequential(nn.Conv2d(1, 2, 1, padding=3, dilation=2), nn.BatchNorm2d(2), nn.Conv2d(2, 1, 1, bias=False))
    _compiled_matches_torch(model.eval(), torch.randn(batch, 1, 10, 9))
