"""Command-line options that choose how the one-shot pruning structures the layers, and the pruning they ask for."""

import argparse


def block_shape(text):
    """argparse type: a block shape ``BKxBC`` (filters x input channels), e.g. ``8x4``."""
    try:
        rows, columns = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a block is BKxBC, e.g. 8x4; got {text!r}") from None
    if rows < 1 or columns < 1:
        raise argparse.ArgumentTypeError(f"block sides are positive, got {text!r}")
    return rows, columns


def block_text(block):
    """The ``BKxBC`` text of a block shape: the inverse of :func:`block_shape`."""
    return f"{block[0]}x{block[1]}"


def add_scheme_arguments(parser):
    """Add ``--scheme-3x3`` and ``--block`` (see :func:`tvm_sparse.pruning.one_shot.one_shot_config`)."""
    from tvm_sparse.pruning.one_shot import SCHEMES_3X3  # noqa: PLC0415 - torch only when the parser is built

    parser.add_argument("--scheme-3x3", choices=sorted(SCHEMES_3X3), default="pattern",
                        help="pruning of the 3x3 layers: pattern + connectivity (default) or block-punched, whose "
                             "kept columns are rounded down (8x4 blocks at 8x keep 4 of 36 columns: 9x)")
    parser.add_argument("--block", type=block_shape, default=(8, 4),
                        help="block shape BKxBC of the block-punched layers (default 8x4; 8x8 compresses 3x3 "
                             "layers exactly 8x)")


def add_prune_arguments(parser):
    """Add ``--prune``, ``--compression`` and the scheme arguments (:func:`add_scheme_arguments`) that :func:`prune_as_asked` reads."""
    parser.add_argument("--prune", choices=("none", "magnitude"), default="none",
                        help="prune a built-in model first: 3x3 layers as --scheme-3x3 says, block-punched "
                             "1x1/linear (default none)")
    parser.add_argument("--compression", type=float, default=8.0,
                        help="compression of the 3x3 layers when pruning (default 8)")
    add_scheme_arguments(parser)


def prune_as_asked(model, args, plan=None):
    """Prune ``model`` in place one-shot by magnitude to ``plan``, or as ``--compression``, ``--scheme-3x3`` and ``--block`` say.

    Returns
    -------
    dict
        The plan ``{tensor_fqn: scheme}`` (:func:`tvm_sparse.pruning.one_shot.magnitude_prune`).

    Raises
    ------
    ValueError
        When ``model`` is a ``torch.export`` program (a ``.pt2`` file) rather than a module.
    """
    from tvm_sparse.pruning.one_shot import magnitude_prune, prune_by_plan  # noqa: PLC0415

    if not hasattr(model, "named_modules"):
        raise ValueError("--prune works on built-in models; prune a .pt2 program before exporting it")
    if plan:
        return prune_by_plan(model, plan)
    return magnitude_prune(model, compression=args.compression, scheme_3x3=args.scheme_3x3, block=args.block)


def add_mapping_argument(parser):
    """Add ``--mapping rules|search``: a scheme per layer (:mod:`tvm_sparse.mapping`) instead of the uniform plan."""
    parser.add_argument("--mapping", choices=("rules", "search"),
                        help="choose each layer's scheme by the mapping's rules or by its search over latencies "
                             "measured here (docs/mapping.md); --compression is then the global compression of all "
                             "layers (default: the uniform one-shot plan)")


def mapped_plan(model, example, target, args):
    """The plan ``--mapping`` asks for, at ``--compression`` over all layers (None without ``--mapping``)."""
    if not getattr(args, "mapping", None):
        return None
    from tvm_sparse.mapping.mapper import map_schemes  # noqa: PLC0415

    return map_schemes(model, example, target, args.mapping, compression=args.compression).plan

