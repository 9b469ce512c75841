"""Masks with a scheme's exact structure, chosen to keep the most importance.

Every function takes non-negative importance scores shaped like the weight and returns a 0/1 mask
of the same shape and dtype. The units a scheme removes (kernels, block columns, blocks, weights,
filters) are ranked by the importance they hold; the lowest are removed, ``kept_count`` of them kept.
"""

import dataclasses

import torch

from tvm_sparse.plan import (
    BlockPunchedScheme,
    BSRScheme,
    FilterScheme,
    PatternScheme,
    SchemeError,
    UnstructuredScheme,
    kept_count,
)

from .patterns import assign_patterns, generate_library


def _keep_top(scores, count):
    """A 0/1 tensor shaped like ``scores`` with ones at its ``count`` largest entries."""
    keep = torch.zeros(scores.numel(), dtype=scores.dtype)
    if count > 0:
        keep[torch.topk(scores.reshape(-1), count, sorted=False).indices] = 1
    return keep.reshape(scores.shape)


def check_shape(scheme, shape, fqn):
    """Raise SchemeError naming ``fqn`` when a weight of ``shape`` cannot take ``scheme``."""
    if isinstance(scheme, PatternScheme) and (len(shape) != 4 or tuple(shape[2:]) != (3, 3)):
        raise SchemeError(f"{fqn}: pattern pruning needs a [K, C, 3, 3] weight, got {tuple(shape)}")
    if isinstance(scheme, BlockPunchedScheme) and len(shape) not in (2, 4):
        raise SchemeError(f"{fqn}: block-punched pruning needs a [K, C, R, S] or [K, C] weight, got {tuple(shape)}")
    if isinstance(scheme, BSRScheme) and not (len(shape) == 2 or (len(shape) == 4 and tuple(shape[2:]) == (1, 1))):
        raise SchemeError(f"{fqn}: BSR needs a [K, C] or [K, C, 1, 1] weight, got {tuple(shape)}")
    if len(shape) < 2 and not isinstance(scheme, UnstructuredScheme):
        raise SchemeError(f"{fqn}: {scheme.name} pruning needs a weight with filters, got shape {tuple(shape)}")


def pattern_mask(scheme, importance):
    """Pattern + connectivity mask; generates the library from ``importance`` when the scheme has none.

    Returns
    -------
    mask : torch.Tensor
    scheme : PatternScheme
        ``scheme`` with the library used.
    """
    if scheme.library is None:
        library = generate_library(importance, scheme.entries, scheme.library_size, scheme.keep_centre)
        scheme = dataclasses.replace(scheme, library=library.to(torch.uint8).numpy())
    library = torch.from_numpy(scheme.library_array()).to(importance.dtype)
    pattern_ids, kept_importance = assign_patterns(importance, library)
    kernel_keep = _keep_top(kept_importance, kept_count(kept_importance.numel(), scheme.connectivity))
    return library[pattern_ids] * broadcast_units(scheme, kernel_keep, importance.shape), scheme


def _block_grid(shape, block):
    """``(n_row_blocks, n_col_blocks)`` of a ``[rows, cols, ...]`` shape split into ``block``."""
    return -(-shape[0] // block[0]), -(-shape[1] // block[1])


def _padded(tensor, grid, block):
    """``tensor`` zero-padded along its first two axes to whole blocks."""
    padded = tensor.new_zeros(grid[0] * block[0], grid[1] * block[1], *tensor.shape[2:])
    padded[: tensor.shape[0], : tensor.shape[1]] = tensor
    return padded


def unit_sums(scheme, values):
    """Sum ``values`` over each unit that ``scheme`` keeps or removes as a whole.

    Units: a 3x3 kernel (pattern, whose connectivity removes kernels), a column of a block
    (block-punched; ``[kb, cb, column]``), a block (BSR; ``[row block, column block]``), a filter,
    a single weight (unstructured).
    """
    if isinstance(scheme, PatternScheme):
        return values.sum(dim=(2, 3))
    if isinstance(scheme, BlockPunchedScheme):
        tensor = values if values.dim() == 4 else values[:, :, None, None]
        grid = _block_grid(tensor.shape, scheme.block)
        return _padded(tensor, grid, scheme.block).reshape(grid[0], scheme.block[0], grid[1], -1).sum(dim=1)
    if isinstance(scheme, BSRScheme):
        matrix = values.reshape(values.shape[0], values.shape[1])
        grid = _block_grid(matrix.shape, scheme.block)
        return _padded(matrix, grid, scheme.block).reshape(grid[0], scheme.block[0], grid[1], -1).sum(dim=(1, 3))
    if isinstance(scheme, FilterScheme):
        return values.reshape(values.shape[0], -1).sum(dim=1)
    return values


def broadcast_units(scheme, units, shape):
    """Spread per-unit values (shaped like :func:`unit_sums`'s result) back over a weight of ``shape``."""
    if isinstance(scheme, PatternScheme):
        return units[:, :, None, None].expand(shape).contiguous()
    if isinstance(scheme, (BlockPunchedScheme, BSRScheme)):
        dims = (shape[0], shape[1], *(shape[2:] if isinstance(scheme, BlockPunchedScheme) else ()))
        grid = _block_grid(dims, scheme.block)
        (bh, bw), rest = scheme.block, dims[2:]
        if isinstance(scheme, BlockPunchedScheme):  # units [kb, cb, bc*R*S]: same for all bk rows
            spread = units[:, None].expand(grid[0], bh, grid[1], units.shape[2])
        else:  # units [row block, column block]: same over the whole block
            spread = units[:, None, :, None].expand(grid[0], bh, grid[1], bw)
        full = spread.reshape(grid[0] * bh, grid[1] * bw, *rest)
        return full[: dims[0], : dims[1]].reshape(shape).contiguous()
    if isinstance(scheme, FilterScheme):
        return units.reshape(-1, *([1] * (len(shape) - 1))).expand(shape).contiguous()
    return units


def block_punched_mask(scheme, importance):
    """Block-punched mask: per block of ``bk`` filters x ``bc`` channels, the same columns kept in every row."""
    column_scores = unit_sums(scheme, importance)  # [kb, cb, bc*R*S]
    n_channels = importance.shape[1]
    taps = column_scores.shape[2] // scheme.block[1]
    real_columns = (torch.arange(column_scores.shape[1] * column_scores.shape[2]) < n_channels * taps).reshape(
        column_scores.shape[1:]
    )
    # Padding columns rank below every real one (importance is non-negative).
    column_scores = torch.where(real_columns, column_scores, torch.full_like(column_scores, -1.0))
    ranks = torch.argsort(torch.argsort(column_scores, dim=2, descending=True, stable=True), dim=2)
    keep_per_block = torch.tensor(
        [kept_count(int(n), scheme.sparsity) for n in real_columns.sum(dim=1)], dtype=ranks.dtype
    )
    keep_columns = (ranks < keep_per_block[None, :, None]).to(importance.dtype)
    return broadcast_units(scheme, keep_columns, importance.shape), scheme


def _global_units_mask(scheme, importance):
    """Keep the most important units of the whole tensor (BSR blocks, filters, single weights)."""
    scores = unit_sums(scheme, importance)
    keep = _keep_top(scores, kept_count(scores.numel(), scheme.sparsity))
    return broadcast_units(scheme, keep, importance.shape), scheme


_MASKS = {
    PatternScheme: pattern_mask,
    BlockPunchedScheme: block_punched_mask,
    BSRScheme: _global_units_mask,
    UnstructuredScheme: _global_units_mask,
    FilterScheme: _global_units_mask,
}


def compute_mask(scheme, importance):
    """The mask of ``scheme``'s structure and rate that keeps the most ``importance``.

    Parameters
    ----------
    scheme : PatternScheme, BlockPunchedScheme, BSRScheme, UnstructuredScheme or FilterScheme
    importance : torch.Tensor
        Non-negative scores shaped like the weight.

    Returns
    -------
    mask : torch.Tensor
        0/1, shaped and typed like ``importance``.
    scheme
        The scheme, with the pattern library filled in when it was generated.
    """
    return _MASKS[type(scheme)](scheme, importance.detach())
