"""Fixtures of the tuning tests."""

import pytest
import torch

import tvm_sparse
from tests.relay_passes.sparse_models import sparse_residual_block


@pytest.fixture(scope="module")
def block():
    """``(model, example, mod, params)``: a small model with one dense and three sparse layers."""
    model, example = sparse_residual_block(seed=3)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.conv1.weight, std=0.1)
    return (model, example, *tvm_sparse.from_torch(model, example))
