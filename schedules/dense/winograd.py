"""Dense 3x3 stride-1 convolution by Winograd's minimal filtering F(m x m, 3 x 3), for CPUs.

The output is cut into tiles of ``m x m`` pixels. Each tile's ``(m + 2) x (m + 2)`` input window is
transformed (``V = B^T d B``), multiplied element-wise with the transformed filters
(``U = G g G^T``, computed once at compile time from the constant weight) and summed over the
input channels, which for each of the ``(m + 2)^2`` positions is one matrix product
``M[t] = U[t] V[t]`` (filters x channels times channels x tiles); the inverse transform
``A^T M A`` gives the tile's outputs. F(4 x 4) does 36 products where the direct convolution
does 144; the transforms cost a few adds per input and output value.

The blocks of :func:`winograd_conv2d`, in the order they run: ``winograd_padded`` (the padded
input), ``winograd_rows`` and ``winograd_input`` (the input transform, a pass over the window's
rows then one over its columns), ``winograd_gemm`` (the products, tiles along the vector lanes),
``winograd_inverse`` and ``winograd_output`` (the inverse transform, the same two passes), into
which the epilogue (bias, residual add, ReLU) is fused. :class:`WinogradConv2d` schedules them;
``relay_passes.winograd`` calls the function for the convolutions that
:func:`winograd_tile_size` takes.

Winograd computes each output from the whole input window of its tile, so a NaN or infinite
input reaches every output of the tiles whose windows hold it, where a direct convolution
reaches only its 3x3 neighbours.
"""

import math

import numpy as np
from tvm import s_tir, te, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.s_tir.dlight.analysis import get_root_block
# The Cook-Toom construction of TVM's own Winograd convolutions (private names of a public module).
from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

from ..profiles import profile_for
from ..target_info import as_target, vector_lanes
from .blocks import (epilogue_end, find_block, int64_extents, is_unscheduled_cpu_func, parallelize_block,
                     try_schedule, unscheduled_root_blocks)

#: The kernel size the transforms are built for.
KERNEL = 3

#: Names of the blocks of :func:`winograd_conv2d`, in the order they run.
PADDED, ROWS, INPUT, GEMM, INVERSE, OUTPUT = ("winograd_padded", "winograd_rows", "winograd_input", "winograd_gemm",
                                              "winograd_inverse", "winograd_output")

#: The output tiles ``m`` of F(m x m, 3 x 3) the kernel is built for.
TILES = (4, 2)

#: Vectors of tiles in a register tile of the products (x ``filters_per_block`` filters: 8 accumulators;
#: with one vector, 4 accumulators ran the products at half the speed).
TILE_VECTORS = 2

#: The name of the PrimFunc (``tvm_sparse.profile`` finds dense layers by ``conv2d`` in the name).
FUNC_NAME = "conv2d_winograd"


def transform_matrices(tile):
    """The Winograd matrices ``(A, B, G)`` of F(``tile`` x ``tile``, 3 x 3) as float64 numpy arrays.

    ``A`` is ``(tile + 2) x tile`` (inverse transform), ``B`` is ``(tile + 2) x (tile + 2)``
    (input transform), ``G`` is ``(tile + 2) x 3`` (filter transform); the interpolation points
    are TVM's.
    """
    return _cook_toom_convolution(_interpolation_points(tile + KERNEL - 2), tile, KERNEL)


def tile_count(data_shape, tile):
    """``(tile rows, tile columns, tiles)``: the tiles of ``tile x tile`` outputs over all images of ``data_shape``."""
    batch, _, height, width = data_shape
    rows, columns = math.ceil(height / tile), math.ceil(width / tile)
    return rows, columns, batch * rows * columns


def padded_tile_count(data_shape, tile, lanes):
    """The tiles of :func:`tile_count` padded to whole register tiles of :data:`TILE_VECTORS` vectors of ``lanes``."""
    step = TILE_VECTORS * lanes
    return math.ceil(tile_count(data_shape, tile)[2] / step) * step


def filters_per_block(filters):
    """How many filters one register tile of the products holds (the packing of the transformed weight)."""
    return next(kb for kb in (4, 2, 1) if filters % kb == 0)


def winograd_tile_size(target, data_shape, weight_shape, strides, padding, dilation):
    """The output tile ``m`` of F(m x m, 3 x 3) for a dense convolution on ``target``, or None.

    None unless the target's profile gives Winograd (``winograd_min_channels``) and the layer is a
    3x3, stride-1, dilation-1, padding-1 convolution with at least that many input and output
    channels. Of F(4 x 4) and F(2 x 2), the one whose products (:func:`product_work`) are fewer;
    None when those are more than the profile's ``winograd_max_work`` times the direct
    convolution's (small maps: the tiles are mostly padding).
    """
    target = as_target(target)
    if target.kind.name != "llvm":
        return None
    profile = profile_for(target)
    if profile.winograd_min_channels is None:
        return None
    filters, channels, kh, kw = weight_shape
    if (kh, kw) != (KERNEL, KERNEL) or tuple(strides) != (1, 1) or tuple(dilation) != (1, 1):
        return None
    if tuple(padding) != (1, 1, 1, 1) or min(channels, filters) < profile.winograd_min_channels:
        return None
    lanes = vector_lanes(target)
    tile = min(TILES, key=lambda m: product_work(data_shape, m, lanes))
    direct = data_shape[0] * data_shape[2] * data_shape[3] * KERNEL * KERNEL
    return tile if product_work(data_shape, tile, lanes) <= profile.winograd_max_work * direct else None


def product_work(data_shape, tile, lanes):
    """Multiplications per channel pair of F(tile x tile, 3 x 3)'s products: ``(tile + 2)^2`` per tile, the
    tiles padded to whole register tiles (a direct convolution does 9 per output pixel)."""
    return (tile + 2) ** 2 * padded_tile_count(data_shape, tile, lanes)


def transform_weight(weight, tile):
    """The transformed filters ``U = G g G^T`` of a ``[K, C, 3, 3]`` weight, packed for the products.

    Returns a float32 array ``[tile + 2, tile + 2, K / kb, C, kb]`` (``kb`` from
    :func:`filters_per_block`): for each position of the tile, ``kb`` consecutive filters of
    one channel side by side, the values one step of the register tile broadcasts.
    """
    _, _, g = transform_matrices(tile)
    filters, channels = weight.shape[:2]
    kb = filters_per_block(filters)
    u = np.einsum("ei,kcij,nj->enkc", g, weight.astype(np.float64), g)
    alpha = tile + 2
    packed = u.reshape(alpha, alpha, filters // kb, kb, channels).transpose(0, 1, 2, 4, 3)
    return np.ascontiguousarray(packed, dtype=np.float32)


def _combination(matrix, column, terms):
    """``sum_i matrix[i, column] * terms(i)`` for a numpy ``matrix`` of constants and a TIR ``column``.

    One sum per column, holding only its nonzero coefficients (no product for a coefficient of
    +-1), under a select on ``column``: once the loop over ``column`` is unrolled, each unrolled
    step keeps its own sum.
    """
    def column_sum(j):
        total = None
        for i in range(matrix.shape[0]):
            coefficient = float(matrix[i, j])
            if coefficient == 0.0:
                continue
            term = terms(i)
            if coefficient == -1.0:
                total = -term if total is None else total - term
                continue
            term = term if coefficient == 1.0 else term * tirx.const(coefficient, term.dtype)
            total = term if total is None else total + term
        return total

    value = column_sum(matrix.shape[1] - 1)
    for j in range(matrix.shape[1] - 2, -1, -1):
        value = tirx.Select(column == j, column_sum(j), value)
    return value


def winograd_conv2d(data_shape, filters, tile, lanes, dtype="float32"):
    """The PrimFunc ``(data, transformed weight, output)`` of a padding-1 3x3 convolution by F(tile x tile, 3 x 3).

    Unscheduled (:class:`WinogradConv2d` schedules it). The tiles are padded to whole register
    tiles (:func:`padded_tile_count`; the products run with tiles along the vector lanes); padded
    tiles repeat the last tile, and their products are never read.

    Parameters
    ----------
    data_shape : tuple of int
        NCHW shape of the input.
    filters : int
        Output channels.
    tile : int
        ``m`` of F(m x m, 3 x 3).
    lanes : int
        The target's float32 vector lanes.
    """
    batch, channels, height, width = data_shape
    a, b, _ = transform_matrices(tile)
    alpha = tile + 2
    rows, columns, tiles = tile_count(data_shape, tile)
    padded_tiles = padded_tile_count(data_shape, tile, lanes)
    kb = filters_per_block(filters)
    data = te.placeholder(int64_extents(data_shape), dtype, name="data")
    weight = te.placeholder(int64_extents((alpha, alpha, filters // kb, channels, kb)), dtype, name="winograd_weight")
    padded = te.compute(
        int64_extents((batch, channels, rows * tile + 2, columns * tile + 2)),
        lambda n, c, y, x: tirx.if_then_else(tirx.all(y >= 1, y <= height, x >= 1, x <= width),
                                             data[n, c, y - 1, x - 1], tirx.const(0.0, dtype)), name=PADDED)

    def window(c, p, y, x):
        p = tirx.min(p, tiles - 1)
        return padded[p // (rows * columns), c, p // columns % rows * tile + y, p % columns * tile + x]

    rows_pass = te.compute(
        int64_extents((channels, padded_tiles, alpha, alpha)),
        lambda c, p, e, x: _combination(b, e, lambda y: window(c, p, y, x)), name=ROWS)
    transformed = te.compute(
        int64_extents((alpha, alpha, channels, padded_tiles)),
        lambda e, nu, c, p: _combination(b, nu, lambda x: rows_pass[c, p, e, x]), name=INPUT)
    rc = te.reduce_axis(tuple(int64_extents((0, channels))), "rc")
    products = te.compute(
        int64_extents((alpha, alpha, filters, padded_tiles)),
        lambda e, nu, k, p: te.sum(weight[e, nu, k // kb, rc, k % kb] * transformed[e, nu, rc, p], axis=rc),
        name=GEMM)
    inverse = te.compute(
        int64_extents((filters, alpha, tile, padded_tiles)),
        lambda k, e, x, p: _combination(a, x, lambda nu: products[e, nu, k, p]), name=INVERSE)
    out = te.compute(
        int64_extents((batch, filters, height, width)),
        lambda n, k, y, x: _combination(
            a, y % tile, lambda e: inverse[k, e, x % tile, (n * rows + y // tile) * columns + x // tile]),
        name=OUTPUT)
    return te.create_prim_func([data, weight, out])


class WinogradConv2d(ScheduleRule):
    """Schedule rule for the functions of :func:`winograd_conv2d` (with a fused epilogue).

    The input transform runs in parallel over channels, one tile's window at a time; the products
    keep ``kb`` filters x two vectors of tiles in registers over the channels, in parallel over
    positions and filter blocks; the inverse transform and the epilogue run in parallel over
    output channels, the inverse's first pass along vectors of tiles. It has no knobs: tuned or
    not, the schedule is the same (so tuning takes no task from these functions).
    """

    def apply(self, func, target, tunable):  # pylint: disable=unused-argument
        if not is_unscheduled_cpu_func(func, target):
            return None
        if find_block(s_tir.Schedule(func), (GEMM,)) is None:
            return None
        lanes = vector_lanes(target)

        def steps(sch):
            _schedule_input(sch)
            _schedule_products(sch, lanes)
            _schedule_output(sch, lanes)
            for tail in unscheduled_root_blocks(sch):  # blocks that broadcast the output further
                parallelize_block(sch, tail, lanes)

        return try_schedule(func, steps)


def _schedule_input(sch):
    """Per channel in parallel: pad it, then transform one tile's window at a time (all loops unrolled)."""
    transformed = sch.get_sblock(INPUT)
    e, nu, c, p = sch.get_loops(transformed)
    sch.reorder(c, p, e, nu)
    sch.parallel(c)
    rows_pass = sch.get_sblock(ROWS)
    sch.compute_at(rows_pass, p)
    sch.compute_at(sch.get_sblock(PADDED), c)
    for loop in [e, nu, *sch.get_loops(rows_pass)[2:]]:
        sch.unroll(loop)


def _schedule_products(sch, lanes):
    """Register tiles of ``kb`` filters x :data:`TILE_VECTORS` vectors of tiles, over the channels."""
    products = sch.get_sblock(GEMM)
    accumulators = sch.cache_write(products, 0, "local")
    e, nu, k, p, c = sch.get_loops(products)
    kb = int(sch.get(products).reads[0].source.shape[-1])
    k_outer, k_inner = sch.split(k, [None, kb])
    p_outer, p_vectors, p_lanes = sch.split(p, [None, TILE_VECTORS, lanes])
    sch.reorder(e, nu, k_outer, p_outer, c, k_inner, p_vectors, p_lanes)
    tiles = sch.fuse(e, nu, k_outer, p_outer)
    sch.parallel(tiles)
    sch.unroll(k_inner)
    sch.unroll(p_vectors)
    sch.vectorize(p_lanes)
    sch.reverse_compute_at(accumulators, tiles)
    sch.decompose_reduction(products, c)
    sch.vectorize(sch.get_loops(accumulators)[-1])


def _schedule_output(sch, lanes):
    """Per output channel in parallel: the inverse's first pass on vectors of tiles, then the outputs with the epilogue."""
    blocks = sch.get_child_blocks(get_root_block(sch))
    position = [sch.get(block).name_hint for block in blocks].index(OUTPUT)
    end = epilogue_end(sch, blocks, position)
    for block in blocks[position:end]:
        sch.compute_inline(block)
    out = blocks[end]
    tile = int(sch.get(sch.get_sblock(INVERSE)).writes[0].source.shape[2])
    n, k, y, x = sch.get_loops(out)
    tile_row, row = sch.split(y, [None, tile])
    tile_column, column = sch.split(x, [None, tile])
    sch.reorder(k, n, tile_row, tile_column, row, column)
    sch.parallel(k)
    sch.unroll(row)
    sch.unroll(column)
    inverse = sch.get_sblock(INVERSE)
    sch.compute_at(inverse, k)
    e, x_, p = sch.get_loops(inverse)[-3:]
    sch.unroll(e)
    sch.unroll(x_)
    if int(sch.get(p).extent) % lanes == 0:
        sch.vectorize(sch.split(p, [None, lanes])[1])
