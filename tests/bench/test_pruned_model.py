"""``bench model``'s ideal speed-up (dense over kept multiply-adds) and the fraction of it reached."""

import pytest
import torch
from torch import nn

from tvm_sparse.bench.pruned_model import PreparedModel, PrunedModelTiming
from tvm_sparse.mapping.layers import model_macs


def _tiny_model():
    """3x3 conv (half its weights zero), depthwise 3x3 (dense), strided 1x1 (3/4 zero), linear (dense)."""
    model = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                          nn.Conv2d(4, 4, 1, stride=2), nn.Flatten(), nn.Linear(36, 2))
    with torch.no_grad():
        model[0].weight[:2] = 0
        model[2].weight[1:] = 0
    return model


def test_macs_count_each_layers_weights_once_per_output_pixel_and_only_the_kept_ones():
    dense, kept = model_macs(_tiny_model(), torch.randn(2, 8, 6, 6))
    conv3x3, depthwise, pointwise, linear = 36 * (4 * 8 * 9), 36 * (4 * 9), 9 * (4 * 4), 36 * 2
    assert dense == 2 * (conv3x3 + depthwise + pointwise + linear)
    assert kept == pytest.approx(2 * (conv3x3 / 2 + depthwise + pointwise / 4 + linear))


def test_the_speed_up_reached_is_dense_over_sparse_and_its_fraction_of_the_ideal():
    prepared = PreparedModel("tiny", {}, compression=8.0, routed=2, layers=4, ideal_speedup=4.0)
    timing = PrunedModelTiming("tiny", 1, {"tvm_sparse": 10.0, "tvm_sparse dense": 30.0, "onnxruntime": 5.0}, {})
    assert prepared.speedup_reached(timing) == pytest.approx((3.0, 0.75))


def test_a_mapped_plan_replaces_the_one_shot_plan_at_its_global_compression():
    from tvm_sparse.bench.pruned_model import pruned_variants
    from tvm_sparse.mapping.rules import OVER_BUDGET
    from tvm_sparse.plan import BlockPunchedScheme, BSRScheme, PatternScheme
    from tvm_sparse.pruning.one_shot import global_compression

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 64, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()
    example = torch.randn(1, 3, 16, 16)
    _, one_shot, one_shot_plan, _ = pruned_variants("tiny", 8, model=model)
    dense, mapped, plan, unstructured = pruned_variants("tiny", 8, model=model, mapping="rules", example=example,
                                                        target="llvm -mcpu=emeraldrapids")
    assert all(isinstance(plan[name], (BlockPunchedScheme, BSRScheme)) for name in plan), "Emerald Rapids' rules: blocks only"
    assert any(isinstance(s, PatternScheme) for s in one_shot_plan.values()), "the one-shot plan had patterns"
    # the rules' contract: kept weights at most OVER_BUDGET above the one-shot plan's (whole block columns)
    assert global_compression(mapped) >= global_compression(one_shot) / (1 + OVER_BUDGET)
    for name in plan:  # the unstructured twin keeps each layer's rate
        assert torch.count_nonzero(unstructured.get_parameter(name)) == torch.count_nonzero(mapped.get_parameter(name))


def test_the_model_compiled_with_its_tuning_logs_is_timed_and_checked(tmp_path):
    """``bench model --tuning-logs ROOT`` finds the folder ``tvm-sparse tune --prune magnitude`` writes,
    and times the model compiled with it next to the untuned one (checked against PyTorch)."""
    import copy

    import tvm_sparse
    from tvm_sparse.bench.pruned_model import AGREEMENT, run_benchmark
    from tvm_sparse.pruning.one_shot import magnitude_prune, one_shot_label
    from tvm_sparse.target import target_slug

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(32, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()
    pruned = copy.deepcopy(model)
    plan = magnitude_prune(pruned, compression=8)
    target = "llvm"
    log_dir = tmp_path / one_shot_label("tiny", 8) / target_slug(target)
    tvm_sparse.tune(*tvm_sparse.from_torch(pruned, torch.randn(1, 3, 16, 16)), target, log_dir=log_dir, trials=0,
                    sparse_trials=2, plan=plan)
    (prepared,), (timing,) = run_benchmark(["tiny"], 8, [1], 1, target, models={"tiny": model}, size=16,
                                           tuning_root=str(tmp_path))
    assert "tvm_sparse tuned" in prepared.compile_seconds
    assert timing.median_ms["tvm_sparse tuned"] > 0
    assert timing.max_rel_err["tvm_sparse tuned"] <= AGREEMENT
    (_, (untuned,)) = run_benchmark(["tiny"], 8, [1], 1, target, models={"tiny": model}, size=16,
                                    tuning_root=str(tmp_path / "elsewhere"))
    assert "tvm_sparse tuned" not in untuned.median_ms
