"""The input layouts of the sparse CPU kernels: how the input is copied, padded once, for the tiles to read.

The input is padded once into a scratch buffer laid out ``[N, C, Hp, copies, Wc]``, element ``q``
of copy ``k`` being padded column ``q * stride_w + k``, so that a tap of any stride reads
consecutive addresses. By default there is one copy per stride phase (``Wc`` covers the kernel's
width). With ``config.tap_copies``, one per tap column (``Wc`` is the output width), so that every
vector load starts at a multiple of the vector width: aligned loads, at the price of ``S`` times
the copied input (a load that splits a cache line costs two). With ``config.register_shifts``
there is one copy of the unpadded columns (whole aligned vectors, zero past the input) and a tap
column is a shift of the row's vectors in registers, zero filled: aligned loads from a third of
the tap copies' input, for register tiles that span the whole row. With ``config.im2col`` the
output pixels form one row and the input is copied as its im2col matrix (one row per tap
``(r, s)``): maps narrower than a vector then fill whole vectors. With ``config.private_input``
each parallel task makes its own copy of the rows it reads, inside the parallel loop.
"""

import math

from tvm import tirx
from tvm.tirx.script.builder import ir as T

from ..conv_geometry import DTYPE
from .vectors import as_vector, vector_index


def _copy_row(dst, dst_offset, src, src_offset, src_step, count, lanes):
    """Copy ``count`` elements (source elements ``src_step`` apart) in vector chunks; static tail.

    With a step, every chunk but the last loads the ``lanes * src_step`` consecutive elements it
    spans and keeps every ``src_step``-th one by a shuffle: LLVM builds a strided load from one
    scalar load and insert per element. The last chunk reads no element past the last one it keeps.
    """
    chunks, tail = divmod(count, lanes)
    contiguous = max(chunks - 1, 0) if src_step > 1 and lanes > 1 else 0
    if contiguous:
        with T.serial(0, contiguous) as i:
            span = src[tirx.Ramp(src_offset + i * lanes * src_step, 1, lanes * src_step)]
            T.buffer_store(dst, tirx.Shuffle([span], [k * src_step for k in range(lanes)]),
                           [vector_index(dst_offset + i * lanes, lanes)])
    if chunks > contiguous:
        with T.serial(contiguous, chunks) as i:
            T.buffer_store(dst, src[tirx.Ramp(src_offset + i * lanes * src_step, src_step, lanes)], [vector_index(dst_offset + i * lanes, lanes)])
    if tail:
        start = chunks * lanes
        T.buffer_store(
            dst,
            src[tirx.Ramp(src_offset + start * src_step, src_step, tail) if tail > 1 else src_offset + start * src_step],
            [vector_index(dst_offset + start, tail)],
        )


def _zero_row(dst, dst_offset, count, lanes):
    """Store ``count`` zeros in vector chunks."""
    zero = tirx.const(0.0, DTYPE)
    chunks, tail = divmod(count, lanes)
    if chunks:
        with T.serial(0, chunks) as i:
            T.buffer_store(dst, as_vector(zero, lanes), [vector_index(dst_offset + i * lanes, lanes)])
    if tail:
        T.buffer_store(dst, as_vector(zero, tail), [vector_index(dst_offset + chunks * lanes, tail)])


def shifts_fit(geometry, tile_width):
    """Whether register shifts can make every tap column of a layer from tiles ``tile_width`` wide:
    stride 1 along the width, and one tile holding the whole input row and output row (shifts fill
    zeros past the tile, so no input column may lie there)."""
    return geometry.stride[1] == 1 and max(geometry.width, geometry.out_width) <= tile_width


class Layout:
    """Sizes of the padded input and the (possibly padded) output the kernel computes.

    ``valid_h x valid_w`` is the output the kernel must produce (``1 x OH*OW`` for ``im2col``),
    ``out_h x out_w`` the one it computes, in whole register tiles. The tasks split an image's
    register tiles into ``row_blocks`` x ``column_blocks`` blocks (``row_tiles`` x ``column_tiles``
    tiles each, fewer in the last ones).

    The input is copied (``copies_input``) unless it already has the layout. The copy is shared by
    all tasks, or, with ``config.private_input``, each task copies its own image's rows: its row
    tiles' rows plus the kernel's halo (``in_h`` rows per channel). Private copies are what makes
    two threads faster than one on short layers: a core that reads input lines the other core
    wrote a moment earlier waits for them.
    """

    def __init__(self, geometry, config):
        g, cfg = geometry, config
        self.im2col = cfg.im2col
        self.valid_h, self.valid_w = (1, g.out_height * g.out_width) if cfg.im2col else (g.out_height, g.out_width)
        self.tile_width = cfg.lanes * cfg.vectors
        self.out_w = math.ceil(self.valid_w / self.tile_width) * self.tile_width
        self.out_h = math.ceil(self.valid_h / cfg.rows) * cfg.rows
        self.direct = (self.out_h, self.out_w) == (self.valid_h, self.valid_w)
        # im2col: "row" r of a channel holds its taps (r, s), the only row a tile reads.
        self.in_h = g.kernel[0] if cfg.im2col else (self.out_h - 1) * g.stride[0] + g.kernel[0]
        sw = g.stride[1]
        # Element q of copy k is padded column q * sw + k (im2col: tap column k at pixel q;
        # register shifts: one copy, element q is input column q).
        self.tap_copies = cfg.tap_copies or cfg.im2col
        self.register_shifts = cfg.register_shifts
        if self.register_shifts and not shifts_fit(g, self.tile_width):
            raise ValueError(f"register_shifts needs stride 1 along the width and a register tile as wide as the "
                             f"input and output rows: stride {sw}, a tile of {self.tile_width} columns for "
                             f"{g.width} input and {self.valid_w} output columns")
        self.copies = g.kernel[1] if self.tap_copies else 1 if self.register_shifts else sw
        self.copy_w = self.out_w if self.tap_copies or self.register_shifts else self.out_w + (g.kernel[1] - 1) // sw
        self.left = g.padding[1]
        self.row_stride = self.copies * self.copy_w
        self.row_tiles_total = self.out_h // cfg.rows
        self.row_blocks = math.ceil(self.row_tiles_total / cfg.row_tiles)
        self.column_tiles_total = self.out_w // self.tile_width
        self.column_tiles = math.ceil(self.column_tiles_total / min(cfg.column_blocks, self.column_tiles_total))
        self.column_blocks = math.ceil(self.column_tiles_total / self.column_tiles)
        self.stride_w = sw
        self.copies_input = self._needs_copy(g)
        self.private = cfg.private_input and self.copies_input
        if self.private and not cfg.im2col:
            self.in_h = (min(cfg.row_tiles, self.row_tiles_total) * cfg.rows - 1) * g.stride[0] + g.kernel[0]
        self.channel_stride = self.in_h * self.row_stride

    def column_window(self, column_block):
        """``(first, stop)``: the elements of each copy of a row that the tiles of ``column_block`` read."""
        first_tile = column_block * self.column_tiles
        last_tile = min(self.column_tiles_total, first_tile + self.column_tiles)
        return first_tile * self.tile_width, last_tile * self.tile_width + self.copy_w - self.out_w

    def input_offset(self, channel, row, col):
        """Offset of tap column ``col`` of padded row ``row`` of ``channel`` for output column 0
        (register shifts: of the row, which the code shifts by ``col - left``)."""
        if self.register_shifts:
            copy, shift = 0, 0
        else:
            copy, shift = (col, 0) if self.tap_copies else (col % self.stride_w, col // self.stride_w)
        return channel * self.channel_stride + row * self.row_stride + copy * self.copy_w + shift

    def first_column(self, copy):
        """The input column of element 0 of ``copy`` (negative: left padding)."""
        return 0 if self.register_shifts else copy - self.left

    def _needs_copy(self, geometry):
        """Whether the kernel must copy the input: unless it already has the padded layout."""
        g = geometry
        if g.stride != (1, 1) or g.padding != (0, 0, 0, 0):
            return True
        if self.im2col:  # a 1x1 kernel's im2col matrix is the input itself
            return not (g.kernel == (1, 1) and self.out_w == g.height * g.width)
        return (self.in_h, self.row_stride) != (g.height, g.width)


def emit_padding(geometry, layout, data, padded, lanes, image=None, first_row=0, window=None):
    """Copy the input into the zero-padded scratch buffer in the layout's copies.

    Without ``image``: every image, parallel over images x channels. With ``image`` (a private
    copy): that image's channels in a serial loop, from padded row ``first_row`` on, and only
    the elements ``window = (first, stop)`` of each copy of a row (:meth:`Layout.column_window`;
    None: all of them; an im2col copy writes the output rows that hold them).
    """
    g, lay = geometry, layout
    window = window or (0, lay.copy_w)
    copy_channel = _copy_im2col_channel if lay.im2col else _copy_padded_channel
    if image is None:
        with T.parallel(0, g.batch * g.channels) as nc:
            copy_channel(g, lay, data, padded, lanes, nc * (g.height * g.width), nc * lay.channel_stride, first_row,
                         window)
    else:
        with T.serial(0, g.channels) as c:
            src_plane = (image * g.channels + c) * (g.height * g.width)
            copy_channel(g, lay, data, padded, lanes, src_plane, c * lay.channel_stride, first_row, window)


def _copy_padded_channel(geometry, layout, data, padded, lanes, src_plane, dst_plane, first_row, window):
    """Elements ``window`` of each copy of the ``in_h`` padded rows of one channel from padded row ``first_row``,
    zero outside the input."""
    g, lay = geometry, layout
    top, sw = g.padding[0], g.stride[1]
    first, stop = window
    with T.serial(0, lay.in_h) as i:
        dst_row = dst_plane + i * lay.row_stride
        in_row = first_row + i - top
        with T.If(tirx.all(0 <= in_row, in_row < g.height)):
            with T.Then():
                for s in range(lay.copies):
                    # element q of copy s is input column q*sw + first_column(s)
                    _strided_row(padded, dst_row + s * lay.copy_w + first, stop - first, data,
                                 src_plane + in_row * g.width, lay.first_column(s) + first * sw, sw, g.width, lanes)
            with T.Else():
                for s in range(lay.copies):
                    _zero_row(padded, dst_row + s * lay.copy_w + first, stop - first, lanes)


def _strided_row(dst, dst_offset, count, src, src_row, first_col, step, width, lanes):
    """Store ``count`` elements: element ``q`` is column ``q * step + first_col`` of the source row,
    zero where that column is outside ``[0, width)`` (padding)."""
    lo = max(0, -(first_col // step))  # first q whose column is >= 0
    hi = min(count, (width - 1 - first_col) // step + 1)
    if hi <= lo:
        _zero_row(dst, dst_offset, count, lanes)
        return
    if lo > 0:
        _zero_row(dst, dst_offset, lo, lanes)
    _copy_row(dst, dst_offset + lo, src, src_row + lo * step + first_col, step, hi - lo, lanes)
    if hi < count:
        _zero_row(dst, dst_offset + hi, count - hi, lanes)


def _copy_im2col_channel(geometry, layout, data, im2col, lanes, src_plane, dst_plane, first_row, window):
    """Write one channel's ``im2col`` rows: element ``p`` of tap ``(r, s)`` is padded pixel ``(oh*sh + r, ow*sw + s)``.

    Only the output rows that hold pixels of ``window`` are written. Pixels past ``OH * OW`` (up
    to whole vectors) are zeros; ``first_row`` is always 0 (one row).
    """
    g, lay = geometry, layout
    top, left = g.padding[0], g.padding[1]
    (sh, sw), out_w = g.stride, g.out_width
    pixels = g.out_height * out_w
    first, stop = window
    rows = (first // out_w, min(g.out_height, -(-stop // out_w)))
    for r in range(g.kernel[0]):
        for s in range(g.kernel[1]):
            dst_tap = dst_plane + lay.input_offset(0, r, s)
            with T.serial(*rows) as oh:
                dst = dst_tap + oh * out_w
                in_row = oh * sh + r - top
                with T.If(tirx.all(0 <= in_row, in_row < g.height)):
                    with T.Then():
                        # output column ow reads input column ow*sw + s - left
                        _strided_row(im2col, dst, out_w, data, src_plane + in_row * g.width, s - left, sw, g.width,
                                     lanes)
                    with T.Else():
                        _zero_row(im2col, dst, out_w, lanes)
            if stop > pixels:
                _zero_row(im2col, dst_tap + pixels, stop - pixels, lanes)
