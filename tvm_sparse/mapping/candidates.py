"""The schemes a layer may take on a target: dense, pattern + connectivity, block-punched and BSR.

Block shapes follow the kernels: on a CPU a block's rows are filters that share each input load
inside one register tile, so narrow blocks (one input channel, ``8x1``) keep the finest
structure and wide ones (``16x4``) the most reuse; on a GPU a work-group computes a block's rows
together, so blocks are at least a quarter of a subgroup tall.
"""

import math

from tvm_sparse.plan import BlockPunchedScheme, BSRScheme, PatternScheme, kept_count

from schedules.target_info import as_target, target_family

#: Block shapes (filters x input channels) offered per target family.
BLOCK_SHAPES = {
    "x86": ((4, 1), (8, 1), (8, 4), (16, 4)),
    "arm_cpu": ((4, 1), (8, 1), (8, 4), (8, 8)),
    "gpu": ((8, 4), (16, 4), (8, 8)),
}

#: Fractions removed offered for block-punched and BSR candidates.
SPARSITIES = (0.5, 0.75, 0.875)

#: Pattern candidates: (entries, fraction of kernels removed by connectivity pruning).
PATTERNS = ((4, 0.0), (4, 0.5), (4, 0.75), (5, 0.5), (5, 0.75))


def density(scheme):
    """Kept fraction of a layer's weights under ``scheme`` (1.0 for dense, ``None``)."""
    return 1.0 if scheme is None else 1.0 / scheme.compression


def kept_weights(layer, scheme):
    """Weights ``layer`` keeps under ``scheme``, rounded up: a plan whose layers keep these meets
    its compression by the densities its report gives (a pattern's connectivity need not remove
    a whole number of weights)."""
    return math.ceil(layer.parameters * density(scheme) - 1e-9)


def candidates_for(layer, target, blocks=None, sparsities=SPARSITIES, patterns=PATTERNS):
    """The candidates of ``layer`` on ``target``, dense (``None``) first.

    A layer no sparse kernel takes (:meth:`tvm_sparse.mapping.layers.Layer.dense_reason`) has
    only the dense candidate.

    Parameters
    ----------
    layer : tvm_sparse.mapping.layers.Layer
    target : str or tvm.target.Target
    blocks : sequence of (int, int), optional
        Block shapes; default :data:`BLOCK_SHAPES` of the target's family.
    sparsities : sequence of float
    patterns : sequence of (int, float)

    Returns
    -------
    list
        ``None`` (dense), then plan schemes.
    """
    if layer.dense_reason() is not None:
        return [None]
    blocks = BLOCK_SHAPES[target_family(as_target(target))] if blocks is None else blocks
    found = [None]
    if layer.kernel_size == (3, 3):
        found += [PatternScheme(entries=entries, library_size=8, connectivity=removed) for entries, removed in patterns]
    taps = layer.kernel_size[0] * layer.kernel_size[1]
    for block in blocks:
        columns = block[1] * taps
        # the rate a block's whole columns give (a block keeps at least one), each once
        rates = sorted({kept_count(columns, sparsity) for sparsity in sparsities} - {0}, reverse=True)
        found += [BlockPunchedScheme(block=tuple(block), sparsity=round(1.0 - kept / columns, 6)) for kept in rates]
    if layer.kernel_size == (1, 1):
        found += [BSRScheme(block=(4, 4), sparsity=sparsity) for sparsity in sparsities]
    return found
