"""Masks as parametrizations: the user's state_dict keys survive prepare, training and squash_mask."""

import pytest
import torch
from torch.nn.utils import parametrize

from tvm_sparse.plan import BlockPunchedScheme, BSRScheme, PatternScheme, SchemeError, UnstructuredScheme
from tvm_sparse.pruning.sparsifier import MagnitudeSparsifier
from tvm_sparse.pruning.small_cnn import SmallCNN

CONFIG = {
    "conv2.weight": PatternScheme(connectivity=0.5),
    "conv3.weight": BlockPunchedScheme(sparsity=0.75),
    "fc1.weight": BSRScheme(block=(4, 4), sparsity=0.8),
    "fc2.weight": UnstructuredScheme(sparsity=0.5),
}


def _pruned_model():
    torch.manual_seed(0)
    model = SmallCNN(width=8)
    sparsifier = MagnitudeSparsifier()
    sparsifier.prepare(model, CONFIG)
    sparsifier.step()
    return model, sparsifier


def test_state_dict_keys_and_order_unchanged_while_masked():
    torch.manual_seed(0)
    keys = list(SmallCNN(width=8).state_dict())
    model, sparsifier = _pruned_model()
    assert parametrize.is_parametrized(model.conv2, "weight")
    state = model.state_dict()
    assert list(state) == keys
    for fqn, mask in sparsifier.masks().items():
        assert torch.equal(state[fqn], sparsifier.originals()[fqn].detach() * mask)
        assert (state[fqn][mask == 0] == 0).all()


def test_checkpoints_load_both_ways():
    model, _ = _pruned_model()
    plain = SmallCNN(width=8)
    plain.load_state_dict(model.state_dict())  # strict: same keys
    x = torch.randn(3, 1, 16, 16)
    model.eval(), plain.eval()
    assert torch.allclose(plain(x), model(x))
    # And a plain checkpoint loads into the masked model (into the originals; the masks stay).
    torch.manual_seed(1)
    other = SmallCNN(width=8)
    model.load_state_dict(other.state_dict())
    assert torch.equal(model.conv2.parametrizations.weight.original, other.conv2.weight)


def test_squash_mask_leaves_plain_parameters_with_the_zeros():
    torch.manual_seed(0)
    keys = list(SmallCNN(width=8).state_dict())
    model, sparsifier = _pruned_model()
    masks = {fqn: mask.clone() for fqn, mask in sparsifier.masks().items()}
    assert sparsifier.squash_mask() is model
    state = model.state_dict()
    assert list(state) == keys
    for fqn, mask in masks.items():
        module = model.get_submodule(fqn.rsplit(".", 1)[0])
        assert not parametrize.is_parametrized(module)
        assert type(module.weight) is torch.nn.Parameter
        assert (state[fqn][mask == 0] == 0).all()
        assert (state[fqn][mask == 1] != 0).all()


def test_gradients_reach_only_kept_weights():
    model, sparsifier = _pruned_model()
    model(torch.randn(4, 1, 16, 16)).sum().backward()
    for fqn, original in sparsifier.originals().items():
        mask = sparsifier.masks()[fqn]
        assert (original.grad[mask == 0] == 0).all()
        assert original.grad[mask == 1].abs().sum() > 0


def test_plan_carries_the_generated_library():
    _, sparsifier = _pruned_model()
    plan = sparsifier.plan()
    assert plan["conv2.weight"].library is not None
    assert plan["conv3.weight"] == CONFIG["conv3.weight"]


@pytest.mark.parametrize(
    "config, message",
    [
        ({"conv9.weight": UnstructuredScheme(0.5)}, "conv9.weight: the model has no module 'conv9'"),
        ({"conv2.kernel": UnstructuredScheme(0.5)}, "conv2 has no parameter 'kernel'"),
        ({"conv2.weight": {"scheme": "pattern"}}, "is not a scheme"),
        ({"fc1.weight": PatternScheme()}, r"fc1.weight: pattern pruning needs a \[K, C, 3, 3\] weight, got \(128, 512\)"),
        ({"conv2.weight": BSRScheme()}, r"conv2.weight: BSR needs a \[K, C\] or \[K, C, 1, 1\] weight"),
        ({"fc2.bias": BlockPunchedScheme()}, "block-punched pruning needs"),
        ({}, "names no tensor"),
    ],
)
def test_prepare_rejects_bad_configs(config, message):
    with pytest.raises(SchemeError, match=message):
        MagnitudeSparsifier().prepare(SmallCNN(width=8), config)
