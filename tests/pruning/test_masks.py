"""Masks have exactly the promised structure and rate, and keep the most importance."""

import itertools

import numpy as np
import pytest
import torch

from tvm_sparse.plan import (
    BlockPunchedScheme,
    BSRScheme,
    FilterScheme,
    PatternScheme,
    UnstructuredScheme,
    candidate_patterns,
    kept_count,
    verify_plan,
)
from tvm_sparse.pruning.masks import compute_mask
from tvm_sparse.pruning.patterns import assign_patterns, generate_library

CONV_SHAPES = [(16, 8, 3, 3), (10, 6, 3, 3), (7, 3, 3, 3), (32, 1, 3, 3), (9, 13, 3, 3)]


def _importance(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) ** 2


@pytest.mark.parametrize("shape", CONV_SHAPES)
@pytest.mark.parametrize("entries, library_size, keep_centre", [(4, 8, True), (5, 4, False), (4, 12, False), (5, 6, True)])
@pytest.mark.parametrize("connectivity", [0.0, 0.5, 0.72])
def test_pattern_mask_structure(shape, entries, library_size, keep_centre, connectivity):
    scheme = PatternScheme(entries=entries, library_size=library_size, keep_centre=keep_centre, connectivity=connectivity)
    mask, used = compute_mask(scheme, _importance(shape, seed=sum(shape)))
    library = used.library_array().reshape(-1, 9)
    assert len({p.tobytes() for p in library}) == library_size
    assert (library.sum(axis=1) == entries).all()
    if keep_centre:
        assert library[:, 4].all()
    kernels = mask.numpy().reshape(-1, 9).astype(np.uint8)
    kept = kernels.any(axis=1)
    # Every kernel is empty or exactly one library pattern; the number of kept kernels is the rate's.
    assert all((kernel == library).all(axis=1).any() for kernel in kernels[kept])
    assert kept.sum() == kept_count(len(kernels), connectivity)
    verify_plan({"w": used}, {"w": mask.numpy() * np.random.default_rng(0).uniform(1, 2, shape)})


def test_pattern_choice_keeps_the_most_importance():
    importance = _importance((6, 5, 3, 3), seed=3)
    library = torch.from_numpy(candidate_patterns(4, True)[:8]).float()
    ids, kept = assign_patterns(importance, library)
    for k, c in itertools.product(range(6), range(5)):
        scores = [(importance[k, c] * pattern).sum().item() for pattern in library]
        assert ids[k, c].item() == int(np.argmax(scores))
        assert kept[k, c].item() == pytest.approx(max(scores))


def test_connectivity_removes_the_least_important_kernels():
    scheme = PatternScheme(library=candidate_patterns(4, True)[:8], connectivity=0.5)
    importance = _importance((4, 4, 3, 3), seed=4)
    mask, _ = compute_mask(scheme, importance)
    _, kept_importance = assign_patterns(importance, torch.from_numpy(scheme.library_array()).float())
    kept = mask.reshape(16, 9).any(dim=1)
    assert kept_importance.reshape(-1)[kept].min() >= kept_importance.reshape(-1)[~kept].max()


def test_library_generation_finds_the_shapes_the_kernels_use():
    rng = np.random.default_rng(0)
    candidates = candidate_patterns(4, True)
    used = candidates[[3, 17, 40]]
    # Kernels strong on one of three shapes (more often on the first), weak noise elsewhere.
    ids = rng.choice(3, size=(20, 10), p=[0.5, 0.3, 0.2])
    weights = used[ids] * rng.uniform(1.0, 2.0, (20, 10, 3, 3)) + rng.uniform(0, 0.1, (20, 10, 3, 3))
    library = generate_library(torch.from_numpy(weights**2), entries=4, library_size=4, keep_centre=True).numpy()
    assert np.array_equal(library[:3], used[[0, 1, 2]])
    assert not any(np.array_equal(library[3], pattern) for pattern in used)


def test_library_generation_ignores_removed_kernels_and_fills_up():
    importance = torch.zeros(4, 4, 3, 3)
    importance[0, 0] = torch.from_numpy(candidate_patterns(4, False)[7]).float()
    library = generate_library(importance, entries=4, library_size=6, keep_centre=False)
    assert library.shape == (6, 3, 3)
    assert torch.equal(library[0], importance[0, 0])
    assert len({tuple(p.flatten().tolist()) for p in library}) == 6


@pytest.mark.parametrize("shape", CONV_SHAPES + [(24, 20), (8, 4, 1, 1), (12, 5, 5, 5)])
@pytest.mark.parametrize("block", [(8, 4), (4, 2), (3, 5)])
@pytest.mark.parametrize("sparsity", [0.5, 0.875])
def test_block_punched_mask_structure(shape, block, sparsity):
    scheme = BlockPunchedScheme(block=block, sparsity=sparsity)
    importance = _importance(shape, seed=7)
    mask, _ = compute_mask(scheme, importance)
    matrix = mask.reshape(shape[0], shape[1], -1).numpy()
    taps = matrix.shape[2]
    bk, bc = block
    for k0, c0 in itertools.product(range(0, shape[0], bk), range(0, shape[1], bc)):
        tile = matrix[k0 : k0 + bk, c0 : c0 + bc].reshape(min(bk, shape[0] - k0), -1)
        assert (tile == tile[:1]).all(), "the same columns are kept in every row of a block"
        assert tile[0].sum() == kept_count(min(bc, shape[1] - c0) * taps, sparsity)
        # The kept columns hold the most importance of the block.
        scores = importance.reshape(shape[0], shape[1], -1)[k0 : k0 + bk, c0 : c0 + bc].reshape(tile.shape).sum(0)
        kept = torch.from_numpy(tile[0] > 0)
        if kept.any() and (~kept).any():
            assert scores[kept].min() >= scores[~kept].max()
    verify_plan({"w": scheme}, {"w": mask.numpy()})


@pytest.mark.parametrize("shape", [(24, 20), (10, 18, 1, 1), (7, 9)])
@pytest.mark.parametrize("block", [(4, 4), (1, 4), (2, 3)])
def test_bsr_mask_structure(shape, block):
    scheme = BSRScheme(block=block, sparsity=0.75)
    mask, _ = compute_mask(scheme, _importance(shape, seed=11))
    matrix = mask.reshape(shape[:2]).numpy()
    bh, bw = block
    grid = (-(-shape[0] // bh), -(-shape[1] // bw))
    kept_blocks = 0
    for i, j in itertools.product(range(grid[0]), range(grid[1])):
        tile = matrix[i * bh : (i + 1) * bh, j * bw : (j + 1) * bw]
        assert tile.min() == tile.max(), "a BSR block is kept or removed as a whole"
        kept_blocks += int(tile.max())
    assert kept_blocks == kept_count(grid[0] * grid[1], 0.75)
    verify_plan({"w": scheme}, {"w": mask.numpy()})


def test_unstructured_and_filter_masks():
    importance = _importance((10, 4, 3, 3), seed=5)
    mask, _ = compute_mask(UnstructuredScheme(sparsity=0.9), importance)
    assert mask.sum() == kept_count(360, 0.9)
    assert importance[mask > 0].min() >= importance[mask == 0].max()
    mask, _ = compute_mask(FilterScheme(sparsity=0.3), importance)
    filters = mask.reshape(10, -1)
    assert ((filters.min(1).values == filters.max(1).values)).all()
    assert filters[:, 0].sum() == kept_count(10, 0.3)
    scores = importance.reshape(10, -1).sum(1)
    assert scores[filters[:, 0] > 0].min() >= scores[filters[:, 0] == 0].max()
