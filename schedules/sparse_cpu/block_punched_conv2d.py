"""Block-punched convolution kernels (any kernel size) for CPUs, specialised to the constant weights.

The ``bk`` filters of a block keep the same columns, so a filter block of the generated code is a
block row of the format: every input load of a column feeds ``bk`` FMAs. As in
:mod:`schedules.sparse_cpu.pattern_conv2d`: :func:`block_punched_conv2d` returns a PrimFunc.
"""

import numpy as np

from tvm_sparse.formats import BlockPunchedWeight

from ..epilogue import Epilogue
from .compact import CompactEntry
from .entry_point import block_rows_code, build_cpu_kernel


def _column_positions(weight):
    """``(channel, row, col)`` of each stored column of ``weight``, as Python ints."""
    return list(zip(*(part.tolist() for part in weight.column_positions())))


def block_punched_terms(weight):
    """Per filter, its ``(input channel, tap row, tap column, weight)`` terms, block by block."""
    n_filters = weight.shape[0]
    bk = weight.block[0]
    n_cb = weight.grid[1]
    positions = _column_positions(weight)
    terms = {k: [] for k in range(n_filters)}
    for block, (lo, hi) in enumerate(zip(weight.block_ptr[:-1].tolist(), weight.block_ptr[1:].tolist())):
        first = block // n_cb * bk
        for j in range(lo, hi):
            c, r, s = positions[j]
            for row in range(min(bk, n_filters - first)):
                terms[first + row].append((c, r, s, float(weight.values[row, j])))
    return terms


def block_punched_entries(weight, tiles):
    """The compact code's entries of each tile (a block row, or part of one), from the stored arrays.

    Every filter of a block row reads each of its kept columns: one entry per kept column, holding
    the tile's rows of the column's values. The same entries as
    :func:`schedules.sparse_cpu.compact.block_row_entries` of :func:`block_punched_terms`, without a
    tuple per stored weight.
    """
    bk = weight.block[0]
    n_cb = weight.grid[1]
    positions = _column_positions(weight)
    values = weight.values.astype(np.float32)
    entries = []
    for tile in tiles:
        kblock, first = divmod(tile[0], bk)
        # A block row's columns are stored together, channel block by channel block.
        lo, hi = weight.block_ptr[kblock * n_cb], weight.block_ptr[(kblock + 1) * n_cb]
        tile_values = values[first : first + len(tile), lo:hi].T[:, :, None]  # [column, filter, 1]
        entries.append([CompactEntry(c, r, s, 0, w) for (c, r, s), w in zip(positions[lo:hi], tile_values)])
    return entries


#: How the block-punched format feeds the code generators.
BLOCK_PUNCHED_CODE = block_rows_code("block_punched_conv2d", BlockPunchedWeight, block_punched_terms,
                                     block_punched_entries)


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
        As :func:`schedules.sparse_cpu.pattern_conv2d.pattern_conv2d`, which also says what it returns.
    """
    return build_cpu_kernel(BLOCK_PUNCHED_CODE, weight, data_shape, stride=stride, padding=padding,
                            epilogue=epilogue, target=target, config=config, name=name)
