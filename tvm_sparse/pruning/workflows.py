"""End-to-end recipes: dense training, pruning during training (ClickTrain), pruning after training.

They share one plain training loop (:func:`train`) with an ``after_backward`` hook, which is where a
sparsifier's ``step()`` goes, exactly as in a user's own loop. Each recipe returns a
:class:`PruneResult` with the squashed model, its plan, its test accuracy and its wall time.
"""

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tvm_sparse.plan import BlockPunchedScheme, PatternScheme

from .admm import ADMMSparsifier
from .clicktrain import ClickTrainSchedule, ClickTrainSparsifier
from .sparsifier import MagnitudeSparsifier
from .small_cnn import SmallCNN


@dataclass
class PruneResult:
    """A trained (and possibly pruned) model with its plan, test accuracy (%) and wall time (s)."""

    model: torch.nn.Module
    plan: dict
    accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters shared by every recipe.

    Parameters
    ----------
    epochs : int
        Epochs of dense training (and of a ClickTrain run, which prunes within the same budget).
    finetune_epochs : int
        Epochs of masked fine-tuning after a prune-after-training prune.
    admm_epochs : int
        Epochs of ADMM before its hard prune.
    batch_size : int
    lr : float
        Adam learning rate (fine-tuning uses a tenth of it).
    seed : int
    """

    epochs: int = 12
    finetune_epochs: int = 16
    admm_epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    def steps_per_epoch(self, n_train):
        """Optimizer steps per epoch for ``n_train`` training images."""
        return -(-n_train // self.batch_size)


def train(model, data, epochs, settings, lr=None, after_backward=None):
    """Train with Adam and cross-entropy; ``after_backward()`` runs between backward and the update.

    The batch order comes from a generator seeded by ``settings.seed`` and the epoch, so runs
    repeat exactly on one machine.
    """
    x_train = torch.from_numpy(data.x_train)
    y_train = torch.from_numpy(data.y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr or settings.lr)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(settings.seed * 1000 + epoch))
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            if after_backward is not None:
                after_backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)
    model.eval()
    return model


@torch.no_grad()
def evaluate(model, x, y, batch_size=512):
    """Top-1 accuracy in percent of ``model`` on numpy images ``x`` and labels ``y``."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(torch.from_numpy(x[start : start + batch_size]))
        correct += int((logits.argmax(dim=1).numpy() == y[start : start + batch_size]).sum())
    return 100.0 * correct / len(x)


def new_model(data, seed, architecture=None):
    """A freshly initialised ``architecture`` (a class; None: :class:`SmallCNN`) for ``data`` (seeded)."""
    torch.manual_seed(seed)
    return (architecture or SmallCNN)(in_channels=data.image_shape[0], num_classes=data.num_classes)


def conv3x3_config(model, scheme):
    """``{name.weight: scheme}`` for every 3x3 convolution of ``model``."""
    return {
        f"{name}.weight": scheme
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3)
    }


def pattern_for_compression(compression, entries=4, library_size=8):
    """The pattern + connectivity scheme whose kept 3x3 weights are ``1 / compression`` of the dense ones."""
    connectivity = 1.0 - 9.0 / entries / compression
    if connectivity < 0:
        raise ValueError(f"pattern pruning alone already compresses {9 / entries:.2f}x; {compression}x is below it")
    return PatternScheme(entries=entries, library_size=library_size, connectivity=connectivity)


def block_punched_for_compression(compression, block=(8, 4), kernel_positions=9):
    """The block-punched scheme that keeps at most ``1 / compression`` of each block's columns.

    A block of ``bc`` input channels has ``bc * kernel_positions`` columns. The kept count is
    rounded down, so a layer is compressed at least ``compression`` times: 8x4 blocks of a 3x3
    layer (36 columns) keep 4 columns at 8x, i.e. 9x; 8x8 blocks (72 columns) keep 9, exactly 8x.

    Parameters
    ----------
    compression : float
    block : tuple of int
        ``(bk, bc)``.
    kernel_positions : int
        ``R * S`` of the layers the scheme is for (9 for 3x3).
    """
    columns = block[1] * kernel_positions
    kept = math.floor(columns / compression)
    if kept < 1:
        raise ValueError(f"{block[0]}x{block[1]} blocks have {columns} columns: {compression}x would keep none")
    return BlockPunchedScheme(block=tuple(block), sparsity=1.0 - kept / columns)


def measured_compression(model, names):
    """Dense size over non-zero count, over the tensors ``names`` of ``model``'s state_dict."""
    state = model.state_dict()
    total = sum(state[name].numel() for name in names)
    kept = sum(int(torch.count_nonzero(state[name])) for name in names)
    return total / max(kept, 1)


def _timed(recipe):
    start = time.perf_counter()
    model, plan = recipe()
    return model, plan, time.perf_counter() - start


def train_dense(data, settings, architecture=None):
    """Dense training of a new ``architecture`` for ``settings.epochs``."""
    model, plan, seconds = _timed(lambda: (train(new_model(data, settings.seed, architecture), data, settings.epochs,
                                                 settings), {}))
    return PruneResult(model, plan, evaluate(model, data.x_test, data.y_test), seconds)


def train_with_clicktrain(data, settings, make_config, schedule=None, architecture=None):
    """Train a new ``architecture`` from scratch for ``settings.epochs`` while ClickTrain prunes to ``make_config(model)``."""

    def recipe():
        model = new_model(data, settings.seed, architecture)
        total = settings.epochs * settings.steps_per_epoch(len(data.x_train))
        sparsifier = ClickTrainSparsifier(schedule or ClickTrainSchedule.for_steps(total))
        sparsifier.prepare(model, make_config(model))
        train(model, data, settings.epochs, settings, after_backward=sparsifier.step)
        return sparsifier.squash_mask(), sparsifier.plan()

    model, plan, seconds = _timed(recipe)
    return PruneResult(model, plan, evaluate(model, data.x_test, data.y_test), seconds)


def prune_after_training(data, settings, make_config, method="magnitude", architecture=None):
    """Train a new ``architecture`` dense, then prune (``"magnitude"`` one-shot, or ``"admm"``) and fine-tune with the masks.

    The wall time includes the dense training, as a user starting from scratch pays it.
    """
    if method not in ("magnitude", "admm"):
        raise ValueError(f"method must be 'magnitude' or 'admm', got {method!r}")

    def recipe():
        model = train(new_model(data, settings.seed, architecture), data, settings.epochs, settings)
        config = make_config(model)
        if method == "magnitude":
            sparsifier = MagnitudeSparsifier()
            sparsifier.prepare(model, config)
            sparsifier.step()
        else:
            sparsifier = ADMMSparsifier(update_every=settings.steps_per_epoch(len(data.x_train)))
            sparsifier.prepare(model, config)
            train(model, data, settings.admm_epochs, settings, lr=settings.lr / 10, after_backward=sparsifier.step)
            sparsifier.hard_prune()
        train(model, data, settings.finetune_epochs, settings, lr=settings.lr / 10)
        return sparsifier.squash_mask(), sparsifier.plan()

    model, plan, seconds = _timed(recipe)
    return PruneResult(model, plan, evaluate(model, data.x_test, data.y_test), seconds)

