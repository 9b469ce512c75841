"""Read the structure of a constant convolution or linear weight.

A weight is *pattern*-sparse when it is a 3x3 convolution whose kept kernels each keep the taps of one
mask of a small library (empty kernels allowed: connectivity pruning), *block-punched* when, for some
block shape, every block keeps the same kernel positions in all its filters, *unstructured* when it
has zeros in no such order, and *dense* otherwise. The checks are the formats' own ``from_dense``.
"""

from dataclasses import dataclass

import numpy as np

from tvm_sparse.formats import BlockPunchedWeight, FormatError, PatternWeight

#: Block shapes (filters x input channels) tried for block-punched structure; the largest that fits wins.
BLOCK_SHAPES = ((16, 4), (8, 8), (8, 4), (4, 4), (8, 2), (4, 2), (2, 2))


@dataclass(frozen=True)
class WeightStructure:
    """What :func:`analyse_weight` found.

    Attributes
    ----------
    kind : str
        ``"pattern"``, ``"block_punched"``, ``"unstructured"`` or ``"dense"``.
    density : float
        Fraction of non-zero weights.
    detail : str
        A readable description (library size, block shape, removed kernels).
    sparse : PatternWeight or BlockPunchedWeight or None
        The weight in its sparse format, for the kernels.
    """

    kind: str
    density: float
    detail: str
    sparse: object = None


def analyse_weight(weight, block_shapes=BLOCK_SHAPES):
    """Find the sparse structure of a weight.

    Parameters
    ----------
    weight : numpy.ndarray
        ``[K, C, R, S]`` (a convolution) or ``[K, C]`` (a linear layer).
    block_shapes : sequence of (int, int)
        Block shapes to try for block-punched structure.

    Returns
    -------
    WeightStructure
    """
    weight = np.asarray(weight)
    density = float(np.count_nonzero(weight)) / weight.size
    if density == 1.0:
        return WeightStructure("dense", density, "no zero weights")
    if weight.ndim == 4 and weight.shape[2:] == (3, 3):
        try:
            pattern = PatternWeight.from_dense(weight)
        except FormatError:
            pass
        else:
            kernels = weight.shape[0] * weight.shape[1]
            removed = 1.0 - len(pattern.channels) / kernels
            return WeightStructure(
                "pattern", density,
                f"{len(pattern.library)} patterns of {pattern.entries}, "
                f"{removed:.0%} kernels removed", pattern)
    fitting = []
    for block in block_shapes:
        try:
            fitting.append(BlockPunchedWeight.from_dense(weight, block))
        except FormatError:
            continue
    if fitting:
        best = max(fitting, key=lambda candidate: (candidate.block[0] * candidate.block[1], candidate.block))
        return WeightStructure("block_punched", density, f"blocks {best.block[0]}x{best.block[1]}", best)
    return WeightStructure("unstructured", density, "zeros in no pattern or block order")
