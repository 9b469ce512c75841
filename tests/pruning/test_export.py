"""export_pruned writes nothing when the plan does not match the weights."""

import pytest
import torch

from tvm_sparse.plan import PatternScheme, PlanError, candidate_patterns
from tvm_sparse.pruning.export import export_pruned
from tvm_sparse.pruning.small_cnn import SmallCNN


def test_export_refuses_a_plan_the_weights_do_not_follow(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN(width=8)  # dense: no 3x3 kernel follows a 4-entry pattern
    plan = {"conv2.weight": PatternScheme(connectivity=0.5, library=candidate_patterns(4, True)[:8])}
    with pytest.raises(PlanError, match="conv2.weight: not pattern-structured"):
        export_pruned(model, plan, tmp_path / "out")
    assert not (tmp_path / "out").exists()
