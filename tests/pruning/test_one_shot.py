"""One-shot pruning gives each layer the scheme it asks for, at no less than the asked compression."""

import numpy as np
import pytest
import torch

from tvm_sparse.formats import BlockPunchedWeight
from tvm_sparse.models import build_model
from tvm_sparse.plan import BlockPunchedScheme, PatternScheme, verify_plan
from tvm_sparse.pruning.export import weights_of
from tvm_sparse.pruning.one_shot import magnitude_prune, one_shot_config
from tvm_sparse.pruning.workflows import block_punched_for_compression


@pytest.mark.parametrize("compression, block, kept", [(8, (8, 4), 4), (8, (8, 8), 9), (4.5, (8, 4), 8), (9, (4, 1), 1)])
def test_block_punched_rounds_the_kept_columns_down(compression, block, kept):
    scheme = block_punched_for_compression(compression, block)
    columns = block[1] * 9
    assert scheme.block == block
    assert round((1.0 - scheme.sparsity) * columns) == kept
    assert columns / kept >= compression


def test_block_punched_refuses_a_compression_that_keeps_no_column():
    with pytest.raises(ValueError, match="4x1 blocks have 9 columns: 10x would keep none"):
        block_punched_for_compression(10, (4, 1))


def test_unknown_3x3_scheme_is_named():
    with pytest.raises(ValueError, match="unknown 3x3 scheme 'blocks'"):
        one_shot_config(build_model("resnet18"), scheme_3x3="blocks")


@pytest.mark.parametrize("model", [
    torch.nn.Sequential(torch.nn.Conv2d(16, 16, 5)),  # neither 3x3 nor 1x1
    torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, groups=4), torch.nn.Conv2d(16, 16, 3, dilation=2)),
    torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Flatten(), torch.nn.Linear(4, 2)),  # too few inputs
])
def test_a_model_with_nothing_to_prune_is_refused_by_name(model):
    with pytest.raises(ValueError, match="the model has no layer to prune one-shot: it prunes 3x3 and 1x1"):
        magnitude_prune(model)


@pytest.mark.parametrize("scheme_3x3, scheme_type", [("pattern", PatternScheme), ("block_punched", BlockPunchedScheme)])
def test_3x3_layers_get_the_scheme_and_at_least_the_compression(scheme_3x3, scheme_type):
    model = build_model("resnet18")
    plan = magnitude_prune(model, compression=8.0, scheme_3x3=scheme_3x3)
    verify_plan(plan, weights_of(model))
    parameters = dict(model.named_parameters())
    convs_3x3 = [name for name in plan if parameters[name].dim() == 4 and parameters[name].shape[-1] == 3]
    assert convs_3x3 and all(isinstance(plan[name], scheme_type) for name in convs_3x3)
    assert "conv1.weight" not in plan  # the first convolution (3 input channels) stays dense
    for name in convs_3x3:
        weight = parameters[name].detach()
        assert weight.numel() / int(torch.count_nonzero(weight)) >= 8.0 - 1e-6, name
    if scheme_3x3 == "block_punched":
        # The weights have the structure the kernels need: the format accepts them as they are.
        weight = parameters["layer2.0.conv1.weight"].detach().numpy()
        packed = BlockPunchedWeight.from_dense(weight, block=(8, 4))
        np.testing.assert_array_equal(packed.to_dense(), weight)
