"""Block-punched sparsity: the same kernel positions pruned across a block of filters x input channels.

The weight ``[K, C, R, S]`` is viewed as the GEMM matrix ``[K, C*R*S]`` (column ``c*R*S + r*S + s``,
PyTorch's reshape order) and split into blocks of ``bk`` filters x ``bc`` input channels, i.e.
``bk`` rows x ``bc*R*S`` columns. Inside a block a column is either kept for all ``bk`` rows or
pruned for all of them. Blocks at the edges are smaller when ``bk`` or ``bc`` does not divide
``K`` or ``C``; their missing rows are stored as zeros.
"""

from dataclasses import dataclass

import numpy as np

from ._conv import ReferenceConv, check_block, check_finite, window
from .errors import FormatError


@dataclass(eq=False)
class BlockPunchedWeight(ReferenceConv):
    """A block-punched convolution weight ``[K, C, R, S]``.

    Attributes
    ----------
    shape : tuple of int
        The dense weight shape ``(K, C, R, S)``.
    block : tuple of int
        ``(bk, bc)``: filters x input channels per block.
    block_ptr : numpy.ndarray
        ``[n_kblocks * n_cblocks + 1]`` int32: the kept columns of block ``(kb, cb)`` are
        ``block_ptr[b]:block_ptr[b + 1]`` with ``b = kb * n_cblocks + cb``.
    columns : numpy.ndarray
        ``[n_kept]`` int32: the kept GEMM columns (``c*R*S + r*S + s``), ascending inside a block.
    values : numpy.ndarray
        ``[bk, n_kept]``: the weights of the kept columns; ``values[:, block_ptr[b]:block_ptr[b + 1]]``
        is the dense value tile of block ``b`` (rows past ``K`` are zero).
    """

    shape: tuple
    block: tuple
    block_ptr: np.ndarray
    columns: np.ndarray
    values: np.ndarray

    @classmethod
    def from_dense(cls, weight, block=(8, 4)):
        """Build the format from a dense block-punched weight.

        Parameters
        ----------
        weight : array_like
            ``[K, C, R, S]`` (any kernel size) or ``[K, C]`` (a linear layer, stored as ``R = S = 1``).
        block : tuple of int
            ``(bk, bc)``.

        Raises
        ------
        FormatError
            If a column of a block is zero in some of the block's filters but not in all of them
            (the message names the block, the column's input channel and kernel position), or the
            weight holds NaN/inf.
        """
        weight = np.asarray(weight)
        if weight.ndim == 2:
            weight = weight[:, :, None, None]
        if weight.ndim != 4:
            raise FormatError(f"block-punched weights must have shape [K, C, R, S] or [K, C], got {weight.shape}")
        check_finite(weight, "the weight")
        bk, bc = check_block(block)
        n_filters, n_channels, kh, kw = weight.shape
        taps = kh * kw
        n_kb, n_cb = -(-n_filters // bk), -(-n_channels // bc)
        padded = np.zeros((n_kb * bk, n_cb * bc, kh, kw), dtype=weight.dtype)
        padded[:n_filters, :n_channels] = weight
        # [kb, row, cb, col-in-block]
        tiles = padded.reshape(n_kb, bk, n_cb, bc * taps)
        nonzero = tiles != 0
        real_row = (np.arange(n_kb * bk) < n_filters).reshape(n_kb, bk, 1, 1)
        kept = nonzero.any(axis=1)  # [kb, cb, col]
        partial = kept & ~(nonzero | ~real_row).all(axis=1)
        if partial.any():
            kb, cb, col = (int(i) for i in np.argwhere(partial)[0])
            c, tap = divmod(cb * bc * taps + col, taps)
            rows = range(kb * bk, min((kb + 1) * bk, n_filters))
            zero_rows = [k for k in rows if weight[k, c].reshape(-1)[tap] == 0]
            raise FormatError(
                f"block (filters {kb * bk}..{rows[-1]}, channels {cb * bc}..{min((cb + 1) * bc, n_channels) - 1}): "
                f"input channel {c}, kernel position {divmod(tap, kw)} is zero in filters {zero_rows} but not in "
                "the others; a block-punched block keeps or prunes a column in all its filters"
            )
        kb_idx, cb_idx, col_idx = np.nonzero(kept)  # block-major, columns ascending
        counts = np.bincount(kb_idx * n_cb + cb_idx, minlength=n_kb * n_cb)
        values = tiles[kb_idx, :, cb_idx, col_idx].T  # [bk, n_kept]
        result = cls(
            shape=(n_filters, n_channels, kh, kw),
            block=(bk, bc),
            block_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int32),
            columns=(cb_idx * bc * taps + col_idx).astype(np.int32),
            values=np.ascontiguousarray(values),
        )
        result.validate()
        return result

    @property
    def grid(self):
        """``(n_kblocks, n_cblocks)``: the number of blocks along filters and input channels."""
        (bk, bc), (n_filters, n_channels) = self.block, self.shape[:2]
        return -(-n_filters // bk), -(-n_channels // bc)

    @property
    def density(self):
        """The fraction of the dense weight's entries that are stored (edge-block padding excluded)."""
        bk, n_filters = self.block[0], self.shape[0]
        n_kb, n_cb = self.grid
        real_rows = np.minimum(bk, n_filters - bk * np.arange(n_kb))
        kept_per_kblock = np.diff(self.block_ptr).reshape(n_kb, n_cb).sum(axis=1)
        return float(np.dot(real_rows, kept_per_kblock)) / float(np.prod(self.shape))

    def tile(self, kblock, cblock):
        """The block's kept columns ``[kept]`` and its dense value tile ``[bk, kept]``."""
        b = kblock * self.grid[1] + cblock
        lo, hi = self.block_ptr[b], self.block_ptr[b + 1]
        return self.columns[lo:hi], self.values[:, lo:hi]

    def validate(self):
        """Check every invariant of the stored arrays; raise FormatError naming the first broken one."""
        if len(self.shape) != 4 or min(self.shape) < 1:
            raise FormatError(f"shape must be (K, C, R, S) of positive ints, got {self.shape}")
        bk, bc = check_block(self.block)
        n_filters, n_channels, kh, kw = self.shape
        n_kb, n_cb = self.grid
        ptr = self.block_ptr
        if ptr.shape != (n_kb * n_cb + 1,) or ptr[0] != 0 or np.any(np.diff(ptr) < 0):
            raise FormatError(f"block_ptr must be non-decreasing, start at 0 and have {n_kb * n_cb + 1} entries")
        n_kept = int(ptr[-1])
        if self.columns.shape != (n_kept,) or self.values.shape != (bk, n_kept):
            raise FormatError(
                f"columns must have shape ({n_kept},) and values ({bk}, {n_kept}); "
                f"got {self.columns.shape} and {self.values.shape}"
            )
        check_finite(self.values, "values")
        # Each check marks the blocks that break it; the first broken block (and its first broken
        # check) is reported, as a block-by-block walk would, without a Python loop over the blocks.
        block = self._stored_blocks()
        kb, cb = np.divmod(block, n_cb)
        width, total = bc * kh * kw, n_channels * kh * kw
        lo, hi = cb * width, np.minimum((cb + 1) * width, total)
        same_block = block[1:] == block[:-1]
        past_rows = np.any(self.values[n_filters - (n_kb - 1) * bk :], axis=0) & (kb == n_kb - 1)
        broken = [  # (the blocks that break a check, in order; what the message says of block b)
            (block[(self.columns < lo) | (self.columns >= hi)],
             lambda b: f" stores a column outside its channels' columns [{b % n_cb * width}, "
                       f"{min((b % n_cb + 1) * width, total)})"),
            (block[1:][same_block & (np.diff(self.columns) <= 0)], lambda b: ": columns must be strictly ascending"),
            (block[past_rows], lambda b: f" stores non-zero values in rows past filter {n_filters - 1}"),
        ]
        first = min((int(blocks[0]) for blocks, _ in broken if len(blocks)), default=None)
        if first is not None:
            describe = next(describe for blocks, describe in broken if len(blocks) and blocks[0] == first)
            raise FormatError(f"block {divmod(first, n_cb)}{describe(first)}")

    def _stored_blocks(self):
        """``[n_kept]`` int: the block (``filter block * n_cb + channel block``) of each stored column."""
        return np.repeat(np.arange(len(self.block_ptr) - 1), np.diff(self.block_ptr))

    def _block_rows(self):
        """``[n_kept]`` int: the filter block of each stored column."""
        return self._stored_blocks() // self.grid[1]

    def column_positions(self):
        """``(channel, row, col)``: three ``[n_kept]`` int arrays, the input channel and kernel
        position of each stored column (a column indexes ``C x R x S``)."""
        _, _, kh, kw = self.shape
        channel, tap = np.divmod(self.columns, kh * kw)
        return (channel, *np.divmod(tap, kw))

    def to_dense(self):
        """The dense weight ``[K, C, R, S]`` (pruned weights are 0)."""
        bk = self.block[0]
        n_kb = self.grid[0]
        gemm = np.zeros((n_kb * bk, int(np.prod(self.shape[1:]))), dtype=self.values.dtype)
        rows = self._block_rows()[None, :] * bk + np.arange(bk)[:, None]
        gemm[rows, self.columns[None, :]] = self.values
        return gemm[: self.shape[0]].reshape(self.shape)

    def _accumulate(self, x_padded, strides, out_size):
        """The reference convolution before the bias (:class:`ReferenceConv`), block by block from the stored tiles."""
        n_filters, _, kh, kw = self.shape
        bk = self.block[0]
        n_kb, n_cb = self.grid
        out = np.zeros((x_padded.shape[0], n_kb * bk) + out_size, dtype=np.result_type(x_padded, self.values))
        for kb in range(n_kb):
            for cb in range(n_cb):
                columns, tile = self.tile(kb, cb)
                if len(columns) == 0:
                    continue
                channel, tap = np.divmod(columns, kh * kw)
                inputs = np.stack(
                    [window(x_padded, r, s, strides, out_size)[:, c] for c, (r, s) in zip(channel, zip(*np.divmod(tap, kw)))],
                    axis=1,
                )
                out[:, kb * bk : (kb + 1) * bk] += np.einsum("kj,njhw->nkhw", tile, inputs)
        return out[:, :n_filters]
