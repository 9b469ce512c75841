"""Pruning after training with ADMM (PatDNN style), a baseline for ClickTrain.

Starting from a trained model, ADMM solves ``min loss(W)`` subject to ``W`` having the scheme's
structure by alternating: ordinary training steps on ``loss(W) + rho/2 ||W - Z + U||^2``, the
projection ``Z = proj(W + U)`` onto the structure, and the dual update ``U += W - Z``. Then
:meth:`ADMMSparsifier.hard_prune` fixes the masks to ``proj(W)`` and the model is fine-tuned with
them. A pattern library is generated once, from the trained weights, and kept (as in PatDNN).
"""

import torch

from .masks import compute_mask
from .sparsifier import BaseSparsifier


class ADMMSparsifier(BaseSparsifier):
    """ADMM structured pruning: ``step()`` after ``backward()`` adds the ADMM term's gradient.

    Parameters
    ----------
    rho : float
        Initial penalty weight.
    rho_growth : float
        ``rho`` is multiplied by this at each ADMM update (PatDNN's progressive penalty).
    update_every : int
        Optimizer steps between ADMM updates (``Z``, ``U``, ``rho``), typically one epoch.
    """

    def __init__(self, rho=1e-3, rho_growth=1.5, update_every=100):
        super().__init__()
        if rho <= 0 or rho_growth < 1 or update_every < 1:
            raise ValueError("ADMMSparsifier: rho must be > 0, rho_growth >= 1 and update_every >= 1")
        self.rho, self.rho_growth, self.update_every = rho, rho_growth, update_every
        self.step_count = 0
        self.pruned = False
        self._z, self._u = {}, {}

    def prepare(self, model, config):
        """See :meth:`BaseSparsifier.prepare`; also starts ``Z`` at the projection of the trained weights."""
        super().prepare(model, config)
        with torch.no_grad():
            for fqn, original in self.originals().items():
                self._u[fqn] = torch.zeros_like(original)
                self._z[fqn] = self._project(fqn, original.detach())

    def _project(self, fqn, values):
        mask, used = compute_mask(self.schemes[fqn], values**2)
        self.schemes[fqn] = used  # a generated pattern library stays fixed from now on
        return values * mask

    @torch.no_grad()
    def step(self):
        """Add ``rho (W - Z + U)`` to each gradient; every ``update_every`` steps update ``Z``, ``U`` and ``rho``."""
        if self.pruned:
            return
        for fqn, original in self.originals().items():
            if original.grad is None:
                raise RuntimeError(f"ADMMSparsifier.step(): {fqn} has no gradient; call step() after loss.backward()")
            original.grad.add_(original.detach() - self._z[fqn] + self._u[fqn], alpha=self.rho)
        self.step_count += 1
        if self.step_count % self.update_every == 0:
            for fqn, original in self.originals().items():
                self._z[fqn] = self._project(fqn, original.detach() + self._u[fqn])
                self._u[fqn].add_(original.detach() - self._z[fqn])
            self.rho *= self.rho_growth

    def hard_prune(self):
        """Fix each mask to the structure of ``proj(W)``; later ``step()`` calls do nothing (masked fine-tune)."""
        with torch.no_grad():
            self.apply_importance({fqn: original.detach() ** 2 for fqn, original in self.originals().items()})
        self.pruned = True
