"""Pattern-sparse 3x3 convolution kernels for CPUs, specialised to the constant weights.

Two code generators (``config.codegen``, chosen by :func:`schedules.sparse_cpu.space.default_sparse_config`
when no config is given): ``"specialized"`` writes every weight as a literal (small layers);
``"compact"`` writes code per library pattern and reads the kernels from a table parameter
(:mod:`schedules.sparse_cpu.compact`; compile time independent of the non-zeros).

Entry point: :func:`pattern_conv2d` returns a complete (already scheduled) ``tvm.tirx.PrimFunc``.
A Relax pass adds it with ``BlockBuilder.add_func`` and calls it with ``relax.call_tir``; build
with :data:`schedules.sparse_cpu.direct_conv.BUILD_CONFIG` in the ``PassContext`` for a shorter compile.
(``BlockBuilder.call_te`` cannot carry it: the kernel is not a TE compute, and TE's extern
wrapper loses the flat views of its parameters.)

Filters are taken in the format's FKW order (same kept-kernel count and pattern mix together)
and paired into filter blocks so that filters which read the same input channels share their
loads; see :mod:`schedules.sparse_cpu.direct_conv` for the code that is generated.
"""

from tvm_sparse.formats import PatternWeight

from ..epilogue import Epilogue
from ..kernel_table import with_table
from .compact import CompactEntry, build_compact_conv
from .entry_point import FormatCode, build_cpu_kernel


def pattern_terms(weight):
    """Per original filter, its ``(input channel, tap row, tap column, weight)`` terms in FKW order."""
    taps = weight.taps
    terms = {}
    for i, k in enumerate(weight.filter_ids.tolist()):
        lo, hi = weight.indptr[i], weight.indptr[i + 1]
        terms[k] = [
            (int(c), int(r), int(s), float(v))
            for c, p, values in zip(weight.channels[lo:hi], weight.pattern_ids[lo:hi], weight.values[lo:hi])
            for (r, s), v in zip(taps[p].tolist(), values.tolist())
        ]
    return terms


def pair_filters(weight, terms, block_size=2, window=16):
    """Group filters in FKW order into blocks of ``block_size``, greedily joining filters that share inputs.

    A filter is joined with the not-yet-grouped filter among the next ``window`` (in FKW order)
    with which it shares the most ``(channel, tap)`` loads.
    """
    order = weight.filter_ids.tolist()
    reads = {k: {(c, r, s) for c, r, s, _ in terms[k]} for k in order}
    remaining = list(order)
    blocks = []
    while remaining:
        block = [remaining.pop(0)]
        while len(block) < block_size and remaining:
            shared = set.union(*(reads[k] for k in block))
            best = max(range(min(window, len(remaining))), key=lambda i: len(reads[remaining[i]] & shared))
            block.append(remaining.pop(best))
        blocks.append(block)
    return blocks


def pattern_conv2d(
    weight, data_shape, *, stride=1, padding=1, epilogue=Epilogue(), target=None, config=None, name="pattern_conv2d"
):
    """A pattern-sparse 3x3 convolution specialised to ``weight``, as a PrimFunc.

    Parameters
    ----------
    weight : PatternWeight
        The constant weight; its values and pattern offsets become literals of the code.
    data_shape : tuple of int
        The NCHW input shape ``(N, C, H, W)``; any batch, size and channel count.
    stride : int or (int, int)
    padding : int, (pad_h, pad_w) or (top, left, bottom, right)
    epilogue : Epilogue
        Bias, residual, activation fused into the kernel.
    target : tvm.target.Target or dict or None
        A CPU target (``llvm``, x86 or aarch64); it sets the vector width. ``None``: this host.
    config : SpecializedConvConfig or None
        Knobs (tile sizes, blocking, parallel split); ``None`` picks them from the target and shapes.
    name : str
        The PrimFunc's ``global_symbol``.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``(data, [bias], [residual], out)``, output ``[N, K, OH, OW]``, float32. The compact
        variant (``config.codegen == "compact"``, chosen by default for layers too large for
        literal code) takes an int32 ``table`` before ``out``: pass
        :func:`schedules.kernel_table.table_argument` of the function.
    """
    return build_cpu_kernel(PATTERN_CODE, weight, data_shape, stride=stride, padding=padding, epilogue=epilogue,
                            target=target, config=config, name=name)


def compact_pattern_conv2d(weight, geometry, epilogue, config, name, param_shapes=None):
    """The compact kernel: one group of code per library pattern, one filter per tile, in FKW order.

    An entry is a kept kernel: its input channel and the pattern's weights. (One loop for all
    patterns with the tap offsets read from the table instead was slower.)
    """
    tiles, entries = [], []
    for i, k in enumerate(weight.filter_ids.tolist()):
        lo, hi = weight.indptr[i], weight.indptr[i + 1]
        tiles.append([int(k)])
        entries.append([
            CompactEntry(int(c), 0, 0, int(p), values[None, :])
            for c, p, values in zip(weight.channels[lo:hi], weight.pattern_ids[lo:hi], weight.values[lo:hi])
        ])
    groups = [tuple((int(r), int(s)) for r, s in taps) for taps in weight.taps]
    func, table = build_compact_conv(geometry, tiles, groups, entries, epilogue, config, name, param_shapes)
    return with_table(func, table)


#: How the pattern format feeds the code generators: filters paired by shared inputs in FKW order.
PATTERN_CODE = FormatCode("pattern_conv2d", PatternWeight, pattern_terms, pair_filters, compact_pattern_conv2d)

