"""The kernel of a format whose block rows of filters share their input columns (block-punched, BSR).

A register tile is a block row of the format, cut to the config's ``filters``: every input load
of a column feeds the tile's filters. The config (given, or :func:`schedules.sparse_space.default_sparse_config`)
picks literal weights (:mod:`schedules.specialized_conv`) or the table-driven compact code
(:mod:`schedules.compact_conv`).
"""

from .compact_conv import build_block_rows_compact
from .specialized_conv import build_specialized_conv, filter_blocks_of
from .sparse_space import default_sparse_config


def build_block_rows_kernel(geometry, terms, block_rows, epilogue, target, config, name, param_shapes=None):
    """The PrimFunc of a block-row format given its per-filter ``(channel, row, col, weight)`` terms.

    ``config`` None picks the variant and knobs for ``target``; a compact kernel carries its table
    (:func:`schedules.compact_conv.table_argument`).
    """
    config = config or default_sparse_config(geometry, target, sum(map(len, terms.values())), block_rows)
    if config.codegen == "compact":
        return build_block_rows_compact(geometry, terms, block_rows, epilogue, config, name, param_shapes)
    blocks = filter_blocks_of(geometry.filters, block_rows, config.filters)
    return build_specialized_conv(geometry, blocks, terms, epilogue, config, name, param_shapes)
