"""Direct sparse convolution driven by a constant table: code size independent of the non-zeros.

The specialised kernels (:mod:`schedules.sparse_cpu.specialized`) write every weight into the code, so
their compile time grows with the number of non-zeros. Here the code is written once per *group*
of static taps (a pattern of the library; a single tap for block-punched and BSR columns) and the
per-kernel data is read from an int32 table parameter:

- the filters are cut into *tiles* of at most ``config.filters`` filters that share their inputs
  (one filter for patterns; a block row of a block-punched or BSR weight, cut to the register tile);
- an *entry* of a tile is one input position (an input channel, plus the kernel position for a
  block column) and the weights of the tile's filters at the group's taps; the tile's entries are
  sorted by channel block and group;
- the code of one (tile, channel block, group) is a loop over its entries whose trip count is read
  from the table: one offset load and ``filters x taps`` weight loads per entry, feeding
  ``filters x rows x vectors`` vector FMAs per tap, the input vector loaded once for all filters.
  The accumulators are small stack buffers (one per filter and row) indexed by constants, which
  LLVM keeps in registers across the loop;
- per channel block, each output tile runs every filter tile of the task before the next output
  tile, so the tile's input window stays in L1; or, with ``config.filter_tiles_outer`` (one-row
  maps), each filter tile runs over every output tile before the next, so that its table entries
  stay in L1 and its output rows are written in sequence;
- on a one-row map (a 1x1 layer's pixels, an im2col row) an output tile reads a vector or two of
  every kept channel and writes some of every filter: as many streams as channels and filters,
  more than a hardware prefetcher follows. With ``config.prefetch_tiles`` each entry prefetches
  its input, and each store its output and residual, that many tiles ahead along the row;
- with ``config.prefetch_table_bytes`` each entry prefetches the table's weights and offsets that
  far ahead: a layer's table (a megabyte on ResNet-50's last layers) comes from memory at every call.

Everything else (copying the input into its layout, channel blocking, parallel split, epilogue,
cropping) is :func:`schedules.sparse_cpu.direct_conv.build_direct_conv`. Table layout: see
:class:`CompactTable`.
"""

import functools
import operator
from dataclasses import dataclass

import numpy as np
from tvm import tirx
from tvm.tirx.script.builder import ir as T

from ..conv_geometry import DTYPE
from ..epilogue import Epilogue
from ..kernel_table import with_table
from .direct_conv import build_direct_conv
from .layout import Layout
from .vectors import as_vector, vector_index


@dataclass(frozen=True)
class CompactEntry:
    """One input position of a tile: ``weights[f, q]`` multiplies tap ``q`` of the group, shifted by ``(row, col)``.

    ``row`` and ``col`` are a kernel position (block columns, whose group is the single tap
    ``(0, 0)``) or ``0`` (patterns, whose group holds the taps).
    """

    channel: int
    row: int
    col: int
    group: int
    weights: np.ndarray


@dataclass(frozen=True)
class CompactTable:
    """The int32 table of a compact kernel and where its sections start.

    Sections, in order: ``ranges [n_tiles * n_cblocks * n_groups + 1]`` (entries of (tile, channel
    block, group) ``i`` are ``ranges[i]:ranges[i + 1]``), ``filter_ids [n_tiles * filters]`` (the
    tile's filters; past the tile's end: the filter count, never stored), ``offsets [n_entries]``
    (the entry's input offset in the padded layout) and ``weights [n_entries * filters * taps]``
    (float32 bits).
    """

    data: np.ndarray
    filter_ids_at: int
    offsets_at: int
    weights_at: int


def pack_table(geometry, config, tiles, groups, entries):
    """Sort the entries of every tile and pack them into a :class:`CompactTable`.

    Parameters
    ----------
    geometry : ConvGeometry
    config : SpecializedConvConfig
    tiles : list of list of int
        Filters of each tile (at most ``config.filters``), every filter exactly once.
    groups : list of tuple of (int, int)
        The static taps of each group; all groups have the same number of taps.
    entries : list of list of CompactEntry
        Per tile, its entries; ``weights`` is ``[len(tile), taps]``.
    """
    layout = Layout(geometry, config)
    width, taps = config.filters, len(groups[0])
    n_cblocks = -(-geometry.channels // config.channel_block)
    counts = np.zeros((len(tiles), n_cblocks, len(groups)), np.int64)
    offsets, weights = [], []
    filter_ids = np.full((len(tiles), width), geometry.filters, np.int32)
    for t, (tile, tile_entries) in enumerate(zip(tiles, entries)):
        filter_ids[t, : len(tile)] = tile
        for e in sorted(tile_entries, key=lambda e: (e.channel // config.channel_block, e.group, e.channel, e.row, e.col)):
            counts[t, e.channel // config.channel_block, e.group] += 1
            offsets.append(layout.input_offset(e.channel, e.row, e.col))
            tile_weights = np.zeros((width, taps), np.float32)
            tile_weights[: len(tile)] = e.weights
            weights.append(tile_weights)
    ranges = np.concatenate([[0], np.cumsum(counts.ravel())])
    weight_bits = np.asarray(weights, np.float32).reshape(-1).view(np.int32)
    sections = [ranges.astype(np.int32), filter_ids.ravel(), np.asarray(offsets, np.int32), weight_bits]
    starts = np.cumsum([0] + [len(s) for s in sections])
    if starts[-1] >= 2**31 or (offsets and max(offsets) >= 2**31):
        raise ValueError("the layer is too large for an int32 table")
    return CompactTable(np.concatenate(sections).astype(np.int32), int(starts[1]), int(starts[2]), int(starts[3]))


def build_compact_conv(geometry, tiles, groups, entries, epilogue=Epilogue(), config=None, name="sparse_conv2d",
                       param_shapes=None):
    """Write the compact PrimFunc and its table.

    Parameters
    ----------
    geometry : ConvGeometry
    tiles, groups, entries
        As :func:`pack_table`.
    epilogue : Epilogue
    config : SpecializedConvConfig
    name : str
    param_shapes : tuple or None
        As :func:`schedules.sparse_cpu.direct_conv.build_direct_conv`.

    Returns
    -------
    prim_func : tvm.tirx.PrimFunc
        Parameters ``data``, ``[bias]``, ``[residual]``, ``table`` (int32), ``out``.
    table : numpy.ndarray
        The int32 value to pass as ``table``.
    """
    g, cfg = geometry, config
    if sorted(f for tile in tiles for f in tile) != list(range(g.filters)):
        raise ValueError("tiles must hold every filter exactly once")
    if max(map(len, tiles)) > cfg.filters:
        raise ValueError(f"a tile has more than config.filters={cfg.filters} filters")
    if cfg.register_shifts and any(e.col for tile_entries in entries for e in tile_entries):
        raise ValueError("register_shifts shifts by the code's tap columns; entries with a kernel column of "
                         "their own (block columns) need another input layout")
    table = pack_table(g, cfg, tiles, groups, entries)
    width, n_taps, n_groups = cfg.filters, len(groups[0]), len(groups)
    n_cblocks = -(-g.channels // cfg.channel_block)
    lanes, rows, vectors = cfg.lanes, cfg.rows, cfg.vectors

    # A tile with fewer accumulators than config.fma_chains keeps several sets of sums, the taps
    # of an entry going to the sets in turn, so that the FMA latency does not bound the loop.
    sets = max(1, min(n_taps, cfg.fma_chains // (width * rows * vectors)))

    # Entries ahead whose weights (and offsets, as many bytes ahead) an entry prefetches, and
    # elements ahead along a one-row map whose input, output and residual it prefetches.
    table_ahead = -(-cfg.prefetch_table_bytes // (4 * width * n_taps))
    row_ahead = cfg.prefetch_tiles * vectors * lanes if Layout(g, cfg).out_h == 1 else 0

    def local(v):
        return vector_index(v * lanes, lanes)

    def tile_code(ctx, cb, tile, x_base, y_base):
        """Sums of one filter tile on one channel block for one register tile of outputs."""
        tab = ctx.table
        filter_ids = [T.Bind(tab[table.filter_ids_at + tile * width + f]) for f in range(width)]
        # Padding slots of a tile read the last filter's bias and sums; they are never stored.
        readable = [tirx.min(fid, g.filters - 1) for fid in filter_ids]
        # One buffer per (filter, row), far under 1 KiB: TVM puts a small "global" buffer on the
        # stack (a "local" one, or one of 1 KiB or more, on the heap), and LLVM keeps it in registers.
        sums = [[[T.alloc_buffer((vectors * lanes,), DTYPE) for _ in range(rows)] for _ in range(width)]
                for _ in range(sets)]
        acc = sums[0]
        for extra in sums[1:]:
            for f in range(width):
                for j in range(rows):
                    for v in range(vectors):
                        T.buffer_store(extra[f][j], as_vector(tirx.const(0.0, DTYPE), lanes), [local(v)])
        with T.If(cb == 0):
            with T.Then():
                for f in range(width):
                    for j in range(rows):
                        for v in range(vectors):
                            T.buffer_store(acc[f][j], ctx.initial_value(readable[f]), [local(v)])
            with T.Else():
                for f in range(width):
                    for j in range(rows):
                        for v in range(vectors):
                            T.buffer_store(acc[f][j], ctx.acc[ctx.y_index(y_base, readable[f], j, v)], [local(v)])
        for group, taps in enumerate(groups):
            at = (tile * n_cblocks + cb) * n_groups + group
            start = T.Bind(tab[at])
            with T.serial(0, tab[at + 1] - start) as step:
                entry = T.Bind(start + step)
                x_entry = T.Bind(x_base + tab[table.offsets_at + entry])
                if table_ahead:
                    prefetch(tab, table.weights_at + (entry + table_ahead) * width * n_taps)
                    prefetch(tab, table.offsets_at + entry + table_ahead * width * n_taps)
                if row_ahead:
                    for v in range(vectors):
                        prefetch(ctx.padded, x_entry + row_ahead + v * lanes)
                for q, (r, s) in enumerate(taps):
                    weights = [
                        T.Bind(tirx.reinterpret(DTYPE, tab[table.weights_at + (entry * width + f) * n_taps + q]))
                        for f in range(width)
                    ]
                    for j in range(rows):
                        for v in range(vectors):
                            x = ctx.input_vector(x_entry, 0, r, s, j, v)
                            for f in range(width):
                                i, chain = local(v), sums[q % sets][f][j]
                                T.buffer_store(chain, chain[i] + as_vector(weights[f], lanes) * x, [i])
        for f in range(width):
            with T.If(filter_ids[f] < g.filters):
                with T.Then():
                    for j in range(rows):
                        for v in range(vectors):
                            y_index = ctx.y_index(y_base, filter_ids[f], j, v)
                            if row_ahead:
                                y_next = ctx.y_element(y_base, filter_ids[f], j, v) + row_ahead
                                prefetch(ctx.acc, y_next, write=True)
                                if ctx.residual is not None:
                                    prefetch(ctx.residual, y_next)
                            value = functools.reduce(operator.add, (part[f][j][local(v)] for part in sums))
                            if ctx.layout.direct:
                                value = tirx.Select(cb == n_cblocks - 1, ctx.final_value(value, y_index), value)
                            T.buffer_store(ctx.acc, value, [y_index])

    def emit_task(ctx):
        # Channel blocks outermost (the input slab stays in L1), then the output tiles, then every
        # filter tile of the task's part: the input tile is reused by all filters while hot (the
        # specialised kernel's order, filter tiles outside, is slower on maps of several rows;
        # docs/sparse-kernels.md), or on request the filter tiles outside.
        parts = ctx.filter_parts
        task_tiles = (len(tiles) - ctx.part + parts - 1) // parts
        with T.serial(0, n_cblocks) as cb:
            if cfg.filter_tiles_outer:
                with T.serial(0, task_tiles) as tile_step:
                    tile = T.Bind(ctx.part + tile_step * parts)
                    for x_base, y_base in ctx.tile_loops():
                        tile_code(ctx, cb, tile, x_base, y_base)
            else:
                for x_base, y_base in ctx.tile_loops():
                    with T.serial(0, task_tiles) as tile_step:
                        tile_code(ctx, cb, T.Bind(ctx.part + tile_step * parts), x_base, y_base)

    func = build_direct_conv(g, epilogue, cfg, name, "compact_conv2d", emit_task, param_shapes, len(table.data))
    return func, table.data


def prefetch(buffer, index, write=False):
    """Emit a prefetch of ``buffer[index]``'s cache line into every level (a hint: never faults)."""
    T.evaluate(tirx.call_intrin("void", "tirx.prefetch", tirx.address_of(buffer[index]), int(write), 3, 1))


def block_row_entries(terms, tiles):
    """Per tile, one entry per input position ``(channel, row, col)`` any of its filters reads.

    The filters of a tile (a block row, or part of one) share their positions, so an entry holds
    the weights of all of them (zero where a filter does not read the position).
    """
    entries = []
    for tile in tiles:
        positions = {}
        for slot, f in enumerate(tile):
            for c, r, s, w in terms[f]:
                positions.setdefault((c, r, s), np.zeros((len(tile), 1), np.float32))[slot, 0] = w
        entries.append([CompactEntry(c, r, s, 0, w) for (c, r, s), w in positions.items()])
    return entries


def build_block_rows_compact(geometry, tiles, entries, epilogue, config, name, param_shapes=None):
    """The compact kernel of a format whose tiles are block rows (or parts of one); with its table attached.

    ``tiles`` and ``entries`` are as in :func:`pack_table`, all of one group: the single tap ``(0, 0)``.
    """
    func, table = build_compact_conv(geometry, tiles, [((0, 0),)], entries, epilogue, config, name, param_shapes)
    return with_table(func, table)
