"""Block-punched convolution kernels (any kernel size) for CPUs, specialised to the constant weights.

The ``bk`` filters of a block keep the same columns, so a filter block of the generated code is a
block row of the format: every input load of a column feeds ``bk`` FMAs. As in
:mod:`schedules.pattern_conv2d`: :func:`block_punched_conv2d` returns a PrimFunc.
"""

from tvm_sparse.formats import BlockPunchedWeight

from .epilogue import Epilogue
from .specialized_conv import build_specialized_conv, default_config, make_geometry
from .target_info import as_target, target_family, vector_lanes


def block_punched_terms(weight):
    """Per filter, its ``(input channel, tap row, tap column, weight)`` terms, block by block."""
    n_filters, _, _, kw = weight.shape
    bk = weight.block[0]
    n_kb, n_cb = weight.grid
    taps = weight.shape[2] * kw
    terms = {k: [] for k in range(n_filters)}
    for kb in range(n_kb):
        for cb in range(n_cb):
            columns, tile = weight.tile(kb, cb)
            for j, column in enumerate(columns.tolist()):
                c, tap = divmod(column, taps)
                r, s = divmod(tap, kw)
                for row in range(min(bk, n_filters - kb * bk)):
                    terms[kb * bk + row].append((c, r, s, float(tile[row, j])))
    return terms


def filter_blocks_of(n_filters, block_rows, size):
    """The format's row blocks cut into groups of at most ``size`` filters (register-file limit)."""
    blocks = []
    for start in range(0, n_filters, block_rows):
        rows = list(range(start, min(start + block_rows, n_filters)))
        blocks += [rows[i : i + size] for i in range(0, len(rows), size)]
    return blocks


def block_punched_conv2d(
    weight, data_shape, *, stride=1, padding=0, epilogue=Epilogue(), target=None, config=None, name="block_punched_conv2d"
):
    """A block-punched convolution specialised to ``weight``, as a PrimFunc.

    Parameters
    ----------
    weight : BlockPunchedWeight
    data_shape : tuple of int
        ``(N, C, H, W)``.
    stride, padding, epilogue, target, config, name
        As :func:`schedules.pattern_conv2d.pattern_conv2d`.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``(data, [bias], [residual], out)``.
    """
    if not isinstance(weight, BlockPunchedWeight):
        raise TypeError(f"weight must be a BlockPunchedWeight, got {type(weight).__name__}")
    target = as_target(target)
    if target_family(target) == "gpu":
        raise ValueError("block_punched_conv2d is the CPU kernel; use the OpenCL schedule for GPU targets")
    geometry = make_geometry(data_shape, weight.shape, stride, padding)
    terms = block_punched_terms(weight)
    lanes = vector_lanes(target)
    preferred = min(weight.block[0], 8 if lanes >= 16 else 4)
    config = config or default_config(geometry, lanes, sum(map(len, terms.values())), preferred)
    blocks = filter_blocks_of(weight.shape[0], weight.block[0], config.filters)
    return build_specialized_conv(geometry, blocks, terms, epilogue, config, name)

