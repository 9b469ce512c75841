"""Software prefetch of the next filter tile's weights in the dense convolutions.

A dense convolution reads one filter tile's packed weights ``W[f, c, ...]`` (``[K/kb, C, R, S,
kb]``, :class:`schedules.dense.conv2d.WeightPacking`) once for every pixel tile that shares
them. Within a model the wide layers' weights are no longer in any cache when their layer runs,
so the first pixel tile of each filter tile waits on memory while the others compute from L2 and
leave memory idle. Instead, every pixel tile prefetches into L2 its share of the weights that
the *next* filter tile reads, as it computes: the loads of a filter tile are spread over the
whole previous one.

The schedule splits its loop over input channels into chunks and marks the loop over chunks and
the loop that numbers the pixel tiles (:func:`annotate_weight_prefetch`); the marks are schedule
annotations, so they are part of a tuning record's trace. After scheduling,
:func:`insert_weight_prefetches` (``relay_passes.schedule_dense.InsertWeightPrefetches``, and
the tuning builder) puts the prefetches at the top of each chunk. They sit outside the loops
that accumulate: LLVM keeps a tile's accumulators in registers only through loops with no other
memory access it cannot tell apart from them, and a prefetch is one.
"""

import math

import tvm
import tvm_ffi
from tvm import tirx

from ..profiles import profile_for

#: Annotation of the loop over chunks of input channels that carries the prefetches (value 1).
PREFETCH_WEIGHT = "tvm_sparse.prefetch_weight"

#: Annotation of the loop that numbers the pixel tiles; its value is how many groups of ``T``
#: pixel tiles it runs through (filter tiles times images when it is the fused loop over tiles).
PIXEL_TILES = "tvm_sparse.pixel_tiles"

CACHE_LINE_BYTES = 64

#: ``llvm.prefetch`` locality: 2 keeps the line in L2 (``prefetcht1`` on x86, ``PLDL2KEEP`` on ARM),
#: where the pixel tiles after the first read it.
L2_LOCALITY = 2

#: Vector multiply-adds per chunk of input channels, at least: a chunk's accumulators are
#: loaded and stored once (with prefetches between chunks, LLVM keeps them in registers within one).
CHUNK_MULTIPLY_ADDS = 256


def prefetches_weights(target, pixels):
    """Whether a dense convolution with ``pixels`` output pixels prefetches its weights on ``target``.

    Its profile's ``weight_prefetch_max_pixels`` says: the fewer pixels, the fewer multiply-adds
    per weight to hide its load from memory behind.
    """
    limit = profile_for(target).weight_prefetch_max_pixels
    return limit is not None and pixels <= limit


def chunk_channels(channels, multiply_adds_per_channel):
    """Input channels per chunk: the fewest that divide ``channels`` and give :data:`CHUNK_MULTIPLY_ADDS`."""
    for size in range(1, channels + 1):
        if channels % size == 0 and size * multiply_adds_per_channel >= CHUNK_MULTIPLY_ADDS:
            return size
    return channels


def annotate_weight_prefetch(sch, channels, pixel_tiles, groups, chunk):
    """Split ``channels`` (LoopRV over input channels) in chunks of ``chunk`` and mark the chunks and ``pixel_tiles``.

    ``groups`` is the number of times ``pixel_tiles`` runs through the pixel tiles of one filter
    tile (its extent divided by the pixel tiles per filter tile).
    """
    chunks, _ = sch.split(channels, [None, chunk])
    sch.annotate(chunks, PREFETCH_WEIGHT, 1)
    sch.annotate(pixel_tiles, PIXEL_TILES, groups)


def prefetched_module(mod):
    """``mod`` with :func:`insert_weight_prefetches` applied to each of its PrimFuncs (``mod`` itself if none changes)."""
    changed = {}
    for gvar, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            rewritten = insert_weight_prefetches(func)
            if not rewritten.same_as(func):
                changed[gvar] = rewritten
    if not changed:
        return mod
    mod = mod.clone()
    for gvar, func in changed.items():
        mod.update_func(gvar, func)
    return mod


def insert_weight_prefetches(func):
    """``func`` with the prefetches its annotated loops ask for, the annotations removed.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        A scheduled function; unchanged (the same object) when no loop carries
        :data:`PREFETCH_WEIGHT`.

    Returns
    -------
    tvm.tirx.PrimFunc

    Raises
    ------
    ValueError
        When the annotations are not one pair, or no block under the channel loop reads a 5-D
        packed weight parameter.
    """
    marked = {PREFETCH_WEIGHT: [], PIXEL_TILES: []}

    def find(loop):
        for key, loops in marked.items():
            if key in loop.annotations:
                loops.append(loop)

    tvm_ffi.structural_walk(func.body, (tirx.For, find))
    if not marked[PREFETCH_WEIGHT] and not marked[PIXEL_TILES]:
        return func
    # a loop copied by a later schedule step (the init loops of decompose_reduction) keeps its marks
    enclosing = [loop for loop in marked[PIXEL_TILES] if any(_contains(loop, channels) for channels in marked[PREFETCH_WEIGHT])]
    if len(marked[PREFETCH_WEIGHT]) != 1 or len(enclosing) != 1:
        raise ValueError(f"{PREFETCH_WEIGHT} must mark one loop, inside one loop marked {PIXEL_TILES}; found "
                         f"{len(marked[PREFETCH_WEIGHT])} loops, inside {len(enclosing)}")
    channels, tiles = marked[PREFETCH_WEIGHT][0], enclosing[0]
    weight, first, chunk = _weight_read(func, channels)
    prefetches = _prefetch_share(weight, first, chunk, channels, tiles)

    def rewrite(loop):
        if PREFETCH_WEIGHT in loop.annotations:
            return _with_body(loop, tirx.SeqStmt([prefetches, loop.body]))
        if PIXEL_TILES in loop.annotations:
            return _with_body(loop, loop.body)
        return loop

    return func.with_body(tvm_ffi.structural_map(func.body, (tirx.For, rewrite)))


def _contains(outer, loop):
    """Whether ``loop`` is nested in ``outer``."""
    found = []
    tvm_ffi.structural_walk(outer.body, (tirx.For, lambda inner: found.append(inner.same_as(loop))))
    return any(found)


def _with_body(loop, body):
    """``loop`` with ``body`` and without this module's annotations."""
    annotations = {key: value for key, value in loop.annotations.items() if key not in (PREFETCH_WEIGHT, PIXEL_TILES)}
    return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body, loop.thread_binding, annotations, loop.step)


def _weight_read(func, channels):
    """``(weight, first, chunk)`` of the convolution under the loop over chunks ``channels``.

    ``first`` is the weight element the convolution reads first in the loop's first iteration
    (the read's lower bound, the block's iterators replaced by their bindings and the loops from
    ``channels`` inwards at their start); ``chunk`` is the number of input channels per iteration.
    """
    inner = []
    tvm_ffi.structural_walk(channels.body, (tirx.For, lambda loop: inner.append(loop.loop_var)))
    params = list(func.params)
    found = []

    def visit(realize):
        block = realize.block
        for read in block.reads:
            if len(read.source.shape) == 5 and any(read.source.same_as(p) for p in params):
                found.append((read, block, realize.iter_values))

    tvm_ffi.structural_walk(channels.body, (tvm.s_tir.SBlockRealize, visit))
    if not found:
        raise ValueError(f"no block under the loop marked {PREFETCH_WEIGHT} reads a 5-D weight parameter")
    read, block, values = found[0]
    analyzer = tvm.sym.Analyzer()

    def read_at(chunk):
        starts = [(channels.loop_var, chunk)] + [(var, 0) for var in inner]
        bindings = [(iv.var, substitute(value, starts)) for iv, value in zip(block.iter_vars, values)]
        return [analyzer.simplify(substitute(dim.min, bindings)) for dim in read.region]

    first = read_at(0)
    chunk = analyzer.simplify(read_at(1)[1] - first[1])
    if not isinstance(chunk, tirx.IntImm):  # a schedule this module cannot read, not a caller's wrong type
        raise ValueError(  # noqa: TRY004
            f"the chunks of the loop marked {PREFETCH_WEIGHT} are not a constant number of channels")
    return read.source, first, int(chunk)


def substitute(expr, values):
    """``expr`` with each variable of ``values`` (``(variable, int or expression)`` pairs) replaced by its value."""
    values = list(values)

    def replace(var):
        for key, value in values:
            if var.same_as(key):
                return tirx.const(value, key.ty.dtype) if isinstance(value, int) else value
        return var

    return tvm_ffi.structural_map(expr, (tirx.Var, replace))


def _prefetch_share(weight, first, chunk, channels, tiles):
    """The prefetches of one chunk: this pixel tile's share of the next filter tile's weights.

    The next filter tile reads ``W[f + 1, c0 : c0 + C', ...]`` in the whole loop over chunks, a
    contiguous run of lines (``first`` is ``[f, c0, 0, ...]``, ``C'`` the channels of all the
    chunks). Pixel tile ``t`` of ``T`` prefetches, in chunk ``j``, the ``B`` lines from
    ``(j * T + t) * B``: over its chunks and the ``T`` tiles, every line once.
    """
    shape = [int(dim) for dim in weight.shape]
    per_channel = math.prod(shape[2:])
    per_line = CACHE_LINE_BYTES // (weight.dtype.bits // 8)
    lines = -(-int(channels.extent) * chunk * per_channel // per_line)
    pixel_tiles = int(tiles.extent) // int(tiles.annotations[PIXEL_TILES])
    share = -(-lines // (int(channels.extent) * pixel_tiles))
    index_type = weight.shape[1].ty.dtype
    following = tirx.min(first[0] + 1, shape[0] - 1)
    tile = tirx.floormod(tiles.loop_var, pixel_tiles)
    analyzer = tvm.sym.Analyzer()
    calls = []
    for line in range(share):
        position = tirx.min((channels.loop_var * pixel_tiles + tile) * share + line, lines - 1) * per_line
        index = [following, first[1] + tirx.floordiv(position, per_channel)]
        within = tirx.floormod(position, per_channel)
        for extent in (math.prod(shape[axis + 1:]) for axis in range(2, len(shape))):
            index.append(tirx.floordiv(within, extent))
            within = tirx.floormod(within, extent)
        index = [analyzer.simplify(tirx.Cast(index_type, i) if i.ty.dtype != index_type else i) for i in index]
        address = tirx.address_of(tirx.BufferLoad(weight, index))
        calls.append(tirx.Evaluate(tirx.call_intrin("void", "tirx.prefetch", address, 0, L2_LOCALITY, 1)))
    return calls[0] if len(calls) == 1 else tirx.SeqStmt(calls)
