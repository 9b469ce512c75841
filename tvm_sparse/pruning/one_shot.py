"""One-shot magnitude pruning of a whole CNN with the schemes the compiler accelerates.

The quick path of the demo and the benchmarks (no training): 3x3 convolutions get pattern +
connectivity pruning (or block-punched pruning, ``scheme_3x3="block_punched"``), 1x1 convolutions
and linear layers get block-punched pruning; the first convolution (which sees the image's 3
channels) and grouped/depthwise convolutions stay dense.
For accuracy, prune during training (:class:`ClickTrainSparsifier`) or fine-tune after.
"""

import torch

from tvm_sparse.plan import BlockPunchedScheme, UnstructuredScheme

from .sparsifier import MagnitudeSparsifier
from .workflows import block_punched_for_compression, pattern_for_compression

#: Layers with fewer input channels or features stay dense (by default: the first convolution).
MIN_IN_CHANNELS = 8

#: The schemes :func:`one_shot_config` can give the 3x3 convolutions, by name.
SCHEMES_3X3 = {"pattern": lambda compression, block: pattern_for_compression(compression),
               "block_punched": block_punched_for_compression}


def one_shot_config(model, compression=8.0, block=(8, 4), block_sparsity=0.75, min_in_channels=MIN_IN_CHANNELS,
                    scheme_3x3="pattern"):
    """``{tensor_fqn: scheme}`` for the layers :func:`magnitude_prune` prunes.

    Parameters
    ----------
    model : torch.nn.Module
    compression : float
        Dense over kept weights of the 3x3 layers (at least this much for block-punched ones, see
        :func:`~tvm_sparse.pruning.workflows.block_punched_for_compression`).
    block : tuple of int
        Block shape of the block-punched layers.
    block_sparsity : float
        Fraction of each block's columns removed in 1x1 and linear layers. A 1x1 block of ``bc``
        input channels has only ``bc`` columns, so with 8x4 blocks 0.75 keeps one of four (above
        0.875 a block would keep none).
    min_in_channels : int
        Layers with fewer input channels (the first convolution) stay dense.
    scheme_3x3 : str
        ``"pattern"`` (pattern + connectivity) or ``"block_punched"`` (``block`` blocks) for the
        3x3 layers. Block-punched blocks share their input loads across ``bk`` filters, so their
        kernels run faster at the same rate; patterns are the finer structure.
    """
    if scheme_3x3 not in SCHEMES_3X3:
        raise ValueError(f"unknown 3x3 scheme {scheme_3x3!r}; choose one of {sorted(SCHEMES_3X3)}")
    scheme_of_3x3 = SCHEMES_3X3[scheme_3x3](compression, block)
    punched = BlockPunchedScheme(block=block, sparsity=block_sparsity)
    config = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            if module.groups != 1 or module.in_channels < min_in_channels or module.dilation != (1, 1):
                continue
            if module.kernel_size == (3, 3):
                config[f"{name}.weight"] = scheme_of_3x3
            elif module.kernel_size == (1, 1):
                config[f"{name}.weight"] = punched
        elif isinstance(module, torch.nn.Linear) and module.in_features >= min_in_channels:
            config[f"{name}.weight"] = punched
    return config


def one_shot_label(model, compression, scheme_3x3="pattern", block=(8, 4)):
    """``<model>-pruned<N>x[-<scheme><BK>x<BC>]``: a model pruned by :func:`magnitude_prune` with these
    options, as its tuning log folder is named (pattern 3x3 layers: no suffix)."""
    label = f"{model}-pruned{compression:g}x"
    return label if scheme_3x3 == "pattern" else f"{label}-{scheme_3x3}{block[0]}x{block[1]}"


def magnitude_prune(model, **options):
    """Prune ``model`` in place by weight magnitude; returns the plan ``{tensor_fqn: scheme}``.

    Parameters
    ----------
    model : torch.nn.Module
    **options
        As :func:`one_shot_config`.

    Raises
    ------
    ValueError
        If the model has no layer that :func:`one_shot_config` prunes.
    """
    config = one_shot_config(model, **options)
    if not config:
        min_in_channels = options.get("min_in_channels", MIN_IN_CHANNELS)
        raise ValueError(
            "the model has no layer to prune one-shot: it prunes 3x3 and 1x1 convolutions (groups 1, no "
            f"dilation) and linear layers with at least {min_in_channels} input channels or features")
    return prune_by_plan(model, config)


def global_compression(model):
    """Dense over kept weights of all convolutions and linear layers of ``model`` (the dense ones count whole).

    The compression a mapping is asked for (``map_schemes(compression=...)``) is of this kind.
    """
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    return sum(m.weight.numel() for m in layers) / max(1, sum(int(torch.count_nonzero(m.weight)) for m in layers))


def weight_sparsity(model, names):
    """``{tensor_fqn: fraction of zero weights}`` of the named weights of ``model``."""
    parameters = dict(model.named_parameters())
    return {name: 1.0 - float(torch.count_nonzero(parameters[name])) / parameters[name].numel() for name in names}


def magnitude_prune_unstructured(model, sparsity):
    """Prune ``model`` in place by weight magnitude, with no structure; returns the plan.

    The baseline of sparse engines that take unstructured sparsity (DeepSparse): the same
    layers at the same rates as a structured model, ``sparsity=weight_sparsity(pruned, plan)``.

    Parameters
    ----------
    model : torch.nn.Module
    sparsity : dict[str, float]
        Fraction of each named weight to remove (its smallest magnitudes).
    """
    sparsifier = MagnitudeSparsifier()
    sparsifier.prepare(model, {name: UnstructuredScheme(sparsity=rate) for name, rate in sparsity.items()})
    sparsifier.step()
    plan = sparsifier.plan()
    sparsifier.squash_mask()
    return plan


def prune_by_plan(model, plan):
    """Prune ``model`` in place by magnitude to the schemes of ``plan`` (each layer its own, e.g. a mapping's).

    Returns
    -------
    dict
        The plan of what was pruned: pattern schemes carry the library generated from the weights.
    """
    sparsifier = MagnitudeSparsifier()
    sparsifier.prepare(model, plan)
    sparsifier.step()
    pruned = sparsifier.plan()
    sparsifier.squash_mask()
    return pruned
