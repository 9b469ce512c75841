"""analyse_weight finds pattern, block-punched, unstructured and dense weights."""

import numpy as np
import pytest
import torch

from relay_passes.sparsity_analysis import analyse_weight
from tests.relay_passes.sparse_models import block_punch_, pattern_prune_


@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (7, 5, 3, 3), (64, 32, 3, 3)])
def test_pattern_weights(shape):
    weight = torch.randn(shape)
    pattern_prune_(weight, kept_kernels=0.4)
    found = analyse_weight(weight.numpy())
    assert found.kind == "pattern"
    assert found.density == pytest.approx(np.count_nonzero(weight.numpy()) / weight.numel())
    np.testing.assert_array_equal(found.sparse.to_dense(), weight.numpy())


@pytest.mark.parametrize("shape, block", [((32, 16, 1, 1), (8, 4)), ((16, 12, 3, 3), (8, 4)),
                                          ((24, 64), (8, 4)), ((32, 32, 1, 1), (16, 4)), ((8, 8, 5, 5), (4, 2))])
def test_block_punched_weights_find_their_block(shape, block):
    weight = torch.randn(shape)
    block_punch_(weight, block=block, kept_columns=0.3)
    found = analyse_weight(weight.numpy())
    assert found.kind == "block_punched"
    bk, bc = found.sparse.block
    assert bk * bc >= block[0] * block[1]  # the largest block that fits, at least the true one
    np.testing.assert_array_equal(found.sparse.to_dense().reshape(shape), weight.numpy())


def test_unstructured_and_dense_weights():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((32, 32, 3, 3)).astype("float32")
    assert analyse_weight(weight).kind == "dense"
    weight[rng.random(weight.shape) < 0.8] = 0
    found = analyse_weight(weight)
    assert found.kind == "unstructured" and found.sparse is None
    assert 0.15 < found.density < 0.25
