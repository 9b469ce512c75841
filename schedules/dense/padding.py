"""The padding stage of the dense CPU kernels: a padded copy of the input, filled with vector stores.

``LegalizeOps`` pads a convolution's or a pooling's input in a block of its own (``pad_temp`` or
``pad``), one element at a time under a bounds test. When the kernel keeps that copy (it pads
something), the copy runs in the kernel's parallel launch: all of it before the tiles
(:func:`schedules.dense.blocks.share_parallel_launch`), or, for a depthwise convolution or a
pooling, one channel at a time right before the channel's tiles. Its innermost loop is cut into
the border, where the test stays, and the interior, which copies without a test in vector-wide
pieces.
With a column stride ``s`` > 1 the copy stores its columns split by residue (``[.., x % s, x // s]``)
so that the kernel's taps read contiguous rows. Its interior then runs over the split index with
the ``s`` residues unrolled inside: each iteration reads ``s`` neighbouring input columns and
writes one column of each residue's row. TVM would gather a strided vector one element at a time;
left as a loop, it is vectorized by LLVM, which loads contiguous vectors and deinterleaves them
with shuffles (``vpermt2ps`` on AVX-512, ``ld2`` on ARM).
"""

from dataclasses import dataclass

from tvm import s_tir

from .blocks import column_read_index, extents, find_block, share_parallel_launch

#: Names of the padding blocks that ``LegalizeOps`` gives convolutions (``pad_temp``) and pooling (``pad``).
PADDING_BLOCKS = ("pad_temp", "pad")


#: Most vector pieces an interior is cut into: wider rows get pieces of several vectors each.
MAX_INTERIOR_PIECES = 8


@dataclass(frozen=True)
class PaddingStage:
    """A padding block kept as a stage of the kernel, and where its innermost loop needs no bounds test.

    Attributes
    ----------
    block : SBlockRV
    interior : tuple of int
        ``(start, stop)``: the range of the padded buffer's last index (in the stage's layout) over
        which every element is a copy of the input.
    lanes : int
        Vector lanes of the target: the size of the interior's pieces.
    column_stride : int
        The residues the stage's columns are split into (1: not split).
    per_channel : bool
        Whether each channel is padded right before its own tiles, in the same iteration of the
        parallel loop (a depthwise convolution or a pooling: an output channel reads one input
        channel), instead of all channels before all tiles: the channel's padded copy is then still
        in the cache when its tiles read it.
    per_row_band : bool
        With ``per_channel``: whether each band of tile rows of a channel is padded right before
        the band's tiles, rather than the whole channel before all of them. A padded channel
        larger than the L1 cache would be read back from L2; a band's copy stays in L1, and
        reading the input from memory overlaps the computing of the bands before it.
    by_rows : bool
        Without ``per_channel``: whether the threads share out the stage by rows (of every
        channel) rather than by channels (:func:`schedules.dense.blocks.share_parallel_launch`),
        for a kernel whose parallel tiles run rows outermost.
    """

    block: object
    interior: tuple
    lanes: int
    per_channel: bool = False
    column_stride: int = 1
    per_row_band: bool = False
    by_rows: bool = False

    def schedule_per_channel(self, sch, channels):
        """Fill a channel's padding (or a band's) at the start of its iteration of the loop ``channels`` (or over bands)."""
        sch.compute_at(self.block, channels, preserve_unit_loops=True)
        self.vectorize_interior(sch)

    def schedule_in_launch(self, sch, tiles):
        """Fill the stage in the parallel launch of the loop ``tiles``, its interior with vector stores."""
        share_parallel_launch(sch, self.block, tiles, self.by_rows)
        self.vectorize_interior(sch)

    def vectorize_interior(self, sch):
        """Cut the stage's column loop into its borders and its interior, copied in vectors.

        Unsplit columns: the interior is cut into vector-wide pieces that TVM vectorizes. Columns
        split by residue: the residue loop goes inside, unrolled, and LLVM vectorizes the interior
        (the module docstring says why).
        """
        column = sch.get_loops(self.block)[-1]
        if not _binds_index_to(sch, self.block, len(sch.get(self.block).iter_vars) - 1, column):
            return  # the loop is offset from the index: the interior is not known in its terms
        extent = int(sch.get(column).extent)
        start, stop = max(0, self.interior[0]), min(extent, self.interior[1])
        if self.column_stride > 1:
            residue = sch.get_loops(self.block)[-2]
            sch.reorder(column, residue)
            sch.unroll(residue)
            parts = [size for size in (start, stop - start, extent - stop) if size > 0]
            if stop > start and len(parts) > 1:
                sch.loop_partition(column, parts[:-1] + [None])
            return
        if stop <= start:
            return
        # pieces of whole vectors (a loop cannot be split once partitioned: its range no longer starts at 0)
        piece = self.lanes * -(-(stop - start) // (self.lanes * MAX_INTERIOR_PIECES))
        whole, remainder = divmod(stop - start, piece)
        pieces = [start] + [piece] * whole + [remainder, extent - stop]
        parts = [size for size in pieces if size > 0]
        loops = sch.loop_partition(column, parts[:-1] + [None]) if len(parts) > 1 else [column]
        first = 1 if start > 0 else 0
        last = len(loops) - (1 if stop < extent else 0)
        for loop in loops[first:last]:
            sch.vectorize(loop)


def pads_nothing(sch):
    """Whether the function has no padding block (:data:`PADDING_BLOCKS`), or one that only copies."""
    block = find_block(sch, PADDING_BLOCKS)
    return block is None or extents(sch.get(block).reads[0].source) == extents(sch.get(block).writes[0].source)


def splits_columns(sch, column_stride):
    """Whether :func:`schedule_padding` stores the padded columns split by residue for ``column_stride``.

    It does when the stride is above 1, the function pads something, and the stride divides the
    padded width.
    """
    block = find_block(sch, PADDING_BLOCKS)
    return (column_stride > 1 and not pads_nothing(sch)
            and extents(sch.get(block).writes[0].source)[-1] % column_stride == 0)


def schedule_padding(sch, lanes, column_stride=1, per_channel=False, per_row_band=False, by_rows=False):
    """Inline a padding block (:data:`PADDING_BLOCKS`) that only copies, else prepare it as a stage.

    Parameters
    ----------
    sch : tvm.s_tir.Schedule
    lanes : int
        Vector lanes of the target.
    per_channel : bool
        Pad each channel right before its tiles (:attr:`PaddingStage.per_channel`).
    per_row_band : bool
        With ``per_channel``, pad each band of tile rows right before its tiles (:attr:`PaddingStage.per_row_band`).
    by_rows : bool
        Without ``per_channel``, share the stage out between the threads by rows (:attr:`PaddingStage.by_rows`).
    column_stride : int
        The kernel's column stride. Above 1, and when it divides the padded width, the padded buffer
        stores its columns split by residue, and the padding loops run in that order, so that the
        stores are contiguous and no element pays for the index arithmetic of the change.

    Returns
    -------
    PaddingStage or None
        The stage when the kernel keeps it (for :func:`schedules.dense.blocks.schedule_register_tile`).
    """
    block = find_block(sch, PADDING_BLOCKS)
    if block is None:
        return None
    pad = sch.get(block)
    if pads_nothing(sch):
        sch.compute_inline(block)
        return None
    left = _left_padding(pad)
    width = extents(pad.reads[0].source)[-1]
    stride = column_stride if splits_columns(sch, column_stride) else 1
    if stride > 1:
        def split_columns(n, c, y, x):
            return n, c, y, x % stride, x // stride
        sch.transform_layout(block, ("write", 0), split_columns)
        sch.transform_block_layout(block, split_columns)
    # a split index h holds the padded columns s*h .. s*h + s - 1: all copies when they lie in
    # [left, left + width)
    interior = (-(-left // stride), (left + width) // stride) if left is not None else (0, 0)
    return PaddingStage(block, interior, lanes, per_channel, stride, per_channel and per_row_band,
                        by_rows and not per_channel)


def _left_padding(pad):
    """Columns of padding before the input in the padding block ``pad`` (None when its index is not ``x - left``)."""
    index = column_read_index(pad)
    if index is None or index[0] != 1 or index[1] is None:
        return None
    return -index[1]


def _binds_index_to(sch, block, index, loop):
    """Whether the iterator ``index`` of ``block`` is bound to the variable of ``loop`` itself."""
    realize = _block_realize(sch.mod["main"].body, sch.get(block))
    return realize is not None and realize.iter_values[index].same_as(sch.get(loop).loop_var)


def _block_realize(stmt, block):
    """The ``SBlockRealize`` of ``block`` under ``stmt``, or None."""
    if isinstance(stmt, s_tir.SBlockRealize):
        return stmt if stmt.block.same_as(block) else _block_realize(stmt.block.body, block)
    if hasattr(stmt, "seq"):
        children = list(stmt.seq)
    else:
        children = [getattr(stmt, name, None) for name in ("body", "then_case", "else_case")]
    for child in children:
        found = _block_realize(child, block) if child is not None else None
        if found is not None:
            return found
    return None
