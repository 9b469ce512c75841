"""Direct sparse convolution specialised to constant weights, for CPUs (x86, ARM).

Every sparse format here reduces to the same thing: per output filter, a list of *terms*
``(input channel, tap row, tap column, weight)``. This module writes a TIR PrimFunc whose code
holds those terms as literals: no index table and no weight buffer is read in the inner loop.

Structure of the generated function (NCHW in and out, float32):

1. The input is padded once into a scratch buffer laid out ``[N, C, Hp, copies, Wc]``, element
   ``q`` of copy ``k`` being padded column ``q * stride_w + k``, so that a tap of any stride reads
   consecutive addresses. By default there is one copy per stride phase (``Wc`` covers the
   kernel's width); with ``config.tap_copies``, one per tap column (``Wc`` is the output width),
   so that every vector load starts at a multiple of the vector width: aligned loads, which
   feed the FMAs faster on AVX-512 (a 16-lane load that splits a cache line costs two), at
   the price of ``S`` times the copied input. With ``config.register_shifts`` there is one copy of
   the unpadded columns (whole aligned vectors, zero past the input) and a tap column is a shift
   of the row's vectors in registers, zero filled: aligned loads from a third of the tap copies'
   input, for register tiles that span the whole row. With ``config.im2col`` the output pixels form one
   row and the input is copied as its im2col matrix (one row per tap ``(r, s)``): maps narrower
   than a vector (4x4 in 16 lanes) then fill whole vectors. With ``config.private_input`` each
   parallel task makes its own copy of the rows it reads, inside the parallel loop (see
   :class:`Layout`).
2. A parallel loop over (image, block of output rows, part of the filter blocks). Inside it, for
   each block of input channels (an L1-sized slab of the padded input) and each *filter block*
   (filters that the format groups together: a pattern pair, a block-punched or BSR row block),
   a loop over register tiles of ``rows`` output rows x ``vectors`` SIMD vectors runs
   straight-line code: one chain of vector FMAs per (filter, row, vector), each term a broadcast
   literal weight times a vector load at a literal offset. Loads at the same offset (filters of
   the block on the same input channel, rows of the tile on the same input row) are the same
   expression, and LLVM loads them once.
3. Partial sums of earlier channel blocks live in the output; the first channel block a filter
   uses starts from the bias, the last applies residual and activation. When the output width or
   height is not a whole number of tiles, the kernel works on a padded output and a final loop
   crops it (and applies residual and activation there).

The knobs (:class:`SpecializedConvConfig`) are the input layout, the register tile, the L1
blocking and the parallel split. Code size grows with (number of terms) x ``rows`` x ``vectors``, and LLVM's compile time
with it: see :func:`estimated_code_size`.
"""

import contextlib
import math
from dataclasses import dataclass

import tvm
from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from .epilogue import Epilogue
from .dense_tiling import vector_registers
from .target_info import as_target, target_family

DTYPE = "float32"


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of a 2-D convolution in NCHW layout.

    ``padding`` is ``(top, left, bottom, right)``; ``stride`` is ``(stride_h, stride_w)``.
    """

    batch: int
    channels: int
    height: int
    width: int
    filters: int
    kernel: tuple
    stride: tuple
    padding: tuple

    @property
    def out_height(self):
        return (self.height + self.padding[0] + self.padding[2] - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_width(self):
        return (self.width + self.padding[1] + self.padding[3] - self.kernel[1]) // self.stride[1] + 1

    @property
    def data_shape(self):
        return (self.batch, self.channels, self.height, self.width)

    @property
    def out_shape(self):
        return (self.batch, self.filters, self.out_height, self.out_width)


def make_geometry(data_shape, weight_shape, stride=1, padding=0):
    """A :class:`ConvGeometry` from an NCHW data shape, a ``[K, C, R, S]`` weight shape and options.

    ``stride`` is an int or a pair; ``padding`` an int, ``(pad_h, pad_w)`` or ``(top, left, bottom, right)``.
    """
    n, c, h, w = (int(d) for d in data_shape)
    k, wc, r, s = (int(d) for d in weight_shape)
    if wc != c:
        raise ValueError(f"the data has {c} channels but the weight expects {wc}")
    stride = (int(stride),) * 2 if isinstance(stride, int) else tuple(int(x) for x in stride)
    if isinstance(padding, int):
        padding = (padding,) * 4
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        padding = padding * 2
    geometry = ConvGeometry(n, c, h, w, k, (r, s), stride, padding)
    if min(stride) < 1 or min(padding) < 0 or geometry.out_height < 1 or geometry.out_width < 1:
        raise ValueError(f"no output for data {data_shape}, kernel {(r, s)}, stride {stride}, padding {padding}")
    return geometry


#: The code generators of the sparse CPU kernels (:attr:`SpecializedConvConfig.codegen`).
CODEGENS = ("specialized", "compact")


@dataclass(frozen=True)
class SpecializedConvConfig:
    """Tunable knobs of the specialised kernel.

    Attributes
    ----------
    lanes : int
        SIMD lanes per vector along the output width.
    vectors : int
        Vectors per output row in one register tile.
    rows : int
        Output rows in one register tile.
    filters : int
        Most filters in one register tile (a format's block may be cut to this size).
    channel_block : int
        Input channels per L1 block.
    row_tiles : int
        Register tiles (of ``rows`` rows) per parallel task.
    filter_splits : int
        Parallel parts the filter blocks are split into (for maps too small to split by rows).
        With ``private_input``, the most parts: a kernel runs only as many as its threads need.
    codegen : str
        ``"specialized"``: weights and offsets are literals of the code (fastest, compile time
        grows with the non-zeros); ``"compact"``: code per pattern / block shape reading the
        weights from a constant table parameter (see :mod:`schedules.compact_conv`).
    tap_copies : bool
        One copy of the input per tap column: aligned vector loads (see the module docstring).
    register_shifts : bool
        One copy of the input's columns; tap columns are register shifts of its vectors (see the
        module docstring). Needs stride 1 along the width and a register tile as wide as the input
        and output rows.
    fma_chains : int
        Independent FMA chains a compact register tile aims for: a tile with fewer accumulators
        keeps several sets of partial sums, an entry's taps going to the sets in turn, so that
        the FMA latency does not bound its loop. With few accumulators the latency bounds it
        (Rocket Lake, 512 channels 4x4: 0.86 against 1.04 ms with two sets); on this Zen 5 (two
        FMAs a cycle, four cycles each) 16 chains beat 8 on 8-accumulator pattern tiles (128
        channels 16x16: 0.0559 against 0.0570 ms; 256 channels 8x8 0.101 against 0.105) and tie
        elsewhere. Defaults take the target's accumulator budget, so AVX2's 16 registers do not spill.
    im2col : bool
        The output pixels as one row, the input copied as its im2col matrix.
    private_input : bool
        Each parallel task copies the input rows it reads into its own scratch, instead of all
        tasks sharing one copy that every core writes a part of: no core then reads lines the
        other one just wrote (see :class:`Layout`).
    """

    lanes: int
    vectors: int = 1
    rows: int = 4
    filters: int = 2
    channel_block: int = 32
    row_tiles: int = 2
    filter_splits: int = 1
    codegen: str = "specialized"
    tap_copies: bool = False
    im2col: bool = False
    private_input: bool = False
    register_shifts: bool = False
    fma_chains: int = 8

    def __post_init__(self):
        for name in ("lanes", "vectors", "rows", "filters", "channel_block", "row_tiles", "filter_splits", "fma_chains"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.im2col and self.rows != 1:
            raise ValueError(f"an im2col kernel computes one row of pixels: rows must be 1, got {self.rows}")
        if self.codegen not in CODEGENS:
            raise ValueError(f"codegen must be one of {CODEGENS}, got {self.codegen!r}")
        if self.register_shifts and (self.tap_copies or self.im2col or self.lanes == 1):
            raise ValueError("register_shifts is an input layout of its own: not with tap_copies or im2col, "
                             "and it needs vectors (lanes > 1)")


#: Default budget of vector FMAs in one generated kernel (see :func:`estimated_code_size`). LLVM
#: and TVM's lowering took ~1 s per 1,000 of them on this 2-core machine under load.
CODE_BUDGET = 40_000

#: Fewest input channels per block chosen by :func:`default_config`.
MIN_CHANNEL_BLOCK = 8


def default_config(
    geometry, lanes, n_terms, filters=2, accumulators=16, l1_bytes=32 * 1024, tasks=4, code_budget=CODE_BUDGET
):
    """Knobs that fit the register file, the L1 cache and a compile-time budget.

    Parameters
    ----------
    geometry : ConvGeometry
    lanes : int
        The target's float32 SIMD width (16 AVX-512, 8 AVX2, 4 NEON).
    n_terms : int
        Terms of all filters; the code holds ``n_terms * rows * vectors`` vector FMAs.
    filters : int
        Preferred filters per register tile; raised when fewer rows fit the code budget.
    accumulators : int
        Vector registers the register tile may use (half the register file: 16 on AVX-512 and
        AArch64, 8 on AVX2); see :func:`accumulators_for`.
    l1_bytes : int
        The part of the L1 data cache the input slab may take.
    tasks : int
        Parallel tasks to aim for (at least the number of cores); filter blocks are split among them.
    code_budget : int
        Most vector FMAs in the code: beyond it, fewer rows per tile (less load reuse, faster compile).
    """
    out_h, out_w = geometry.out_height, geometry.out_width
    # Narrower vectors when the output width would waste more than ~15% of a wide one.
    while lanes > 4 and math.ceil(out_w / lanes) * lanes > 1.15 * out_w:
        lanes //= 2
    # Accumulators: filters x rows x vectors = about half of the register file.
    registers = accumulators
    width_vectors = math.ceil(out_w / lanes)
    vectors = max(1, min(width_vectors, registers // (filters * 2), 4))
    while width_vectors % vectors:
        vectors -= 1
    rows = max(1, min(out_h, registers // (filters * vectors), 4))
    while rows > 1 and n_terms * rows * vectors > code_budget:
        rows -= 1
    while rows > 1 and math.ceil(out_h / rows) * rows > 1.15 * out_h:
        rows -= 1
    filters = max(filters, registers // (rows * vectors))
    # A task runs its share of the code over all rows of an image: the code of a (channel block,
    # filter block) region, far larger than the instruction cache, is then fetched once and run
    # on every row tile. Tasks split the filter blocks instead (measured on 128 channels, 32x32:
    # 1.07 ms against 1.24 ms with 4 row blocks per image).
    row_tiles = math.ceil(out_h / rows)
    filter_splits = max(1, math.ceil(tasks / geometry.batch))
    slab_rows = (row_tiles * rows - 1) * geometry.stride[0] + geometry.kernel[0]
    slab_width = width_vectors * lanes + geometry.kernel[1]
    # An L1-sized input slab, but at least MIN_CHANNEL_BLOCK channels so that a region's FMAs
    # outweigh re-reading its partial sums.
    channel_block = max(MIN_CHANNEL_BLOCK, l1_bytes // (4 * slab_rows * slab_width))
    channel_block = min(geometry.channels, channel_block)
    return SpecializedConvConfig(lanes, vectors, rows, filters, channel_block, row_tiles, filter_splits)


def check_cpu_kernel_args(weight, weight_type, target, kernel_name):
    """Raise unless ``weight`` is a ``weight_type`` and ``target`` a CPU; return the parsed target."""
    if not isinstance(weight, weight_type):
        raise TypeError(f"weight must be a {weight_type.__name__}, got {type(weight).__name__}")
    target = as_target(target)
    if target_family(target) == "gpu":
        raise ValueError(f"{kernel_name} is the CPU kernel; use the OpenCL schedule for GPU targets")
    return target


def filter_blocks_of(n_filters, block_rows, size):
    """Row blocks of ``block_rows`` filters cut into groups of at most ``size`` (register-file limit)."""
    blocks = []
    for start in range(0, n_filters, block_rows):
        rows = list(range(start, min(start + block_rows, n_filters)))
        blocks += [rows[i : i + size] for i in range(0, len(rows), size)]
    return blocks


def accumulators_for(target):
    """Vector accumulators of a register tile on ``target``: half its SIMD registers."""
    return vector_registers(target) // 2


def estimated_code_size(terms, config):
    """Vector FMAs in the generated code: a measure of its compile time."""
    return sum(len(filter_terms) for filter_terms in terms.values()) * config.rows * config.vectors


def as_vector(value, lanes):
    """``value`` broadcast to ``lanes`` lanes (itself for one lane)."""
    return tirx.Broadcast(value, lanes) if lanes > 1 else value


def vector_index(base, lanes):
    """The index of ``lanes`` consecutive elements from ``base`` (``base`` itself for one lane)."""
    return tirx.Ramp(base, 1, lanes) if lanes > 1 else base


def _copy_row(dst, dst_offset, src, src_offset, src_step, count, lanes):
    """Copy ``count`` elements (source elements ``src_step`` apart) in vector chunks; static tail."""
    chunks, tail = divmod(count, lanes)
    if chunks:
        with T.serial(0, chunks) as i:
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
    ``out_h x out_w`` the one it computes, in whole register tiles.

    The input is copied (``copies_input``) unless it already has the layout. The copy is shared by
    all tasks, or, with ``config.private_input``, each task copies its own image's rows: its row
    tiles' rows plus the kernel's halo (``in_h`` rows per channel). Private copies are what makes
    two threads faster than one on short layers: a core that reads input lines the other core
    wrote a moment earlier waits for them (on 512 channels, 4x4, 2 threads: 0.088 ms against
    0.173 ms with the shared copy; 1 thread: 0.118 ms).
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
        self.stride_w = sw
        self.copies_input = self._needs_copy(g)
        self.private = cfg.private_input and self.copies_input
        if self.private and not cfg.im2col:
            self.in_h = (min(cfg.row_tiles, self.row_tiles_total) * cfg.rows - 1) * g.stride[0] + g.kernel[0]
        self.channel_stride = self.in_h * self.row_stride

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


def emit_padding(geometry, layout, data, padded, lanes, image=None, first_row=0):
    """Copy the input into the zero-padded scratch buffer in the layout's copies.

    Without ``image``: every image, parallel over images x channels. With ``image`` (a private
    copy): that image's channels in a serial loop, from padded row ``first_row`` on.
    """
    g, lay = geometry, layout
    copy_channel = _copy_im2col_channel if lay.im2col else _copy_padded_channel
    if image is None:
        with T.parallel(0, g.batch * g.channels) as nc:
            copy_channel(g, lay, data, padded, lanes, nc * (g.height * g.width), nc * lay.channel_stride, first_row)
    else:
        with T.serial(0, g.channels) as c:
            src_plane = (image * g.channels + c) * (g.height * g.width)
            copy_channel(g, lay, data, padded, lanes, src_plane, c * lay.channel_stride, first_row)


def _copy_padded_channel(geometry, layout, data, padded, lanes, src_plane, dst_plane, first_row):
    """The ``in_h`` padded rows of one channel from padded row ``first_row``, zero outside the input."""
    g, lay = geometry, layout
    top, sw = g.padding[0], g.stride[1]
    with T.serial(0, lay.in_h) as i:
        dst_row = dst_plane + i * lay.row_stride
        in_row = first_row + i - top
        with T.If(tirx.all(0 <= in_row, in_row < g.height)):
            with T.Then():
                for s in range(lay.copies):
                    # element q of copy s is input column q*sw + first_column(s)
                    _strided_row(padded, dst_row + s * lay.copy_w, lay.copy_w, data, src_plane + in_row * g.width,
                                 lay.first_column(s), sw, g.width, lanes)
            with T.Else():
                _zero_row(padded, dst_row, lay.row_stride, lanes)


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


def _copy_im2col_channel(geometry, layout, data, im2col, lanes, src_plane, dst_plane, first_row):
    """Write one channel's ``im2col`` rows: element ``p`` of tap ``(r, s)`` is padded pixel ``(oh*sh + r, ow*sw + s)``.

    Pixels past ``OH * OW`` (up to whole vectors) are zeros; ``first_row`` is always 0 (one row).
    """
    g, lay = geometry, layout
    top, left = g.padding[0], g.padding[1]
    (sh, sw), out_w = g.stride, g.out_width
    pixels = g.out_height * out_w
    for r in range(g.kernel[0]):
        for s in range(g.kernel[1]):
            dst_tap = dst_plane + lay.input_offset(0, r, s)
            with T.serial(0, g.out_height) as oh:
                dst = dst_tap + oh * out_w
                in_row = oh * sh + r - top
                with T.If(tirx.all(0 <= in_row, in_row < g.height)):
                    with T.Then():
                        # output column ow reads input column ow*sw + s - left
                        _strided_row(im2col, dst, out_w, data, src_plane + in_row * g.width, s - left, sw, g.width,
                                     lanes)
                    with T.Else():
                        _zero_row(im2col, dst, out_w, lanes)
            if lay.out_w > pixels:
                _zero_row(im2col, dst_tap + pixels, lay.out_w - pixels, lanes)


def scratch_buffers(*sizes):
    """Global scratch buffers of ``sizes`` floats: views into one allocation (an empty size gives None).

    The accesses go through declared views, not the allocated buffer itself, because TVM's
    ``CompactBufferAllocation`` pass analyses every access to an allocated buffer and took 70% of
    the compile time of a specialised kernel (20 s for a 32-channel layer). One allocation, not
    one per buffer: two separate allocations of the same size were given the same memory (wrong
    results on a 5-channel, 5-filter 1x1 layer).
    """
    if not any(sizes):
        return [None] * len(sizes)
    allocation = T.alloc_buffer((sum(sizes),), DTYPE)
    views, offset = [], 0
    for size in sizes:
        views.append(T.decl_buffer((size,), DTYPE, data=allocation.data, elem_offset=offset) if size else None)
        offset += size
    return views


def _channel_blocks_of(terms, filter_id, channel_block):
    """The channel blocks a filter reads; a filter without terms still needs one pass (bias, epilogue)."""
    blocks = sorted({c // channel_block for c, _, _, _ in terms[filter_id]})
    return blocks or [0]


@dataclass
class KernelContext:
    """What the code of one parallel task sees (built by :func:`build_direct_conv`).

    Attributes
    ----------
    geometry, config, layout, epilogue
        The convolution, the knobs, the padded sizes and the fused tail.
    padded : Buffer
        The flat, zero-padded input in the layout's copies (see :class:`Layout`): shared, or the
        task's private copy.
    acc : Buffer
        Where partial sums live: the flat output, or a padded scratch output that is cropped.
    bias, residual : Buffer or None
        The flat epilogue parameters.
    table : Buffer or None
        The int32 table parameter (compact kernels).
    image, part : PrimExpr
        The task's image and its part of the filters (``0 .. filter_parts - 1``).
    filter_parts : int or PrimExpr
        Parts the filter blocks are split into: ``config.filter_splits``, or with private input
        copies, as many of them as the threads need (read at run time).
    first_tile, n_tiles : PrimExpr
        The task's register tiles of rows.
    input_origin : PrimExpr
        Where output row 0 of the task's image would read its first padded row in ``padded``.
    """

    geometry: ConvGeometry
    config: SpecializedConvConfig
    layout: "Layout"
    epilogue: Epilogue
    padded: object
    acc: object
    bias: object
    residual: object
    table: object
    image: object = None
    part: object = None
    filter_parts: object = None
    first_tile: object = None
    n_tiles: object = None
    input_origin: object = None

    @property
    def out_plane(self):
        return self.layout.out_h * self.layout.out_w

    def tile_loops(self):
        """Emit the loops over the task's register tiles; yields ``(x_base, y_base)`` offsets of a tile."""
        g, cfg, lay = self.geometry, self.config, self.layout
        with T.serial(0, self.n_tiles) as tile:
            with T.serial(0, lay.out_w // lay.tile_width) as column:
                oh0 = (self.first_tile + tile) * cfg.rows
                ow0 = column * lay.tile_width
                x_base = T.Bind(self.input_origin + oh0 * g.stride[0] * lay.row_stride + ow0)
                y_base = T.Bind(self.image * g.filters * self.out_plane + oh0 * lay.out_w + ow0)
                yield x_base, y_base

    def y_index(self, y_base, filter_id, row, vector):
        """The partial-sum index of (filter, tile row, vector) of a tile."""
        lanes = self.config.lanes
        return vector_index(y_base + filter_id * self.out_plane + row * self.layout.out_w + vector * lanes, lanes)

    def x_offset(self, channel, tap_row, tap_col, row=0, vector=0):
        """Offset in the padded input of a tap of a tile row, relative to the tile's ``x_base``."""
        return self.layout.input_offset(channel, row * self.geometry.stride[0] + tap_row, tap_col) + vector * self.config.lanes

    def input_vector(self, x_base, channel, tap_row, tap_col, row=0, vector=0):
        """The input vector a tap multiplies for (tile row, vector): a load, or with register
        shifts a shuffle of the two loaded vectors of the row it straddles (zero past the row)."""
        lanes, lay = self.config.lanes, self.layout
        if not lay.register_shifts:
            return self.padded[vector_index(x_base + self.x_offset(channel, tap_row, tap_col, row, vector), lanes)]

        def row_vector(k):
            if not 0 <= k < self.config.vectors:
                return as_vector(tirx.const(0.0, DTYPE), lanes)
            return self.padded[vector_index(x_base + self.x_offset(channel, tap_row, 0, row, k), lanes)]

        first, offset = divmod(vector * lanes + tap_col - lay.left, lanes)
        if offset == 0:
            return row_vector(first)
        return tirx.Shuffle([row_vector(first), row_vector(first + 1)], list(range(offset, offset + lanes)))

    def initial_value(self, filter_id):
        """The start of a filter's sum: its bias, or zero."""
        lanes = self.config.lanes
        return as_vector(self.bias[filter_id], lanes) if self.bias is not None else as_vector(tirx.const(0.0, DTYPE), lanes)

    def final_value(self, value, y_index):
        """``value`` after the last channel block: residual and activation when the output is direct."""
        if not self.layout.direct:
            return value  # the crop adds the residual and activates
        if self.residual is not None:
            value = value + self.residual[y_index]
        return self.epilogue.activate(value, self.config.lanes, DTYPE)


def build_direct_conv(geometry, epilogue, config, name, kind, emit_task, param_shapes=None, table_size=0):
    """Write a direct convolution PrimFunc around ``emit_task(context)``, the code of one parallel task.

    The function pads the input once, runs a parallel loop over (image, block of rows, part of the
    filters) and crops a padded output, all three in one launch of the thread pool with a barrier
    after each; ``emit_task`` writes the sums of the task's filters into ``context.acc``.

    Parameters
    ----------
    geometry : ConvGeometry
    epilogue : Epilogue
    config : SpecializedConvConfig
    name : str
        The PrimFunc's ``global_symbol``.
    kind : str
        The ``tvm_sparse.kernel`` attribute of the function.
    emit_task : callable
        ``emit_task(KernelContext)`` emits the code of one task.
    param_shapes : tuple or None
        ``(data_shape, out_shape)`` to declare instead of the geometry's, with as many elements.
    table_size : int
        Entries of an int32 ``table`` parameter after the epilogue's (0: no table).

    Returns
    -------
    tvm.tirx.PrimFunc
        Parameters ``data``, then ``bias [K]`` and ``residual`` when the epilogue has them, then
        ``table`` when ``table_size``, then ``out``.
    """
    g, cfg = geometry, config
    lay = Layout(g, cfg)
    with IRBuilder() as builder:
        with T.prim_func():
            T.func_name(name)
            T.func_attr({"global_symbol": name, "tirx.noalias": True, "tvm_sparse.kernel": kind})
            data_shape, out_shape = param_shapes or (g.data_shape, g.out_shape)
            data = T.arg("data", T.buffer(data_shape, DTYPE))
            bias = T.arg("bias", T.buffer((g.filters,), DTYPE)) if epilogue.bias else None
            residual = T.arg("residual", T.buffer(out_shape, DTYPE)) if epilogue.residual else None
            table = T.arg("table", T.buffer((table_size,), "int32")) if table_size else None
            out = T.arg("out", T.buffer(out_shape, DTYPE))
            data_flat = T.decl_buffer((math.prod(g.data_shape),), DTYPE, data=data.data)
            out_flat = T.decl_buffer((math.prod(g.out_shape),), DTYPE, data=out.data)
            residual_flat = T.decl_buffer((math.prod(g.out_shape),), DTYPE, data=residual.data) if residual is not None else None
            images_x_rows = g.batch * lay.row_blocks
            slab = g.channels * lay.channel_stride  # one image's copy (a task's, when private)
            slabs = images_x_rows * cfg.filter_splits if lay.private else g.batch
            acc, copies = scratch_buffers(
                0 if lay.direct else g.batch * g.filters * lay.out_h * lay.out_w, slabs * slab if lay.copies_input else 0
            )
            acc = out_flat if acc is None else acc
            shared_input = data_flat if copies is None else copies
            filter_parts = cfg.filter_splits
            if lay.private and cfg.filter_splits > 1:
                # Every filter part copies the input again: only as many as the threads need.
                threads = T.Bind(T.call_packed("runtime.NumThreads", dtype="int32"))
                wanted = (threads + images_x_rows - 1) // images_x_rows
                filter_parts = T.Bind(tirx.max(1, tirx.min(cfg.filter_splits, wanted)))
            context = KernelContext(g, cfg, lay, epilogue, shared_input, acc, bias, residual_flat, table)
            context.filter_parts = filter_parts
            shared_copy = lay.copies_input and not lay.private
            # The shared copy, the tasks and the crop run in one launch of the thread pool, each
            # stage waiting at a barrier for the previous one.
            with _attr_scope(shared_copy or not lay.direct, "pragma_parallel_launch_point"):
                if shared_copy:
                    with _attr_scope(True, "pragma_parallel_barrier_when_finish"):
                        emit_padding(g, lay, data_flat, copies, cfg.lanes)
                with _attr_scope(not lay.direct, "pragma_parallel_barrier_when_finish"):
                    with T.parallel(0, images_x_rows * filter_parts) as task:
                        row_block = task // filter_parts % lay.row_blocks
                        first_tile = row_block * cfg.row_tiles
                        context.image = task // (lay.row_blocks * filter_parts)
                        context.part = task % filter_parts
                        context.first_tile = first_tile
                        context.n_tiles = tirx.min(cfg.row_tiles, lay.row_tiles_total - first_tile)
                        if lay.private:
                            context.padded = T.decl_buffer((slab,), DTYPE, data=copies.data,
                                                           elem_offset=copies.elem_offset + task * slab)
                            first_row = first_tile * cfg.rows * g.stride[0]
                            emit_padding(g, lay, data_flat, context.padded, cfg.lanes, context.image, first_row)
                            context.input_origin = -first_row * lay.row_stride
                        else:
                            context.input_origin = context.image * slab
                        emit_task(context)
                if not lay.direct:
                    emit_crop(g, lay, epilogue, acc, residual_flat, out_flat, cfg.lanes)
    return builder.get()


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
            with _when(cfg.filter_splits > 1, ctx.part == part_index % ctx.filter_parts):
                for cb in range(n_cblocks):
                    for block in part:
                        users = [f for f in block if cb in active[f]]
                        if users:
                            for x_base, y_base in ctx.tile_loops():
                                for f in users:
                                    tile_body(ctx, f, cb, x_base, y_base)

    return build_direct_conv(g, epilogue, cfg, name, "specialized_conv2d", emit_task, param_shapes)


@contextlib.contextmanager
def _attr_scope(enabled, key):
    """Emit the body under the attribute ``key`` (a pragma of LLVM's CPU code generator) when ``enabled``."""
    if not enabled:
        yield
        return
    with T.attr(tirx.const(0, "int32"), key, 1):
        yield


@contextlib.contextmanager
def _when(guarded, condition):
    """Emit the body under ``if condition`` when ``guarded``, else unconditionally."""
    if not guarded:
        yield
        return
    with T.If(condition):
        with T.Then():
            yield


def emit_crop(geometry, layout, epilogue, acc, residual, out, lanes):
    """Copy the valid part of the padded output to ``out``, adding the residual and activating."""
    g, lay = geometry, layout
    out_plane = lay.valid_h * lay.valid_w
    chunks, tail = divmod(lay.valid_w, lanes)
    with T.parallel(0, g.batch * g.filters) as nk:
        with T.serial(0, lay.valid_h) as h:
            for start, width in [(i * lanes, lanes) for i in range(chunks)] + ([(chunks * lanes, tail)] if tail else []):
                src = nk * lay.out_h * lay.out_w + h * lay.out_w + start
                dst = vector_index(nk * out_plane + h * lay.valid_w + start, width)
                value = acc[vector_index(src, width)]
                if residual is not None:
                    value = value + residual[dst]
                T.buffer_store(out, epilogue.activate(value, width, DTYPE), [dst])


#: Pass options for building specialised kernels: TIR's common-subexpression elimination took
#: a third of the lowering time on their long FMA chains, and LLVM eliminates the same loads.
BUILD_CONFIG = {"tirx.disable_cse_tir": True}


def compile_kernel(prim_func, target):
    """Compile a kernel PrimFunc alone (tests, benchmarks) with :data:`BUILD_CONFIG`; returns the executable."""
    with tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG):
        return tvm.compile(tvm.IRModule({prim_func.attrs["global_symbol"]: prim_func}), target=target)
