"""The literal-weight code generator of the sparse CPU kernels.

The code of a task holds its filters' terms as literals: per (channel block, filter block) and
register tile, straight-line code with one chain of vector FMAs per (filter, row, vector), each
term a broadcast literal weight times a vector load at a literal offset. Loads at the same offset
(filters of the block on the same input channel, rows of the tile on the same input row) are the
same expression, and LLVM loads them once. No index table and no weight buffer is read in the
inner loop; the code size, and LLVM's compile time with it, grows with (number of terms) x
``rows`` x ``vectors`` (:func:`schedules.sparse_cpu.config.estimated_code_size`).
"""

import math

from tvm import tirx
from tvm.tirx.script.builder import ir as T

from ..conv_geometry import DTYPE
from ..epilogue import Epilogue
from .direct_conv import build_direct_conv, when
from .vectors import as_vector


def filter_blocks_of(n_filters, block_rows, size):
    """Row blocks of ``block_rows`` filters cut into groups of at most ``size`` (register-file limit)."""
    blocks = []
    for start in range(0, n_filters, block_rows):
        rows = list(range(start, min(start + block_rows, n_filters)))
        blocks += [rows[i : i + size] for i in range(0, len(rows), size)]
    return blocks


def _channel_blocks_of(terms, filter_id, channel_block):
    """The channel blocks a filter reads; a filter without terms still needs one pass (bias, epilogue)."""
    blocks = sorted({c // channel_block for c, _, _, _ in terms[filter_id]})
    return blocks or [0]


def build_specialized_conv(
    geometry, filter_blocks, terms, epilogue=Epilogue(), config=None, name="sparse_conv2d", param_shapes=None
):
    """Write the specialised PrimFunc.

    Parameters
    ----------
    geometry : ConvGeometry
    filter_blocks : list of list of int
        Filters computed together in one register tile; every filter exactly once.
    terms : dict[int, list of (int, int, int, float)]
        Per filter, ``(input channel, tap row, tap column, weight)``.
    epilogue : Epilogue
    config : SpecializedConvConfig
    name : str
        The PrimFunc's ``global_symbol``.
    param_shapes : tuple or None
        ``(data_shape, out_shape)`` to declare instead of the geometry's, with as many elements
        (a 1x1 convolution runs as one row of ``H * W`` pixels).

    Returns
    -------
    tvm.tirx.PrimFunc
        Parameters ``data [N, C, H, W]``, then ``bias [K]`` and ``residual [N, K, OH, OW]`` when the
        epilogue has them, then ``out [N, K, OH, OW]``.
    """
    g, cfg = geometry, config
    if sorted(f for block in filter_blocks for f in block) != list(range(g.filters)):
        raise ValueError("filter_blocks must hold every filter exactly once")
    n_cblocks = math.ceil(g.channels / cfg.channel_block)
    active = {f: _channel_blocks_of(terms, f, cfg.channel_block) for f in range(g.filters)}
    by_block = {
        f: {cb: [t for t in terms[f] if t[0] // cfg.channel_block == cb] for cb in active[f]} for f in range(g.filters)
    }
    parts = [filter_blocks[i :: cfg.filter_splits] for i in range(cfg.filter_splits)]

    def tile_body(ctx, f, cb, x_base, y_base):
        """The FMA chains of filter ``f`` on channel block ``cb`` for one register tile."""
        blocks = active[f]
        for j in range(cfg.rows):
            for v in range(cfg.vectors):
                y_index = ctx.y_index(y_base, f, j, v)
                value = ctx.initial_value(f) if cb == blocks[0] else ctx.acc[y_index]
                for c, r, s, w in by_block[f][cb]:
                    x = ctx.input_vector(x_base, c, r, s, j, v)
                    value = value + as_vector(tirx.const(w, DTYPE), cfg.lanes) * x
                if cb == blocks[-1]:
                    value = ctx.final_value(value, y_index)
                T.buffer_store(ctx.acc, value, [y_index])

    def emit_task(ctx):
        for part_index, part in enumerate(parts):
            with when(cfg.filter_splits > 1, ctx.part == part_index % ctx.filter_parts):
                for cb in range(n_cblocks):
                    for block in part:
                        users = [f for f in block if cb in active[f]]
                        if users:
                            for x_base, y_base in ctx.tile_loops():
                                for f in users:
                                    tile_body(ctx, f, cb, x_base, y_base)

    return build_direct_conv(g, epilogue, cfg, name, "specialized_conv2d", emit_task, param_shapes)
