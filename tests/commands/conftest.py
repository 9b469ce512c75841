"""Fixtures of the command-line tests."""

import pytest


@pytest.fixture
def program(tmp_path):
    """The pass tests' residual block saved with ``torch.export.save`` (a ``.pt2`` file)."""
    import torch

    from tests.relay_passes.sparse_models import sparse_residual_block

    model, example = sparse_residual_block()
    path = tmp_path / "block.pt2"
    torch.export.save(torch.export.export(model, (example,)), path)
    return path
