"""Pruning of PyTorch models into the structures the compiler accelerates (torch and numpy only).

``torch.ao.pruning``-shaped sparsifiers: ``prepare(model, {tensor_fqn: scheme})``, ``step()``,
``squash_mask()``, then ``plan()`` for the compiler (see :mod:`tvm_sparse.plan` for the schemes).

- :class:`ClickTrainSparsifier`: pruning during training (importance, dynamic patterns, group
  lasso, gradual hard prunes), in the user's own loop and under DistributedDataParallel;
- :class:`MagnitudeSparsifier` and :class:`ADMMSparsifier`: pruning after training;
- :func:`export_pruned`: the pruned model and its verified plan, written side by side.
"""

from .admm import ADMMSparsifier
from .clicktrain import ClickTrainSchedule, ClickTrainSparsifier
from .export import export_pruned, weights_of
from .masks import compute_mask
from .patterns import assign_patterns, generate_library
from .sparsifier import BaseSparsifier, MagnitudeSparsifier

__all__ = [
    "ADMMSparsifier",
    "BaseSparsifier",
    "ClickTrainSchedule",
    "ClickTrainSparsifier",
    "MagnitudeSparsifier",
    "assign_patterns",
    "compute_mask",
    "export_pruned",
    "generate_library",
    "weights_of",
]
