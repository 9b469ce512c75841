"""The schedule steps that the dense CPU rules (``schedules.dense``) share.

Every dense kernel that ``LegalizeOps`` + ``FuseTIR`` produce has the same shape: an optional
padding block, one *accumulating* block (a reduction: convolution or matmul) writing an
intermediate buffer, then element-wise epilogue blocks (bias, folded BatchNorm, residual add,
ReLU/ReLU6) of which the last writes the output. :func:`schedule_register_tile` turns that into
one parallel loop over output tiles; per tile, the accumulator tile lives in vector registers for
the whole reduction and the epilogue is applied when the tile is written out. A padding stage runs
in the same parallel launch (:mod:`schedules.dense.padding`): the kernel wakes the thread pool once.
"""

import math
from dataclasses import dataclass

from tvm import s_tir, tirx
from tvm.sym.pattern import detect_linear_equation
from tvm.s_tir.dlight import ScheduleRule
from tvm.s_tir.dlight.analysis import get_root_block

from ..target_info import vector_lanes

#: Name of the convolution block that ``LegalizeOps`` gives a groups = 1 NCHW ``conv2d``.
CONV_BLOCK = "conv2d_nchw"

#: Iterator type of a data-parallel (spatial) block iterator in ``tirx.IterVar.iter_type``.
SPATIAL = 0

#: Fewer loop iterations than this run on one thread (waking the thread pool costs more).
MIN_PARALLEL_WORK = 16384


def find_block(sch, names):
    """The block of ``sch`` whose name is one of ``names``, or None."""
    for block in sch.get_child_blocks(get_root_block(sch)):
        if sch.get(block).name_hint in names:
            return block
    return None


@dataclass(frozen=True)
class ConstantWeightPacking:
    """Base of the compile-time layout changes of a kernel's constant weight (its block's second read).

    ``relay_passes.schedule_dense.PackDenseWeights`` applies :meth:`apply` to the PrimFunc and
    :meth:`pack` to the constant at every call site; a subclass names the block (``block_name``)
    and gives the layout as :meth:`index_map` and its numpy twin :meth:`pack`.

    Attributes
    ----------
    param : int
        Position of the weight among the PrimFunc's parameters.
    """

    param: int

    block_name = None

    def index_map(self, *indices):
        """The new indices of the weight element at ``indices``."""
        raise NotImplementedError

    def pack(self, weight):
        """The numpy ``weight`` in the layout :meth:`apply` gives the function."""
        raise NotImplementedError

    def apply(self, func):
        """``func`` with its weight parameter in the packed layout."""
        sch = s_tir.Schedule(func)
        sch.transform_layout(find_block(sch, (self.block_name,)), ("read", 1), self.index_map)
        return sch.mod["main"]


def int64_extents(shape):
    """``shape`` as int64 extents, the index type of the functions ``LegalizeOps`` writes (``FuseTIR`` fuses
    only functions whose buffers agree): what the TE computes of our own kernels take."""
    return [tirx.IntImm("int64", extent) for extent in shape]


def param_index(func, buffer):
    """Position of ``buffer`` among the parameters of ``func``, or None when it is not one."""
    for index, param in enumerate(func.params):
        if param.same_as(buffer):
            return index
    return None


def loop_after(sch, block, loop):
    """The loop of ``block`` right inside ``loop`` (LoopRVs of ``sch``)."""
    loops = sch.get_loops(block)
    position = [sch.get(other).same_as(sch.get(loop)) for other in loops].index(True)
    return loops[position + 1]


def extents(buffer):
    """The shape of a buffer as Python ints."""
    return [int(dim) for dim in buffer.shape]


def column_read_index(block):
    """``(a, b)``: the column index of ``block``'s first read is ``a * x + b`` in its column iterator ``x``.

    The column is axis 3 of the read and iterator 3 of the block (NCHW). Each coefficient is None
    when it is not a constant; the result is None when the index is not linear in ``x``.
    """
    coefficients = detect_linear_equation(block.reads[0].region[3].min, [block.iter_vars[3].var])
    if len(coefficients) != 2:
        return None
    return tuple(int(c.value) if hasattr(c, "value") else None for c in coefficients)


def column_stride(sch, conv):
    """The column stride of a convolution block: the coefficient of its output column iterator in
    the column index of its input (1 when the index is not linear in it)."""
    index = column_read_index(sch.get(conv))
    return index[0] if index is not None and index[0] is not None else 1


def cache_accumulator(sch, accumulate):
    """Give the reduction block ``accumulate`` an intermediate buffer when it writes the function's output.

    The register tile needs the reduction and the write-out as two blocks; a reduction with an
    epilogue already writes an intermediate, and is left as it is.
    """
    if sch.get(sch.get_child_blocks(get_root_block(sch))[-1]).same_as(sch.get(accumulate)):
        sch.cache_write(accumulate, 0, "global")


def schedule_register_tile(sch, accumulate, tile, accumulator_order, padding=None, unrolled_reductions=0,
                           tile_order=None, row_bands=1):
    """Tile the output, keep the accumulator tile in registers and fuse the epilogue.

    Parameters
    ----------
    sch : tvm.s_tir.Schedule
    accumulate : SBlockRV
        The reduction block (its spatial iterators in the order of the output axes).
    tile : list of int or ExprRV
        Tile size per output axis (1 = not tiled); must divide the extents.
    accumulator_order : list of int
        Order of the output axes in the accumulator tile; its last axis is vectorized. The tile
        is written out vectorized along the output's last (contiguous) axis.
    padding : schedules.dense.padding.PaddingStage, optional
        The padding stage: filled in parallel over images and channels in the same parallel launch
        as the tiles (:func:`share_parallel_launch`), or, when it pads ``per_channel``, one channel
        (or one band of tile rows, ``per_row_band``) at a time right before its tiles (the output
        axes are then images, channels, rows, columns, and the channel axis is not tiled).
    unrolled_reductions : int
        How many of the innermost reduction loops are unrolled (a depthwise kernel's window: the
        taps then share the input rows they load, and the accumulators stay in registers).
    tile_order : list of int, optional
        Order of the output axes in the (parallel) loop over tiles, outermost first; by default
        the output's own order. Not with a ``per_channel`` padding.
    row_bands : int
        Bands the tiles' rows (output axis 2) are cut into, outermost in the loop over tiles: the
        threads' shares of the loop are then bands of rows (of every filter tile), which read
        their own rows of the input. Must divide the row tiles; not with ``tile_order`` or a
        ``per_channel`` padding.

    Returns
    -------
    LoopRV
        The parallel loop.
    """
    cache_accumulator(sch, accumulate)
    output = inline_epilogue(sch, accumulate)
    sch.transform_layout(accumulate, ("write", 0), lambda *axes: [axes[i] for i in accumulator_order])

    outer, inner = [], []
    for loop, factor in zip(sch.get_loops(output), tile):
        loop_outer, loop_inner = sch.split(loop, [None, factor])
        outer.append(loop_outer)
        inner.append(loop_inner)
    per_channel = padding is not None and padding.per_channel
    if tile_order is not None:
        if per_channel:
            raise ValueError("a tile_order needs a padding stage that is not per_channel")
        outer = [outer[i] for i in tile_order]
    sch.reorder(*outer, *inner)
    if row_bands > 1:
        if per_channel or tile_order is not None:
            raise ValueError("row_bands takes neither a tile_order nor a per_channel padding")
        if int(sch.get(outer[2]).extent) % row_bands:
            raise ValueError(f"{row_bands} bands do not divide {sch.get(outer[2]).extent} row tiles")
        bands, rows = sch.split(outer[2], [row_bands, None])
        sch.reorder(outer[0], bands, outer[1], rows)
        outer = [outer[0], bands, outer[1], rows, *outer[3:]]
    per_band = per_channel and padding.per_row_band
    if per_channel:
        # images x channels in parallel; in each, the channel's padding (or each band's), then its tiles
        parallel = sch.fuse(*outer[:2])
        tiles = outer[3] if per_band else sch.fuse(*outer[2:])
    else:
        parallel = tiles = sch.fuse(*outer)
    sch.parallel(parallel)
    sch.vectorize(inner[-1])

    sch.compute_at(accumulate, tiles, preserve_unit_loops=True)
    loops = sch.get_loops(accumulate)[3 if per_band else 2 if per_channel else 1 :]
    iter_vars = sch.get(accumulate).iter_vars
    spatial = [loops[i] for i, var in enumerate(iter_vars) if int(var.iter_type) == SPATIAL]
    reduction = [loops[i] for i, var in enumerate(iter_vars) if int(var.iter_type) != SPATIAL]
    ordered = [spatial[i] for i in accumulator_order]
    sch.reorder(*reduction, *ordered)
    for loop in ordered[:-1]:
        sch.unroll(loop)
    sch.vectorize(ordered[-1])
    for loop in reduction[len(reduction) - unrolled_reductions :]:
        sch.unroll(loop)
    sch.decompose_reduction(accumulate, reduction[0])
    if per_channel:
        padding.schedule_per_channel(sch, outer[2] if per_band else parallel)
    elif padding is not None:
        padding.schedule_in_launch(sch, tiles)
    return parallel


def inline_epilogue(sch, accumulate):
    """Inline the epilogue after the reduction block ``accumulate`` into its last block (:func:`epilogue_end`), returned.

    That block writes the output out as each tile (or panel) of the reduction is finished.
    """
    blocks = sch.get_child_blocks(get_root_block(sch))
    position = [sch.get(b).name_hint for b in blocks].index(sch.get(accumulate).name_hint)
    end = epilogue_end(sch, blocks, position)
    for block in blocks[position + 1 : end]:
        sch.compute_inline(block)
    return blocks[end]


def epilogue_end(sch, blocks, position):
    """Index of the last block after ``blocks[position]`` (the reduction) that writes as many elements as it.

    The epilogue up to that block is applied as each accumulator tile is written out. Blocks after
    it broadcast the result to a larger output (squeeze-excite scales a whole map by the
    per-channel result of a 1x1 map): inside the tile loop they would recompute the reduction for
    every element they broadcast to, so they stay stages of their own (:func:`parallelize_block`).
    """
    def size(block):
        return math.prod(extents(sch.get(block).writes[0].source))

    end = position
    while end + 1 < len(blocks) and size(blocks[end + 1]) == size(blocks[position]):
        end += 1
    return end


def parallelize_block(sch, block, lanes):
    """Run the leading data-parallel loops of a root ``block`` in parallel, with vector-wide inner steps.

    A block that is data-parallel throughout keeps its trailing loops (the contiguous rows of the
    map) as vector steps under the parallel loop, so that a per-channel operand (a squeeze-excite
    scale) stays a scalar broadcast; a reduction over the trailing loops (a mean) sums into vector
    partial sums (:func:`vectorize_reduction`). Blocks of fewer than :data:`MIN_PARALLEL_WORK`
    loop iterations stay on one thread; a block whose loops do not match its iterators (already
    transformed) is left as it is.
    """
    loops = sch.get_loops(block)
    iter_vars = sch.get(block).iter_vars
    if len(loops) != len(iter_vars):
        return
    extents_ = [int(sch.get(loop).extent) for loop in loops]
    leading = 0
    while leading < len(iter_vars) and int(iter_vars[leading].iter_type) == SPATIAL:
        leading += 1
    if leading == 0 or math.prod(extents_) < MIN_PARALLEL_WORK:
        return
    if leading < len(loops):
        sch.parallel(sch.fuse(*loops[:leading]))
        vectorize_reduction(sch, block, loops[leading:], lanes)
        return
    rows = vector_rows(extents_, lanes)
    if rows == len(loops):
        fused = sch.fuse(*loops)
        if math.prod(extents_) % lanes == 0:
            fused, vector = sch.split(fused, [None, lanes])
            sch.vectorize(vector)
        sch.parallel(fused)
        return
    sch.parallel(sch.fuse(*loops[: len(loops) - rows]))
    inner = sch.fuse(*loops[len(loops) - rows :])
    if math.prod(extents_[len(loops) - rows :]) % lanes == 0:
        inner = sch.split(inner, [None, lanes])[1]
    sch.vectorize(inner)


def vector_rows(extents_, lanes):
    """How many trailing loops of a data-parallel block form its vector steps.

    The fewest trailing loops whose extents multiply to a multiple of ``lanes`` (split into
    vectors) and leave more than one iteration to run in parallel, or else the last loop alone
    when it is at most four vectors long (one vector step with a partial last vector); all loops
    when neither applies (split into vectors only when their extents multiply to a multiple of
    ``lanes``).
    """
    for rows in range(1, len(extents_)):
        if math.prod(extents_[-rows:]) % lanes == 0 and math.prod(extents_[:-rows]) > 1:
            return rows
    return 1 if extents_[-1] <= 4 * lanes and len(extents_) > 1 else len(extents_)


def vectorize_reduction(sch, block, reductions, lanes):
    """Sum the trailing reduction loops of ``block`` into vector-wide partial sums (``rfactor``).

    A sum over a map row by row is a chain of dependent adds; partial sums as wide as the first of
    ``lanes``, ``lanes / 2`` and ``lanes / 4`` that divides the reduced extent break the chain into
    independent vector adds, then one short sum adds the partial sums. A reduction that ``rfactor``
    does not recognise as commutative, or an extent that none of those (above 1) divides, stays a
    chain.
    """
    extent = math.prod(int(sch.get(loop).extent) for loop in reductions)
    width = next((w for w in (lanes, lanes // 2, lanes // 4) if w > 1 and extent % w == 0), None)
    if width is None:
        return
    fused = sch.fuse(*reductions)
    vector = sch.split(fused, [None, width])[1]
    try:
        partial = sch.rfactor(vector, factor_axis=len(sch.get(block).iter_vars) - len(reductions))
    except s_tir.ScheduleError:
        return
    sch.vectorize(sch.get_loops(partial)[-1])


def unscheduled_root_blocks(sch):
    """The blocks at the root of ``sch`` none of whose loops is parallel, vectorized, unrolled or bound."""
    return [block for block in sch.get_child_blocks(get_root_block(sch))
            if all(sch.get(loop).kind == tirx.ForKind.SERIAL for loop in sch.get_loops(block))]


def share_parallel_launch(sch, stage, tiles, by_rows=False):
    """Fill the stage ``stage`` in parallel in the parallel launch of the loop ``tiles``, before it.

    Both parallel loops go under a unit loop that LLVM's CPU code generator turns into one launch of
    the thread pool (``pragma_parallel_launch_point``); each thread fills its share of the stage,
    waits at a barrier (``pragma_parallel_barrier_when_finish``) for the others, then takes its share
    of the tiles. The stage's outer two loops (images and channels) are the ones shared out, or with
    ``by_rows`` its outer three as images, rows, channels: a thread then fills the rows of every
    channel that its share of tiles (taken in bands of rows) reads, rather than channels that the
    other threads' tiles read too, through the other core's cache.
    """
    launch = sch.add_unit_loop(tiles)
    sch.compute_at(stage, launch, preserve_unit_loops=True)
    images, channels, rows = sch.get_loops(stage)[1:4]
    if by_rows:
        sch.reorder(images, rows, channels)
    shared = sch.fuse(images, rows, channels) if by_rows else sch.fuse(images, channels)
    sch.parallel(shared)
    sch.annotate(shared, "pragma_parallel_barrier_when_finish", 1)
    sch.annotate(launch, "pragma_parallel_launch_point", 1)


def sums_several_terms(sch, block):
    """Whether ``block`` reduces over more than one term (a 1x1 convolution of one input channel does not).

    The register tile splits the reduction loops; a block whose reduction extents are all 1 has
    none left once normalised, and the fallback rule schedules it.
    """
    return any(int(var.iter_type) != SPATIAL and int(var.dom.extent) > 1 for var in sch.get(block).iter_vars)


def try_schedule(func, steps):
    """Run ``steps(sch)`` on a new schedule of ``func``; None when a primitive refuses the function.

    Rules use it so that a function whose structure differs from what the rule expects (found
    only while scheduling) is left to the next rule instead of failing the build.
    """
    sch = s_tir.Schedule(func)
    try:
        steps(sch)
    except s_tir.ScheduleError:
        return None
    return sch


def is_unscheduled_cpu_func(func, target):
    """Whether a rule may schedule ``func`` for ``target``.

    True for a TIR PrimFunc (rules also see the module's Relax functions) built of blocks under a
    root block, none of whose loops is parallel, vectorized, unrolled or bound yet (a hand-written
    kernel, such as the sparse ones, is left as it is), when the target is a CPU.
    """
    if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
        return False
    if func.attrs is not None and "tirx.is_scheduled" in func.attrs:
        # A finished kernel (the sparse ones): checking its body would print all of it on error.
        return False
    sch = s_tir.Schedule(func)
    try:
        blocks = sch.get_child_blocks(get_root_block(sch))
    except ValueError:
        return False
    return all(sch.get(loop).kind == tirx.ForKind.SERIAL for block in blocks for loop in sch.get_loops(block))


class RegisterTileRule(ScheduleRule):
    """Base of the dense CPU rules: one accumulating block, found by name, register-tiled.

    A subclass names its block (``block_name``), may decline a function in :meth:`accepts`, and
    schedules in :meth:`schedule_block` (usually ending with :func:`schedule_register_tile`).
    """

    block_name = None

    def apply(self, func, target, tunable):
        if not is_unscheduled_cpu_func(func, target):
            return None
        probe = s_tir.Schedule(func)
        block = find_block(probe, (self.block_name,))
        if block is None or not sums_several_terms(probe, block) or not self.accepts(probe, block, target):
            return None

        def steps(sch):
            self.schedule_block(sch, find_block(sch, (self.block_name,)), target, tunable)
            for tail in unscheduled_root_blocks(sch):  # the broadcasting blocks after the epilogue
                parallelize_block(sch, tail, vector_lanes(target))

        return try_schedule(func, steps)

    def accepts(self, sch, block, target):  # pylint: disable=unused-argument
        """Whether the rule takes the function whose accumulating block is ``block``."""
        return True

    def schedule_block(self, sch, block, target, tunable):
        """Schedule the function around its accumulating ``block`` (knobs sampled when ``tunable``)."""
        raise NotImplementedError
