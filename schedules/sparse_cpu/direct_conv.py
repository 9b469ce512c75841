"""The skeleton every sparse CPU kernel shares: copy the input once, run the parallel tasks, crop.

Every sparse format reduces to the same thing: per output filter, a list of *terms*
``(input channel, tap row, tap column, weight)``. :func:`build_direct_conv` writes a TIR PrimFunc
(NCHW in and out, float32) around the code of one parallel task, which a code generator supplies
(literal weights: :mod:`schedules.sparse_cpu.specialized`; a constant table:
:mod:`schedules.sparse_cpu.compact`):

1. The input is copied into its layout (:mod:`schedules.sparse_cpu.layout`), once for all tasks
   or by each task for the rows it reads.
2. A parallel loop over (image, block of output rows, block of tile columns, part of the filter
   blocks). Inside it, for each block of input channels (an L1-sized slab of the padded input)
   and each *filter block*
   (filters that the format groups together: a pattern pair, a block-punched or BSR row block),
   the task's code walks register tiles of ``rows`` output rows x ``vectors`` SIMD vectors
   (:meth:`KernelContext.tile_loops`).
3. Partial sums of earlier channel blocks live in the output; the first channel block a filter
   uses starts from the bias, the last applies residual and activation. When the output width or
   height is not a whole number of tiles, the kernel works on a padded output and a final loop
   crops it (and applies residual and activation there).
"""

import contextlib
import math
from dataclasses import dataclass

import tvm
from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from ..conv_geometry import DTYPE, ConvGeometry
from ..epilogue import Epilogue
from .config import SpecializedConvConfig
from .layout import Layout, emit_padding
from .vectors import as_vector, vector_index


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
    first_column_tile, n_column_tiles : PrimExpr or int
        The task's register tiles along a row.
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
    first_column_tile: object = 0
    n_column_tiles: object = None
    input_origin: object = None

    @property
    def out_plane(self):
        return self.layout.out_h * self.layout.out_w

    def tile_loops(self):
        """Emit the loops over the task's register tiles; yields ``(x_base, y_base)`` offsets of a tile."""
        g, cfg, lay = self.geometry, self.config, self.layout
        with T.serial(0, self.n_tiles) as tile:
            with T.serial(0, self.n_column_tiles) as column:
                oh0 = (self.first_tile + tile) * cfg.rows
                ow0 = (self.first_column_tile + column) * lay.tile_width
                x_base = T.Bind(self.input_origin + oh0 * g.stride[0] * lay.row_stride + ow0)
                y_base = T.Bind(self.image * g.filters * self.out_plane + oh0 * lay.out_w + ow0)
                yield x_base, y_base

    def y_element(self, y_base, filter_id, row, vector):
        """The partial-sum index of the first lane of (filter, tile row, vector) of a tile."""
        return y_base + filter_id * self.out_plane + row * self.layout.out_w + vector * self.config.lanes

    def y_index(self, y_base, filter_id, row, vector):
        """The partial-sum index of (filter, tile row, vector) of a tile."""
        return vector_index(self.y_element(y_base, filter_id, row, vector), self.config.lanes)

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

    The function pads the input once, runs a parallel loop over (image, block of rows, block of
    tile columns, part of the filters) and crops a padded output, all three in one launch of the
    thread pool with a barrier after each; ``emit_task`` writes the sums of the task's filters
    into ``context.acc``.

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
            # TVM's Relax analyses (RewriteDataflowReshape's HasReshapePattern) require a PrimFunc
            # body to be a block; the root block changes nothing in the generated code.
            with T.sblock("root"):
                data_flat = T.decl_buffer((math.prod(g.data_shape),), DTYPE, data=data.data)
                out_flat = T.decl_buffer((math.prod(g.out_shape),), DTYPE, data=out.data)
                residual_flat = (T.decl_buffer((math.prod(g.out_shape),), DTYPE, data=residual.data)
                                 if residual is not None else None)
                columns = lay.column_blocks
                image_blocks = g.batch * lay.row_blocks * columns
                slab = g.channels * lay.channel_stride  # one image's copy (a task's, when private)
                slabs = image_blocks * cfg.filter_splits if lay.private else g.batch
                acc, copies = scratch_buffers(
                    0 if lay.direct else g.batch * g.filters * lay.out_h * lay.out_w, slabs * slab if lay.copies_input else 0
                )
                acc = out_flat if acc is None else acc
                shared_input = data_flat if copies is None else copies
                filter_parts = cfg.filter_splits
                if lay.private and cfg.filter_splits > 1:
                    # Every filter part copies the input again: only as many as the threads need.
                    threads = T.Bind(T.call_packed("runtime.NumThreads", dtype="int32"))
                    wanted = (threads + image_blocks - 1) // image_blocks
                    filter_parts = T.Bind(tirx.max(1, tirx.min(cfg.filter_splits, wanted)))
                context = KernelContext(g, cfg, lay, epilogue, shared_input, acc, bias, residual_flat, table)
                context.filter_parts = filter_parts
                shared_copy = lay.copies_input and not lay.private
                # The shared copy, the tasks and the crop run in one launch of the thread pool, each
                # stage waiting at a barrier for the previous one.
                with attr_scope(shared_copy or not lay.direct, "pragma_parallel_launch_point"):
                    if shared_copy:
                        with attr_scope(True, "pragma_parallel_barrier_when_finish"):
                            emit_padding(g, lay, data_flat, copies, cfg.lanes)
                    with attr_scope(not lay.direct, "pragma_parallel_barrier_when_finish"):
                        with T.parallel(0, image_blocks * filter_parts) as task:
                            block = task // filter_parts
                            row_block = block // columns % lay.row_blocks
                            first_tile = row_block * cfg.row_tiles
                            context.image = block // (columns * lay.row_blocks)
                            context.part = task % filter_parts
                            context.first_tile = first_tile
                            context.n_tiles = tirx.min(cfg.row_tiles, lay.row_tiles_total - first_tile)
                            if columns > 1:
                                first_column = block % columns * lay.column_tiles
                                context.first_column_tile = first_column
                                context.n_column_tiles = tirx.min(lay.column_tiles,
                                                                  lay.column_tiles_total - first_column)
                            else:
                                context.n_column_tiles = lay.column_tiles_total
                            if lay.private:
                                context.padded = T.decl_buffer((slab,), DTYPE, data=copies.data,
                                                               elem_offset=copies.elem_offset + task * slab)
                                first_row = first_tile * cfg.rows * g.stride[0]
                                # A task of a column block copies the elements its tiles read.
                                for column_block in range(columns):
                                    with when(columns > 1, block % columns == column_block):
                                        emit_padding(g, lay, data_flat, context.padded, cfg.lanes, context.image,
                                                     first_row, lay.column_window(column_block))
                                context.input_origin = -first_row * lay.row_stride
                            else:
                                context.input_origin = context.image * slab
                            emit_task(context)
                    if not lay.direct:
                        emit_crop(g, lay, epilogue, acc, residual_flat, out_flat, cfg.lanes)
    return builder.get()


@contextlib.contextmanager
def attr_scope(enabled, key):
    """Emit the body under the attribute ``key`` (a pragma of LLVM's CPU code generator) when ``enabled``."""
    if not enabled:
        yield
        return
    with T.attr(tirx.const(0, "int32"), key, 1):
        yield


@contextlib.contextmanager
def when(guarded, condition):
    """Emit the body under ``if condition`` when ``guarded``, else unconditionally."""
    if not guarded:
        yield
        return
    with T.If(condition):
        with T.Then():
            yield


def emit_crop(geometry, layout, epilogue, acc, residual, out, lanes):
    """Copy the valid part of the padded output to ``out``, adding the residual and activating.

    Parallel over images x filters; with column blocks over images x column blocks, each task
    cropping the columns the same task of the kernel computed, on the same core.
    """
    g, lay = geometry, layout
    if lay.column_blocks == 1:
        with T.parallel(0, g.batch * g.filters) as nk:
            _crop_rows(lay, epilogue, acc, residual, out, lanes, nk, 0, lay.valid_w)
        return
    with T.parallel(0, g.batch * lay.column_blocks) as task:
        for column_block in range(lay.column_blocks):
            first = column_block * lay.column_tiles * lay.tile_width
            last = min(lay.valid_w, first + lay.column_tiles * lay.tile_width)
            with T.If(task % lay.column_blocks == column_block):
                with T.Then():
                    with T.serial(0, g.filters) as k:
                        _crop_rows(lay, epilogue, acc, residual, out, lanes,
                                   task // lay.column_blocks * g.filters + k, first, last)


def _crop_rows(layout, epilogue, acc, residual, out, lanes, plane, first, last):
    """Crop columns ``first`` to ``last`` of every row of output plane ``plane`` (image x filter)."""
    lay = layout
    chunks, tail = divmod(last - first, lanes)
    pieces = [(first + i * lanes, lanes) for i in range(chunks)] + ([(first + chunks * lanes, tail)] if tail else [])
    with T.serial(0, lay.valid_h) as h:
        for start, width in pieces:
            src = plane * lay.out_h * lay.out_w + h * lay.out_w + start
            dst = vector_index(plane * lay.valid_h * lay.valid_w + h * lay.valid_w + start, width)
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


def scratch_buffers(*sizes):
    """Global scratch buffers of ``sizes`` floats: views into one allocation (an empty size gives None).

    The accesses go through declared views, not the allocated buffer itself, because TVM's
    ``CompactBufferAllocation`` pass analyses every access to an allocated buffer, which took most
    of the compile time of a specialised kernel. One allocation, not one per buffer: two separate
    allocations of the same size were given the same memory (wrong results).
    """
    if not any(sizes):
        return [None] * len(sizes)
    allocation = T.alloc_buffer((sum(sizes),), DTYPE)
    views, offset = [], 0
    for size in sizes:
        views.append(T.decl_buffer((size,), DTYPE, data=allocation.data, elem_offset=offset) if size else None)
        offset += size
    return views
