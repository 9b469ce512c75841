"""Random weights with a given sparse structure, for tests and kernel benchmarks (numpy only)."""

from itertools import combinations

import numpy as np


def pattern_library(n_patterns=8, entries=4, rng=None):
    """A library ``[P, 3, 3]`` of distinct masks that keep the centre tap plus ``entries - 1`` others.

    Parameters
    ----------
    n_patterns : int
    entries : int
    rng : numpy.random.Generator or None
        Picks the masks; ``None`` takes the first ones in lexicographic order.
    """
    candidates = [c for c in combinations(range(9), entries) if 4 in c]
    if n_patterns > len(candidates):
        raise ValueError(f"there are only {len(candidates)} {entries}-entry masks that keep the centre")
    chosen = sorted(rng.choice(len(candidates), n_patterns, replace=False)) if rng is not None else range(n_patterns)
    library = np.zeros((n_patterns, 9), dtype=np.uint8)
    for p, index in enumerate(chosen):
        library[p, list(candidates[index])] = 1
    return library.reshape(n_patterns, 3, 3)


def pattern_pruned(rng, n_filters, n_channels, library, kernel_density=0.28, dtype=np.float32):
    """A dense ``[K, C, 3, 3]`` weight whose kept kernels follow ``library``.

    ``kernel_density`` is the fraction of kernels kept by connectivity pruning (0.28 with 4-entry
    patterns is 8x compression). Every kept weight is non-zero.
    """
    values = rng.uniform(0.1, 1.0, (n_filters, n_channels, 3, 3)) * rng.choice([-1.0, 1.0], (n_filters, n_channels, 3, 3))
    masks = np.asarray(library)[rng.integers(0, len(library), (n_filters, n_channels))]
    kept = rng.random((n_filters, n_channels)) < kernel_density
    return (values * masks * kept[:, :, None, None]).astype(dtype)


def block_punched(rng, shape, block=(8, 4), density=0.25, dtype=np.float32):
    """A dense ``[K, C, R, S]`` weight in which each block keeps a random ``density`` of its columns."""
    n_filters, n_channels, kh, kw = shape
    bk, bc = block
    weight = rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
    gemm = weight.reshape(n_filters, -1)
    width = bc * kh * kw
    for k0 in range(0, n_filters, bk):
        for c0 in range(0, n_channels * kh * kw, width):
            columns = np.arange(c0, min(c0 + width, gemm.shape[1]))
            pruned = columns[rng.random(len(columns)) >= density]
            gemm[k0 : k0 + bk, pruned] = 0
    return gemm.reshape(shape).astype(dtype)


def block_sparse(rng, shape, block=(8, 4), density=0.1, dtype=np.float32):
    """A dense ``[K, C]`` (or ``[K, C, 1, 1]``) weight keeping a random ``density`` of its ``bh x bw`` blocks."""
    n_rows, n_cols = shape[:2]
    bh, bw = block
    kept = rng.random((-(-n_rows // bh), -(-n_cols // bw))) < density
    mask = np.kron(kept, np.ones((bh, bw)))[:n_rows, :n_cols]
    weight = rng.uniform(0.1, 1.0, (n_rows, n_cols)) * rng.choice([-1.0, 1.0], (n_rows, n_cols)) * mask
    return weight.reshape(shape).astype(dtype)
