"""Pattern libraries for 3x3 kernels: generated from the weights (PatDNN style) and assigned per kernel.

A pattern library is a ``[P, 3, 3]`` 0/1 tensor. PatDNN builds it from the model itself: take each
kernel's ``entries`` most important positions, count how often each such shape occurs, and keep the
``P`` most frequent shapes. Each kernel then gets the library pattern that keeps the most of its
importance.
"""

import torch

from tvm_sparse.plan import candidate_patterns


def generate_library(importance, entries, library_size, keep_centre):
    """The ``library_size`` most frequent top-``entries`` shapes of the kernels' importance.

    Parameters
    ----------
    importance : torch.Tensor
        ``[..., 3, 3]`` non-negative scores, one 3x3 kernel per leading index (for example ``W**2``,
        or ClickTrain's accumulated ``(W * dL/dW)**2``).
    entries : int
        Positions kept per pattern.
    library_size : int
        Patterns in the library.
    keep_centre : bool
        Whether every pattern keeps the centre.

    Returns
    -------
    torch.Tensor
        ``[library_size, 3, 3]`` float 0/1 masks, most frequent first. Kernels with zero importance
        (already removed) do not vote; when fewer distinct shapes occur than ``library_size``, the
        library is filled with the remaining candidates that keep the most total importance.
    """
    kernels = importance.detach().reshape(-1, 9).float()
    kernels = kernels[kernels.sum(dim=1) > 0]
    candidates = torch.from_numpy(candidate_patterns(entries, keep_centre)).reshape(-1, 9).float()
    kept_importance = kernels @ candidates.T  # [n_kernels, n_candidates]
    if len(kernels):
        votes = torch.bincount(kept_importance.argmax(dim=1), minlength=len(candidates)).double()
    else:
        votes = torch.zeros(len(candidates), dtype=torch.float64)
    total = kept_importance.sum(dim=0).double()
    # Rank by votes, then by total kept importance (a strictly smaller tie breaker).
    rank = votes * (total.max() + 1.0) + total
    chosen = torch.argsort(rank, descending=True, stable=True)[:library_size]
    return candidates[chosen].reshape(-1, 3, 3)


def assign_patterns(importance, library):
    """For each kernel, the library pattern that keeps the most importance.

    Parameters
    ----------
    importance : torch.Tensor
        ``[K, C, 3, 3]`` non-negative scores.
    library : torch.Tensor
        ``[P, 3, 3]`` 0/1 masks.

    Returns
    -------
    pattern_ids : torch.Tensor
        ``[K, C]`` int64 index into ``library``.
    kept_importance : torch.Tensor
        ``[K, C]`` the importance each kernel keeps under its pattern.
    """
    flat = library.reshape(len(library), 9).to(importance.dtype)
    scores = importance.reshape(*importance.shape[:2], 9) @ flat.T  # [K, C, P]
    kept_importance, pattern_ids = scores.max(dim=2)
    return pattern_ids, kept_importance
