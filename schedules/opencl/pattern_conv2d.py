"""Pattern-sparse 3x3 convolution for phone GPUs (OpenCL: Mali, Adreno).

GPU code cannot hold one straight-line block per filter as the CPU kernel does (one program per
layer with thousands of branches), so here the FKW arrays are read from a table argument
(:func:`fkw_table`; one int32 table after ``data``, ``[bias]``, ``[residual]``, carried by the
PrimFunc like the compact CPU kernels' table, :func:`schedules.kernel_table.with_table`) and the code is
specialised per *pattern*: a work-group computes one filter (in FKW order, so neighbouring groups
run filters with the same kernel count and pattern mix) over a tile of ``rows x (threads_x *
pixels)`` outputs; each work-item keeps ``pixels`` accumulators in registers and walks the
filter's kernels, switching on the kernel's pattern to code whose tap offsets are literals. All
work-items of a group take the same branch, so the switch does not diverge. Zero padding is
handled by guarded loads (no padded copy of the input).

Launch sizes come from the schedule: :func:`launch_sizes` reads the thread bindings of the
PrimFunc (the runtime of the PyPI TVM wheel has no OpenCL, so tests launch the generated source
themselves, e.g. with PyOpenCL on PoCL).
"""

import math
from dataclasses import dataclass

import numpy as np
from tvm import tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from tvm_sparse.formats import PatternWeight

from ..conv_geometry import DTYPE, make_geometry
from ..epilogue import Epilogue
from ..kernel_table import declare_table_kernel, pack_sections, with_table

#: The FKW arrays, in the order of their sections in the table.
TABLES = ("filter_ids", "indptr", "channels", "pattern_ids", "values")


@dataclass(frozen=True)
class GpuTile:
    """Work-group tiling knobs: ``threads_x x rows`` work-items, ``pixels`` outputs per work-item."""

    threads_x: int = 8
    rows: int = 8
    pixels: int = 2


def default_tile(out_height, out_width):
    """A tile that covers small maps without idle work-items (at most 64 per group)."""
    pixels = 2 if out_width >= 8 else 1
    threads_x = min(8, max(1, math.ceil(out_width / pixels)))
    rows = min(max(1, 64 // threads_x), out_height)
    return GpuTile(threads_x, rows, pixels)


def layer_default_tile(weight, data_shape, target=None, *, stride=1, padding=1):
    """The tile :func:`pattern_conv2d_opencl` picks for ``weight`` on a ``data_shape`` input when given none."""
    del target
    geometry = make_geometry(data_shape, weight.shape, stride, padding)
    return default_tile(geometry.out_height, geometry.out_width)


def fkw_table(weight):
    """The FKW arrays (:data:`TABLES`) packed into one int32 table; returns ``(table, section starts)``."""
    return pack_sections([
        np.asarray(weight.filter_ids, dtype="int32"),
        np.asarray(weight.indptr, dtype="int32"),
        np.asarray(weight.channels, dtype="int32"),
        np.asarray(weight.pattern_ids, dtype="int32"),
        np.asarray(weight.values, dtype="float32"),
    ])


def pattern_conv2d_opencl(
    weight, data_shape, *, stride=1, padding=1, epilogue=Epilogue(), target=None, config=None,
    name="pattern_conv2d_opencl",
):
    """A pattern-sparse 3x3 convolution for OpenCL targets, as a PrimFunc with thread bindings.

    Parameters
    ----------
    weight : PatternWeight
        Its pattern library becomes literal tap offsets; its FKW arrays are arguments.
    data_shape : tuple of int
        ``(N, C, H, W)``.
    stride, padding, epilogue
        As :func:`schedules.sparse_cpu.pattern_conv2d.pattern_conv2d`.
    target : tvm.target.Target or dict or None
        Unused (the code is the same for Mali and Adreno); accepted like the CPU kernels' entry points.
    config : GpuTile or None
        Work-group tiling; ``None``: :func:`default_tile`.
    name : str

    Returns
    -------
    tvm.tirx.PrimFunc
        Parameters ``data``, ``[bias]``, ``[residual]``, ``table`` (int32, from :func:`fkw_table`;
        also in the function's attributes, see ``schedules.kernel_table.table_argument``), ``out``.
    """
    del target
    if not isinstance(weight, PatternWeight):
        raise TypeError(f"weight must be a PatternWeight, got {type(weight).__name__}")
    g = make_geometry(data_shape, weight.shape, stride, padding)
    tile = config or default_tile(g.out_height, g.out_width)
    table_np, (at_filter_ids, at_indptr, at_channels, at_pattern_ids, at_values) = fkw_table(weight)
    taps = weight.taps.tolist()
    entries = weight.entries
    tiles_h = math.ceil(g.out_height / tile.rows)
    tiles_w = math.ceil(g.out_width / (tile.threads_x * tile.pixels))
    sh, sw = g.stride
    top, left = g.padding[0], g.padding[1]

    with IRBuilder() as builder:
        with T.prim_func():
            data, bias, residual, table, out = declare_table_kernel(name, "pattern_conv2d_opencl", g, epilogue, table_np.size, DTYPE)
            with T.thread_binding(0, g.filters, thread="blockIdx.y") as group_filter:
                with T.thread_binding(0, g.batch * tiles_h * tiles_w, thread="blockIdx.x") as group_tile:
                    with T.thread_binding(0, tile.rows, thread="threadIdx.y") as ty:
                        with T.thread_binding(0, tile.threads_x, thread="threadIdx.x") as tx:
                            acc = T.alloc_buffer((tile.pixels,), DTYPE, scope="local")
                            k = table[at_filter_ids + group_filter]
                            n = group_tile // (tiles_h * tiles_w)
                            oh = group_tile // tiles_w % tiles_h * tile.rows + ty
                            ow0 = (group_tile % tiles_w * tile.threads_x + tx) * tile.pixels
                            for i in range(tile.pixels):
                                T.buffer_store(acc, bias[k] if bias is not None else tirx.const(0.0, DTYPE), [i])
                            start = table[at_indptr + group_filter]
                            with T.serial(0, table[at_indptr + group_filter + 1] - start) as step:
                                j = start + step
                                c = table[at_channels + j]
                                p = table[at_pattern_ids + j]
                                for pattern, pattern_taps in enumerate(taps):
                                    with T.If(p == pattern):
                                        with T.Then():
                                            for e, (r, s) in enumerate(pattern_taps):
                                                w = tirx.reinterpret(DTYPE, table[at_values + j * entries + e])
                                                ih = oh * sh + (r - top)
                                                for i in range(tile.pixels):
                                                    iw = (ow0 + i) * sw + (s - left)
                                                    inside = tirx.all(ih >= 0, ih < g.height, iw >= 0, iw < g.width)
                                                    x = tirx.if_then_else(inside, data[n, c, ih, iw], tirx.const(0.0, DTYPE))
                                                    T.buffer_store(acc, acc[i] + w * x, [i])
                            for i in range(tile.pixels):
                                with T.If(tirx.all(oh < g.out_height, ow0 + i < g.out_width)):
                                    with T.Then():
                                        value = acc[i]
                                        if residual is not None:
                                            value = value + residual[n, k, oh, ow0 + i]
                                        T.buffer_store(out, epilogue.activate(value), [n, k, oh, ow0 + i])
    return with_table(builder.get(), table_np)


def launch_sizes(prim_func):
    """OpenCL ``(global_size, local_size)`` from the PrimFunc's thread bindings.

    ``blockIdx.x/y/z`` and ``threadIdx.x/y/z`` map to dimensions 0/1/2 of ``get_group_id`` and
    ``get_local_id``; the global size is their product per dimension. The bindings are the loops
    that enclose the whole body, outermost first.
    """
    extents = {}
    node = prim_func.body
    while True:
        if isinstance(node, tirx.SeqStmt) and len(node.seq) == 1:
            node = node.seq[0]
        elif isinstance(node, tirx.For) and node.thread_binding is not None:
            extents[node.thread_binding.thread_tag] = int(node.extent)
            node = node.body
        else:
            break
    local = tuple(extents.get(f"threadIdx.{axis}", 1) for axis in "xyz")
    groups = tuple(extents.get(f"blockIdx.{axis}", 1) for axis in "xyz")
    return tuple(g * t for g, t in zip(groups, local)), local
