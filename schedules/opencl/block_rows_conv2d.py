"""Block-punched and BSR convolution for phone GPUs (OpenCL: Mali, Adreno).

Both formats are *block rows*: ``bk`` filters that keep the same columns of the GEMM view
``[K, C*R*S]`` (block-punched: the kept kernel positions of a block; BSR: the input channels of
the stored blocks of a 1x1 layer). A work-group computes one block row over a tile of output
pixels; each work-item keeps ``bk x pixels`` accumulators in registers. The block row's columns
(input channel, tap row, tap column) and their ``bk`` weights are staged chunk by chunk in local
memory by the whole group, then every work-item reads each input value once, guarded for the
zero padding, and feeds it to its ``bk`` filters. The tables are one int32 kernel argument
(:func:`block_row_table`, carried by the PrimFunc like the compact CPU kernels' table), so the
code does not grow with the layer.

Launch sizes come from the thread bindings (see ``schedules.opencl.pattern_conv2d.launch_sizes``).
"""

import math
from dataclasses import dataclass

import numpy as np
from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from tvm_sparse.formats import BlockPunchedWeight, BSRWeight

from ..conv_geometry import DTYPE, make_geometry
from ..epilogue import Epilogue
from ..kernel_table import declare_table_kernel, pack_sections, with_table

#: The sections of the kernel's table, in order (see :func:`block_row_table`).
TABLES = ("row_ptr", "taps", "values")


@dataclass(frozen=True)
class BlockRowsTile:
    """Work-group knobs: ``threads`` work-items of ``pixels`` outputs each; ``chunk`` columns staged at a time."""

    threads: int = 64
    pixels: int = 2
    chunk: int = 32

    def __post_init__(self):
        for name in ("threads", "pixels", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def default_tile(out_pixels):
    """Fewer work-items for small maps, so that a group has no idle ones."""
    threads = min(64, 1 << max(0, math.ceil(math.log2(max(out_pixels, 1)))))
    pixels = 2 if out_pixels >= 2 * threads else 1
    return BlockRowsTile(threads, pixels)


def layer_default_tile(weight, data_shape, target=None, *, stride=1, padding=0):
    """The tile :func:`block_rows_conv2d_opencl` picks for ``weight`` on a ``data_shape`` input when given none."""
    del target
    geometry = make_geometry(data_shape, _weight_shape(weight), stride, padding)
    return default_tile(geometry.out_height * geometry.out_width)


def _weight_shape(weight):
    """``(K, C, R, S)`` of a block-punched or BSR weight."""
    if isinstance(weight, BlockPunchedWeight):
        return tuple(weight.shape)
    if isinstance(weight, BSRWeight):
        return tuple(weight.shape[:2]) + (1, 1)
    raise TypeError(f"weight must be a BlockPunchedWeight or a BSRWeight, got {type(weight).__name__}")


def block_rows(weight):
    """The block rows of ``weight``.

    Returns
    -------
    bk : int
        Filters per block row.
    sections : list of numpy.ndarray
        :data:`TABLES`: ``row_ptr [n_rows + 1]`` int32 (the columns of block row ``b`` are
        ``row_ptr[b]:row_ptr[b + 1]``), ``taps [n_cols * 3]`` int32 (input channel, tap row, tap
        column of each column) and ``values [n_cols * bk]`` float32 (the ``bk`` weights of each
        column; rows past the last filter are zero).
    """
    n_filters, n_channels, _, kw = _weight_shape(weight)
    bk = weight.block[0]
    rows = []  # per block row: [(channel, r, s, weights[bk])]
    if isinstance(weight, BlockPunchedWeight):
        taps_per_channel = weight.shape[2] * kw
        n_kb, n_cb = weight.grid
        for kb in range(n_kb):
            row = []
            for cb in range(n_cb):
                columns, tile = weight.tile(kb, cb)
                for j, column in enumerate(columns.tolist()):
                    c, tap = divmod(column, taps_per_channel)
                    row.append((c, *divmod(tap, kw), tile[:, j]))
            rows.append(row)
    else:
        bw = weight.block[1]
        for b in range(len(weight.indptr) - 1):
            rows.append([
                (int(weight.indices[j]) * bw + q, 0, 0, weight.values[j, :, q])
                for j in range(weight.indptr[b], weight.indptr[b + 1])
                for q in range(bw)
                if int(weight.indices[j]) * bw + q < n_channels
            ])
    columns = [column for row in rows for column in row]
    row_ptr = np.cumsum([0] + [len(row) for row in rows]).astype("int32")
    taps = np.array([column[:3] for column in columns], dtype="int32").reshape(-1)
    values = np.zeros((max(len(columns), 1), bk), dtype="float32")
    for i, column in enumerate(columns):
        values[i, : min(bk, n_filters)] = column[3][: min(bk, n_filters)]
    if not columns:
        taps = np.zeros(3, dtype="int32")
    return bk, [row_ptr, np.ascontiguousarray(taps), values.reshape(-1)]


def block_row_table(weight):
    """:func:`block_rows` packed into one int32 table; returns ``(bk, table, section starts)``."""
    bk, sections = block_rows(weight)
    return (bk, *pack_sections(sections))


def block_rows_conv2d_opencl(
    weight, data_shape, *, stride=1, padding=0, epilogue=Epilogue(), target=None, config=None,
    name="block_rows_conv2d_opencl",
):
    """A block-punched or BSR convolution for OpenCL targets, as a PrimFunc with thread bindings.

    Parameters
    ----------
    weight : BlockPunchedWeight or BSRWeight
    data_shape : tuple of int
        ``(N, C, H, W)``.
    stride, padding, epilogue, target
        As :func:`schedules.opencl.pattern_conv2d.pattern_conv2d_opencl`.
    config : BlockRowsTile or None
        ``None``: :func:`default_tile`.
    name : str

    Returns
    -------
    tvm.tirx.PrimFunc
        Parameters ``data``, ``[bias]``, ``[residual]``, ``table`` (int32, from
        :func:`block_row_table`; also in the function's attributes, see
        ``schedules.kernel_table.table_argument``), ``out``.
    """
    del target
    g = make_geometry(data_shape, _weight_shape(weight), stride, padding)
    bk, table_np, (at_row_ptr, at_taps, at_values) = block_row_table(weight)
    n_rows = math.ceil(g.filters / bk)
    out_pixels = g.out_height * g.out_width
    tile = config or default_tile(out_pixels)
    threads, pixels, chunk = tile.threads, tile.pixels, tile.chunk
    tiles = math.ceil(out_pixels / (threads * pixels))
    sh, sw = g.stride
    top, left = g.padding[0], g.padding[1]
    zero = tirx.const(0.0, DTYPE)

    with IRBuilder() as builder:
        with T.prim_func():
            data, bias, residual, table, out = declare_table_kernel(name, "block_rows_conv2d_opencl", g, epilogue, table_np.size, DTYPE)
            with T.thread_binding(0, n_rows, thread="blockIdx.y") as block_row:
                with T.thread_binding(0, g.batch * tiles, thread="blockIdx.x") as group:
                    staged_taps = T.alloc_buffer((chunk * 3,), "int32", scope="shared")
                    staged_values = T.alloc_buffer((chunk * bk,), "int32", scope="shared")
                    with T.thread_binding(0, threads, thread="threadIdx.x") as tx:
                        acc = T.alloc_buffer((bk * pixels,), DTYPE, scope="local")
                        n = group // tiles
                        first_pixel = group % tiles * (threads * pixels) + tx
                        for i in range(bk * pixels):
                            T.buffer_store(acc, zero, [i])
                        start = table[at_row_ptr + block_row]
                        n_cols = table[at_row_ptr + block_row + 1] - start
                        with T.serial(0, tirx.floordiv(n_cols + chunk - 1, chunk)) as part:
                            base = start + part * chunk
                            in_chunk = tirx.min(chunk, n_cols - part * chunk)
                            # The group stages the chunk's taps and weights in local memory.
                            for staged, section, width in ((staged_taps, at_taps, 3), (staged_values, at_values, bk)):
                                for u in range(math.ceil(chunk * width / threads)):
                                    index = u * threads + tx
                                    with T.If(index < in_chunk * width):
                                        with T.Then():
                                            T.buffer_store(staged, table[section + base * width + index], [index])
                            with T.serial(0, in_chunk) as column:
                                c = staged_taps[column * 3]
                                r = staged_taps[column * 3 + 1]
                                s = staged_taps[column * 3 + 2]
                                for i in range(pixels):
                                    pixel = first_pixel + i * threads
                                    ih = pixel // g.out_width * sh + r - top
                                    iw = pixel % g.out_width * sw + s - left
                                    inside = tirx.all(pixel < out_pixels, ih >= 0, ih < g.height, iw >= 0, iw < g.width)
                                    x = tirx.if_then_else(inside, data[n, c, ih, iw], zero)
                                    for f in range(bk):
                                        w = tirx.reinterpret(DTYPE, staged_values[column * bk + f])
                                        T.buffer_store(acc, acc[f * pixels + i] + w * x, [f * pixels + i])
                        for f in range(bk):
                            k = block_row * bk + f
                            for i in range(pixels):
                                pixel = first_pixel + i * threads
                                oh, ow = pixel // g.out_width, pixel % g.out_width
                                with T.If(tirx.all(k < g.filters, pixel < out_pixels)):
                                    with T.Then():
                                        value = acc[f * pixels + i]
                                        if bias is not None:
                                            value = value + bias[k]
                                        if residual is not None:
                                            value = value + residual[n, k, oh, ow]
                                        T.buffer_store(out, epilogue.activate(value), [n, k, oh, ow])
    return with_table(builder.get(), table_np)
