"""The issue's acceptance test: a small CNN on digits, pruned to 8x on its 3x3 layers during training,
loses at most one point of accuracy against the same CNN trained dense (fixed seeds); the export
writes a plan that verifies against the exported weights."""

import numpy as np
import pytest
import torch

from tvm_sparse.data import load_digits
from tvm_sparse.plan import PatternScheme, load_plan, verify_plan
from tvm_sparse.pruning.export import export_pruned, weights_of
from tvm_sparse.pruning.small_cnn import SmallCNN
from tvm_sparse.pruning.workflows import (
    TrainSettings,
    conv3x3_config,
    measured_compression,
    pattern_for_compression,
    train_dense,
    train_with_clicktrain,
)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible sums, and no oversubscription of a busy machine
    yield
    torch.set_num_threads(threads)


def test_clicktrain_8x_on_digits_within_one_point_of_dense(one_thread, tmp_path):
    data = load_digits(size=16, seed=0)
    settings = TrainSettings(epochs=8, seed=0)
    dense = train_dense(data, settings)
    pruned = train_with_clicktrain(data, settings, lambda model: conv3x3_config(model, pattern_for_compression(8)))

    assert sorted(pruned.plan) == ["conv1.weight", "conv2.weight", "conv3.weight"]
    assert all(isinstance(scheme, PatternScheme) and scheme.library is not None for scheme in pruned.plan.values())
    assert measured_compression(pruned.model, list(pruned.plan)) >= 7.99
    assert dense.accuracy >= 97.0, "the dense baseline itself must be good for the comparison to mean anything"
    assert pruned.accuracy >= dense.accuracy - 1.0, (dense.accuracy, pruned.accuracy)

    model_path, plan_path = export_pruned(pruned.model, pruned.plan, tmp_path / "export")
    plan = load_plan(plan_path)
    assert plan == pruned.plan
    reloaded = SmallCNN()
    reloaded.load_state_dict(torch.load(model_path))
    verify_plan(plan, weights_of(reloaded))
    x = torch.from_numpy(data.x_test[:8])
    with torch.no_grad():
        assert np.allclose(reloaded.eval()(x).numpy(), pruned.model(x).numpy(), atol=1e-5)
