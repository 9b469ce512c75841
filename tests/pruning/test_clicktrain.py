"""ClickTrain: schedule, gradual hard prunes with exact structure, group lasso, DDP agreement, ADMM."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tvm_sparse.plan import (
    BlockPunchedScheme,
    BSRScheme,
    FilterScheme,
    PatternScheme,
    SchemeError,
    plan_from_json,
    verify_plan,
)
from tvm_sparse.pruning.admm import ADMMSparsifier
from tvm_sparse.pruning.clicktrain import ClickTrainSchedule, ClickTrainSparsifier
from tvm_sparse.pruning.masks import compute_mask
from tvm_sparse.pruning.patterns import generate_library
from tvm_sparse.pruning.small_cnn import SmallCNN
from tvm_sparse.pruning.export import weights_of

CONFIG = {
    "conv2.weight": PatternScheme(connectivity=0.6),
    "conv3.weight": BlockPunchedScheme(sparsity=0.75),
    "fc1.weight": BSRScheme(block=(4, 4), sparsity=0.8),
    "fc2.weight": FilterScheme(sparsity=0.3),
}


def _batches(n, seed=0, size=16):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n):
        yield torch.randn(size, 1, 16, 16, generator=generator), torch.randint(0, 10, (size,), generator=generator)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prune_start=10, prune_end=5), "prune_end 5 is before prune_start 10"),
        (dict(prune_start=0, prune_end=5), "prune_start must leave at least one step"),
        (dict(prune_start=5, prune_end=9, stages=0), "stages"),
        (dict(prune_start=5, prune_end=9, update_every=0), "update_every"),
        (dict(prune_start=5, prune_end=9, importance_decay=1.0), "importance_decay"),
        (dict(prune_start=5.5, prune_end=9), "prune_start"),
    ],
)
def test_schedule_validation(kwargs, message):
    with pytest.raises(SchemeError, match=message):
        ClickTrainSchedule(**kwargs)


def test_schedule_steps_and_cubic_fractions():
    schedule = ClickTrainSchedule(prune_start=20, prune_end=60, stages=3)
    assert schedule.prune_steps() == [20, 40, 60]
    fractions = [schedule.stage_fraction(i) for i in range(3)]
    assert fractions == pytest.approx([1 - (2 / 3) ** 3, 1 - (1 / 3) ** 3, 1.0])
    derived = ClickTrainSchedule.for_steps(1000)
    assert derived.prune_steps() == [200, 400, 600]
    assert 0 < derived.lasso_steps <= 100
    assert ClickTrainSchedule(prune_start=5, prune_end=30, stages=1).prune_steps() == [30]


def test_step_needs_gradients_and_prepare():
    sparsifier = ClickTrainSparsifier(ClickTrainSchedule(prune_start=2, prune_end=4))
    with pytest.raises(RuntimeError, match="prepare"):
        sparsifier.step()
    sparsifier.prepare(SmallCNN(width=8), CONFIG)
    with pytest.raises(RuntimeError, match="conv2.weight has no gradient; call step\\(\\) after loss.backward\\(\\)"):
        sparsifier.step()


def _run(schedule, steps, lr=1e-3, config=CONFIG, record=None):
    torch.manual_seed(0)
    model = SmallCNN(width=8)
    sparsifier = ClickTrainSparsifier(schedule)
    sparsifier.prepare(model, config)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for x, y in _batches(steps):
        F.cross_entropy(model(x), y).backward()
        if record is not None:
            record(sparsifier)
        sparsifier.step()
        optimizer.step()
        optimizer.zero_grad()
    return model, sparsifier


def test_gradual_prunes_reach_the_exact_structure():
    schedule = ClickTrainSchedule(prune_start=4, prune_end=12, stages=3, lasso_steps=3, update_every=2)
    densities = []
    record = lambda s: densities.append({fqn: m.mean().item() for fqn, m in s.masks().items()})  # noqa: E731
    model, sparsifier = _run(schedule, steps=16, record=record)
    assert sparsifier.finished
    # Dense until the first prune, then each stage removes more, then the masks stay fixed.
    for fqn in CONFIG:
        series = [d[fqn] for d in densities]
        assert series[:5] == [1.0] * 5
        assert series[5] < 1.0 and series[5] >= series[9] >= series[13]
        assert all(a >= b for a, b in zip(series, series[1:]))
        assert series[13:] == [series[13]] * len(series[13:])
    plan = sparsifier.plan()
    assert plan["conv2.weight"].library is not None and plan["conv2.weight"].connectivity == 0.6
    sparsifier.squash_mask()
    verify_plan(plan, weights_of(model))
    # Exactly the configured rates (one kernel / column / block of rounding at most).
    weights = weights_of(model)
    kernels = np.abs(weights["conv2.weight"]).reshape(-1, 9).sum(1) > 0
    assert kernels.sum() == round(0.4 * kernels.size)
    assert np.count_nonzero(weights["conv3.weight"]) == 0.25 * weights["conv3.weight"].size


def test_plan_before_the_last_prune_is_refused_by_verification():
    schedule = ClickTrainSchedule(prune_start=4, prune_end=12, stages=3, lasso_steps=3, update_every=2)
    model, sparsifier = _run(schedule, steps=6)
    assert not sparsifier.finished
    with pytest.raises(RuntimeError, match="not finished"):
        sparsifier.plan()


def test_group_lasso_shrinks_what_the_hard_prune_removes():
    """With a zero learning rate only the lasso moves the weights: it must empty the planned groups."""
    removed = {}
    for lasso in (0.0, 1.0):
        schedule = ClickTrainSchedule(prune_start=10, prune_end=10, stages=1, lasso_steps=8, update_every=2, lasso=lasso)
        before = {}

        def record(sparsifier):
            if sparsifier.step_count == 10:  # just before the hard prune
                before.update({fqn: p.detach().clone() for fqn, p in sparsifier.originals().items()})

        _, sparsifier = _run(schedule, steps=11, lr=0.0, record=record)
        masks = sparsifier.masks()
        removed[lasso] = {fqn: (before[fqn] * (1 - masks[fqn])).norm().item() for fqn in CONFIG}
    for fqn in CONFIG:
        assert removed[1.0][fqn] < 0.3 * removed[0.0][fqn], fqn


def test_library_is_generated_from_the_importance_or_kept_when_given():
    schedule = ClickTrainSchedule(prune_start=4, prune_end=4, stages=1, lasso_steps=2, update_every=1)
    config = {"conv2.weight": PatternScheme(connectivity=0.5)}
    model, sparsifier = _run(schedule, steps=5, config=config)
    library = sparsifier.plan()["conv2.weight"].library_array()
    importance = sparsifier.importance()["conv2.weight"]
    expected = generate_library(importance, entries=4, library_size=8, keep_centre=True)
    assert np.array_equal(library, expected.numpy())
    magnitude = generate_library(model.conv2.weight.detach() ** 2, entries=4, library_size=8, keep_centre=True)
    assert not np.array_equal(library, magnitude.numpy())
    given = PatternScheme(connectivity=0.5, library=library[::-1])
    _, fixed = _run(schedule, steps=5, config={"conv2.weight": given})
    assert np.array_equal(fixed.plan()["conv2.weight"].library_array(), library[::-1])


def test_ddp_two_ranks_reach_identical_masks(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "OMP_NUM_THREADS": "1"}
    init_file = tmp_path / "init"
    outs = [tmp_path / f"rank{rank}.pt" for rank in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(rank), "2", str(init_file), str(outs[rank])],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in range(2)
    ]
    for rank, proc in enumerate(procs):
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"rank {rank} exited with {proc.returncode}:\n{output}"
    results = [torch.load(out) for out in outs]
    assert results[0]["plan"] == results[1]["plan"]
    for name, tensor in results[0]["weights"].items():
        assert torch.equal(tensor, results[1]["weights"][name]), name
    plan = plan_from_json(results[0]["plan"])
    verify_plan(plan, {name: t.numpy() for name, t in results[0]["weights"].items()})


def test_admm_pulls_weights_onto_the_structure_then_prunes():
    torch.manual_seed(0)
    model = SmallCNN(width=8)
    config = {"conv2.weight": PatternScheme(connectivity=0.5), "conv3.weight": BlockPunchedScheme(sparsity=0.75)}
    sparsifier = ADMMSparsifier(rho=0.5, rho_growth=1.5, update_every=5)
    sparsifier.prepare(model, config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    def distance():
        result = {}
        for fqn, original in sparsifier.originals().items():
            mask, _ = compute_mask(sparsifier.schemes[fqn], original.detach() ** 2)
            result[fqn] = ((original.detach() * (1 - mask)).norm() / original.detach().norm()).item()
        return result

    start = distance()
    for x, y in _batches(40):
        F.cross_entropy(model(x), y).backward()
        sparsifier.step()
        optimizer.step()
        optimizer.zero_grad()
    end = distance()
    for fqn in config:
        assert end[fqn] < 0.5 * start[fqn], (fqn, start[fqn], end[fqn])
    library = sparsifier.schemes["conv2.weight"].library
    sparsifier.hard_prune()
    assert sparsifier.schemes["conv2.weight"].library == library  # fixed since prepare
    sparsifier.squash_mask()
    verify_plan(sparsifier.plan(), weights_of(model))
