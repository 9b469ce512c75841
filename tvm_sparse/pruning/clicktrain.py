"""Pruning during training, in the style of ClickTrain (Zhang et al., ICS 2021).

Inside the user's own training loop, after ``loss.backward()`` and before ``optimizer.step()``::

    sparsifier = ClickTrainSparsifier(ClickTrainSchedule.for_steps(epochs * len(loader)))
    sparsifier.prepare(model, {"conv2.weight": PatternScheme(connectivity=0.7)})
    model = DistributedDataParallel(model)        # optional, after prepare
    optimizer = torch.optim.Adam(model.parameters())
    for x, y in loader:
        loss_fn(model(x), y).backward()
        sparsifier.step()
        optimizer.step(); optimizer.zero_grad()
    sparsifier.squash_mask()

Each ``step()``:

1. accumulates the importance ``(W * dL/dW)**2`` of every weight (an exponential moving average);
2. in the group-lasso phase before each hard prune, re-plans the masks every ``update_every``
   steps from the importance: the pattern library is regenerated from the kernels' importance
   (dynamic pattern generation), each kernel picks the pattern that keeps the most importance,
   and the kernels (connectivity), block columns, blocks or filters keeping the least are
   planned for removal; the planned-away groups are shrunk by a group-lasso proximal step;
3. at each stage's step, hard-prunes to the plan. Stage rates follow the gradual cubic schedule
   of Zhu & Gupta (2017) up to the configured rate.

Under ``DistributedDataParallel`` the gradients are already averaged when ``step()`` runs and the
weights are equal on every rank, so every rank computes the same masks: no extra communication.
"""

import dataclasses
from dataclasses import dataclass

import torch

from tvm_sparse.plan import PatternScheme, SchemeError

from .masks import broadcast_units, compute_mask, unit_sums
from .sparsifier import BaseSparsifier


@dataclass(frozen=True)
class ClickTrainSchedule:
    """When ClickTrain plans, shrinks and prunes, in optimizer steps.

    Parameters
    ----------
    prune_start : int
        Step of the first hard prune.
    prune_end : int
        Step of the last hard prune; the masks stay fixed afterwards.
    stages : int
        Hard prunes, evenly spaced from ``prune_start`` to ``prune_end``; stage ``i`` of ``n``
        removes ``1 - (1 - i/n)**3`` of the final amount.
    lasso_steps : int
        Steps of group lasso before each hard prune.
    update_every : int
        Steps between re-plans inside a lasso phase.
    lasso : float
        Strength of the group-lasso shrink: 1.0 takes the mean planned-away group to zero over
        one lasso phase if the gradient did not push back.
    importance_decay : float
        Decay of the importance's moving average, in [0, 1).
    """

    prune_start: int
    prune_end: int
    stages: int = 3
    lasso_steps: int = 40
    update_every: int = 10
    lasso: float = 1.0
    importance_decay: float = 0.95

    def __post_init__(self):
        for name in ("prune_start", "prune_end", "stages", "lasso_steps", "update_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name in ("stages", "update_every") else 0):
                raise SchemeError(f"ClickTrainSchedule: {name} must be a non-negative int (stages, update_every >= 1), got {value!r}")
        if self.prune_end < self.prune_start:
            raise SchemeError(f"ClickTrainSchedule: prune_end {self.prune_end} is before prune_start {self.prune_start}")
        if self.prune_start < 1:
            raise SchemeError("ClickTrainSchedule: prune_start must leave at least one step to measure importance")
        if not 0.0 <= self.importance_decay < 1.0 or self.lasso < 0:
            raise SchemeError("ClickTrainSchedule: importance_decay must be in [0, 1) and lasso >= 0")

    @classmethod
    def for_steps(cls, total_steps, stages=3, first=0.2, last=0.6):
        """A schedule for a run of ``total_steps``: hard prunes from ``first`` to ``last`` of the run.

        The rest of the run after the last prune fine-tunes the sparse model; each lasso phase
        takes half the gap between prunes (or a tenth of the run for a single stage).
        """
        start, end = max(1, int(first * total_steps)), int(last * total_steps)
        gap = (end - start) / max(1, stages - 1) if stages > 1 else 0.2 * total_steps
        return cls(
            prune_start=start,
            prune_end=max(start, end),
            stages=stages,
            lasso_steps=max(1, min(start, int(gap / 2))),
            update_every=max(1, int(gap / 8)),
        )

    def prune_steps(self):
        """The step of each hard prune."""
        if self.stages == 1:
            return [self.prune_end]
        spacing = (self.prune_end - self.prune_start) / (self.stages - 1)
        return [self.prune_start + round(i * spacing) for i in range(self.stages)]

    def stage_fraction(self, stage):
        """Fraction of the final removal reached after hard prune ``stage`` (0-based)."""
        return 1.0 - (1.0 - (stage + 1) / self.stages) ** 3


def scheme_at(scheme, fraction):
    """``scheme`` with ``fraction`` of its removal; a pattern keeps its full pattern and scales connectivity.

    A pattern library stays as configured: one given by the user is kept, ``None`` makes every
    plan generate a new one from the importance.
    """
    if isinstance(scheme, PatternScheme):
        return dataclasses.replace(scheme, connectivity=scheme.connectivity * fraction)
    return dataclasses.replace(scheme, sparsity=scheme.sparsity * fraction)


class ClickTrainSparsifier(BaseSparsifier):
    """Prunes while the model trains: importance-driven plans, group lasso, gradual hard prunes.

    Parameters
    ----------
    schedule : ClickTrainSchedule
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self._prune_steps = schedule.prune_steps()
        self._targets = {}
        self._importance = {}
        self._planned = {}
        self._shrink = {}
        self.step_count = 0

    def prepare(self, model, config):
        """See :meth:`BaseSparsifier.prepare`; a pattern scheme without a library gets one per plan."""
        super().prepare(model, config)
        self._targets = dict(config)
        self._importance = {fqn: torch.zeros_like(p.detach()) for fqn, p in self.originals().items()}

    @property
    def finished(self):
        """Whether the last hard prune is done (the masks are final)."""
        return self.step_count > self._prune_steps[-1]

    def importance(self):
        """``{tensor_fqn: accumulated importance}``, the moving average of ``(W * dL/dW)**2``."""
        return dict(self._importance)

    def plan(self):
        """See :meth:`BaseSparsifier.plan`; only once the last hard prune is done."""
        if not self.finished:
            raise RuntimeError(
                f"ClickTrain is not finished: step {self.step_count}, last hard prune at step {self._prune_steps[-1]}"
            )
        return super().plan()

    def _next_stage(self):
        return next(i for i, at in enumerate(self._prune_steps) if at >= self.step_count)

    def _accumulate_importance(self):
        decay = self.schedule.importance_decay
        for fqn, original in self.originals().items():
            if original.grad is None:
                raise RuntimeError(
                    f"ClickTrainSparsifier.step(): {fqn} has no gradient; call step() after "
                    "loss.backward() and before optimizer.step() / zero_grad()"
                )
            importance = (original.detach() * original.grad) ** 2
            self._importance[fqn].mul_(decay).add_(importance, alpha=1.0 - decay)

    def _plan(self, stage):
        """Masks (and schemes) for ``stage`` from the importance accumulated so far."""
        fraction = self.schedule.stage_fraction(stage)
        masks = self.masks()
        for fqn, target in self._targets.items():
            # Weights already pruned keep zero importance, so stages only remove more.
            mask, used = compute_mask(scheme_at(target, fraction), self._importance[fqn] * masks[fqn])
            self._planned[fqn] = (mask, used)

    def _start_shrink(self):
        """Per tensor, the group-lasso threshold that takes the mean planned-away group to zero in one phase."""
        masks = self.masks()
        for fqn, original in self.originals().items():
            mask, scheme = self._planned[fqn]
            norms = unit_sums(scheme, (original.detach() * masks[fqn] * (1 - mask)) ** 2).sqrt()
            removed = norms[norms > 0]
            mean = removed.mean().item() if removed.numel() else 0.0
            self._shrink[fqn] = self.schedule.lasso * mean / self.schedule.lasso_steps

    def _group_lasso(self):
        """Proximal group-lasso step on the planned-away groups: ``w_g *= max(0, 1 - t / ||w_g||)``."""
        masks = self.masks()
        for fqn, original in self.originals().items():
            mask, scheme = self._planned[fqn]
            away = masks[fqn] * (1 - mask)
            norms = broadcast_units(scheme, unit_sums(scheme, (original.detach() * away) ** 2).sqrt(), mask.shape)
            factor = torch.clamp(1.0 - self._shrink[fqn] / norms.clamp_min(1e-12), min=0.0)
            original.mul_(1 - away + away * factor)

    def _hard_prune(self):
        # After the last stage (fraction 1) the schemes are the configured ones, with their library.
        for fqn, (mask, used) in self._planned.items():
            self._masked[fqn].set_mask(mask)
            self.schemes[fqn] = used

    @torch.no_grad()
    def step(self):
        """One optimizer step's worth of ClickTrain; call after ``backward()``, before ``optimizer.step()``."""
        if self.model is None:
            raise RuntimeError("call prepare(model, config) before step()")
        if self.finished:
            self.step_count += 1
            return
        self._accumulate_importance()
        stage = self._next_stage()
        prune_at = self._prune_steps[stage]
        lasso_start = max(prune_at - self.schedule.lasso_steps, self._prune_steps[stage - 1] + 1 if stage else 0)
        if self.step_count == prune_at:
            self._plan(stage)
            self._hard_prune()
        elif self.step_count >= lasso_start:
            since = self.step_count - lasso_start
            if since % self.schedule.update_every == 0:
                self._plan(stage)
                if since == 0:
                    self._start_shrink()
            self._group_lasso()
        self.step_count += 1

