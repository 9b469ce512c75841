"""The knobs of the sparse CPU kernels, shared by their two code generators, and the size of their code."""

from dataclasses import dataclass

#: The code generators of the sparse CPU kernels (:attr:`SpecializedConvConfig.codegen`).
CODEGENS = ("specialized", "compact")


@dataclass(frozen=True)
class SpecializedConvConfig:
    """Tunable knobs of a sparse CPU kernel, for both code generators (``codegen``).

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
    column_blocks : int
        Parts each row of register tiles is split into, one per task (the rows of a 1x1 layer's
        map are one row of pixels): a core then computes the pixels it wrote in the layer before,
        whose lines sit in its own cache, for all filters, instead of a part of the filters for
        every pixel. At most one block per register tile of a row.
    codegen : str
        ``"specialized"``: weights and offsets are literals of the code (fastest, compile time
        grows with the non-zeros); ``"compact"``: code per pattern / block shape reading the
        weights from a constant table parameter (see :mod:`schedules.sparse_cpu.compact`).
    tap_copies : bool
        One copy of the input per tap column: aligned vector loads (see :mod:`schedules.sparse_cpu.layout`).
    register_shifts : bool
        One copy of the input's columns; tap columns are register shifts of its vectors (see
        :mod:`schedules.sparse_cpu.layout`). Needs stride 1 along the width and a register tile as wide as the input
        and output rows.
    fma_chains : int
        Independent FMA chains a compact register tile aims for: a tile with fewer accumulators
        keeps several sets of partial sums, an entry's taps going to the sets in turn, so that
        the FMA latency does not bound its loop. Defaults take the target's accumulator budget,
        so AVX2's 16 registers do not spill (measurements: ``docs/sparse-kernels.md``).
    im2col : bool
        The output pixels as one row, the input copied as its im2col matrix.
    prefetch_tiles : int
        Register tiles ahead whose input, output and residual lines the compact code prefetches
        on a one-row map (a 1x1 layer's pixels, an im2col row), where a tile reads every kept
        channel and writes every filter: more streams than a hardware prefetcher follows
        (0: none; other layouts and the specialised code never prefetch).
    prefetch_table_bytes : int
        Bytes ahead in its table whose weights and offsets each entry of the compact code
        prefetches (0: none; the specialised code has no table).
    filter_tiles_outer : bool
        The compact code runs each filter tile over all the task's output tiles before the next
        filter tile, instead of every filter tile on one output tile before the next: each tile
        then keeps its table entries in L1, writes a few output rows in sequence and reads its
        input again from L2. The default on one-row maps where the target's profile sets
        ``one_row_filter_tiles_outer``; the specialised code ignores it.
    private_input : bool
        Each parallel task copies the input rows it reads into its own scratch, instead of all
        tasks sharing one copy that every core writes a part of: no core then reads lines the
        other one just wrote (see :class:`schedules.sparse_cpu.layout.Layout`).
    """

    lanes: int
    vectors: int = 1
    rows: int = 4
    filters: int = 2
    channel_block: int = 32
    row_tiles: int = 2
    filter_splits: int = 1
    column_blocks: int = 1
    codegen: str = "specialized"
    tap_copies: bool = False
    im2col: bool = False
    private_input: bool = False
    register_shifts: bool = False
    fma_chains: int = 8
    prefetch_tiles: int = 0
    prefetch_table_bytes: int = 0
    filter_tiles_outer: bool = False

    def __post_init__(self):
        for name in ("lanes", "vectors", "rows", "filters", "channel_block", "row_tiles", "filter_splits", "column_blocks",
                     "fma_chains"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("prefetch_tiles", "prefetch_table_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.im2col and self.rows != 1:
            raise ValueError(f"an im2col kernel computes one row of pixels: rows must be 1, got {self.rows}")
        if self.codegen not in CODEGENS:
            raise ValueError(f"codegen must be one of {CODEGENS}, got {self.codegen!r}")
        if self.register_shifts and (self.tap_copies or self.im2col or self.lanes == 1):
            raise ValueError("register_shifts is an input layout of its own: not with tap_copies or im2col, "
                             "and it needs vectors (lanes > 1)")




def estimated_code_size(n_terms, rows, vectors):
    """Vector FMAs in the literal-weight code of ``n_terms`` terms with register tiles of
    ``rows x vectors``: a measure of its compile time, which the code budgets of
    :class:`schedules.profiles.TargetProfile` bound."""
    return n_terms * rows * vectors
