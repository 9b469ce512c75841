"""Fixtures shared by the test suite."""

import pytest
import torch

from tvm_sparse.models import build_model


@pytest.fixture(scope="session")
def resnet18():
    """Dense ResNet-18 (CIFAR shapes, random weights and BatchNorm statistics) and an example input."""
    return build_model("resnet18"), torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def resnet18_relax(resnet18):
    """ResNet-18 imported with ``tvm_sparse.from_torch``: ``(mod, params)``."""
    import tvm_sparse

    model, example = resnet18
    return tvm_sparse.from_torch(model, example)


@pytest.fixture(scope="session")
def tracker():
    """An RPC tracker on loopback for the whole session: ``(host, port)``."""
    from tvm_sparse.rpc import local_tracker

    with local_tracker() as address:
        yield address


def relative_error(actual, expected):
    """max |actual - expected| / max |expected|."""
    return float(abs(actual - expected).max() / abs(expected).max())
