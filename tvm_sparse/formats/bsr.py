"""Block sparse rows (BSR) for 1x1 convolutions and linear layers.

The weight ``[K, C]`` (or ``[K, C, 1, 1]``) is split into ``bh x bw`` blocks; a block with any
non-zero weight is stored whole. The arrays follow ``scipy.sparse.bsr_matrix``: ``indptr`` over
block rows, ``indices`` the block columns, ``values [nnzb, bh, bw]``. When ``bh``/``bw`` do not
divide ``K``/``C`` the matrix is padded with zeros to ``padded_shape``.
"""

from dataclasses import dataclass

import numpy as np

from ._conv import ReferenceConv, check_block, check_finite, window
from .errors import FormatError


@dataclass(eq=False)
class BSRWeight(ReferenceConv):
    """A block-sparse 1x1 convolution or linear weight.

    Attributes
    ----------
    shape : tuple of int
        The dense weight shape: ``(K, C)`` or ``(K, C, 1, 1)``.
    block : tuple of int
        ``(bh, bw)``.
    indptr : numpy.ndarray
        ``[n_block_rows + 1]`` int32.
    indices : numpy.ndarray
        ``[nnzb]`` int32 block column of each stored block, ascending inside a block row.
    values : numpy.ndarray
        ``[nnzb, bh, bw]``.
    """

    shape: tuple
    block: tuple
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    @classmethod
    def from_dense(cls, weight, block=(8, 4)):
        """Build the format from a dense weight.

        Parameters
        ----------
        weight : array_like
            ``[K, C]`` or ``[K, C, 1, 1]``.
        block : tuple of int
            ``(bh, bw)``: output x input channels per block.

        Raises
        ------
        FormatError
            If the weight is not a matrix or a 1x1 kernel, or holds NaN/inf.
        """
        weight = np.asarray(weight)
        if not (weight.ndim == 2 or (weight.ndim == 4 and weight.shape[2:] == (1, 1))):
            raise FormatError(
                f"BSR stores [K, C] or [K, C, 1, 1] weights, got {weight.shape}; "
                "use BlockPunchedWeight or PatternWeight for larger kernels"
            )
        check_finite(weight, "the weight")
        bh, bw = check_block(block)
        matrix = weight.reshape(weight.shape[:2])
        n_br, n_bc = -(-matrix.shape[0] // bh), -(-matrix.shape[1] // bw)
        padded = np.zeros((n_br * bh, n_bc * bw), dtype=weight.dtype)
        padded[: matrix.shape[0], : matrix.shape[1]] = matrix
        tiles = padded.reshape(n_br, bh, n_bc, bw).transpose(0, 2, 1, 3)
        rows, cols = np.nonzero(tiles.any(axis=(2, 3)))
        result = cls(
            shape=tuple(int(d) for d in weight.shape),
            block=(bh, bw),
            indptr=np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_br))]).astype(np.int32),
            indices=cols.astype(np.int32),
            values=np.ascontiguousarray(tiles[rows, cols]),
        )
        result.validate()
        return result

    @property
    def padded_shape(self):
        """``(K, C)`` rounded up to whole blocks."""
        (bh, bw), (n_rows, n_cols) = self.block, self.shape[:2]
        return -(-n_rows // bh) * bh, -(-n_cols // bw) * bw

    @property
    def density(self):
        """The fraction of the dense weight's entries that lie in stored blocks (padding excluded)."""
        (bh, bw), (n_rows, n_cols) = self.block, self.shape[:2]
        block_rows = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))
        heights = np.minimum(bh, n_rows - block_rows * bh)
        widths = np.minimum(bw, n_cols - self.indices.astype(np.int64) * bw)
        return float(np.dot(heights, widths)) / float(n_rows * n_cols)

    def validate(self):
        """Check every invariant of the stored arrays; raise FormatError naming the first broken one."""
        if not (len(self.shape) == 2 or (len(self.shape) == 4 and tuple(self.shape[2:]) == (1, 1))):
            raise FormatError(f"shape must be (K, C) or (K, C, 1, 1), got {self.shape}")
        bh, bw = check_block(self.block)
        n_rows, n_cols = self.padded_shape
        n_br, n_bc = n_rows // bh, n_cols // bw
        if self.indptr.shape != (n_br + 1,) or self.indptr[0] != 0 or np.any(np.diff(self.indptr) < 0):
            raise FormatError(f"indptr must be non-decreasing, start at 0 and have {n_br + 1} entries")
        nnzb = int(self.indptr[-1])
        if self.indices.shape != (nnzb,) or self.values.shape != (nnzb, bh, bw):
            raise FormatError(
                f"indices must have shape ({nnzb},) and values ({nnzb}, {bh}, {bw}); "
                f"got {self.indices.shape} and {self.values.shape}"
            )
        check_finite(self.values, "values")
        for row in range(n_br):
            cols = self.indices[self.indptr[row] : self.indptr[row + 1]]
            if np.any((cols < 0) | (cols >= n_bc)):
                raise FormatError(f"block row {row} stores a block column outside [0, {n_bc})")
            if np.any(np.diff(cols) <= 0):
                raise FormatError(f"block row {row}: block columns must be strictly ascending")
        dense = self._padded_dense()
        if np.any(dense[self.shape[0] :]) or np.any(dense[:, self.shape[1] :]):
            raise FormatError("a block stores non-zero values in the padding past the weight's shape")

    def _padded_dense(self):
        bh, bw = self.block
        n_rows, n_cols = self.padded_shape
        tiles = np.zeros((n_rows // bh, n_cols // bw, bh, bw), dtype=self.values.dtype)
        rows = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))
        tiles[rows, self.indices] = self.values
        return tiles.transpose(0, 2, 1, 3).reshape(n_rows, n_cols)

    def to_dense(self):
        """The dense weight, in the shape it was given (pruned weights are 0)."""
        n_rows, n_cols = self.shape[:2]
        return self._padded_dense()[:n_rows, :n_cols].reshape(self.shape)

    def matmul(self, columns):
        """Slow reference product ``W @ columns`` block by block (no densify).

        Parameters
        ----------
        columns : numpy.ndarray
            ``[C, M]``.

        Returns
        -------
        numpy.ndarray
            ``[K, M]``.
        """
        (bh, bw), (n_rows, n_cols) = self.block, self.shape[:2]
        columns = np.asarray(columns)
        if columns.ndim != 2 or columns.shape[0] != n_cols:
            raise FormatError(f"the right-hand side must be [{n_cols}, M], got {columns.shape}")
        padded = np.zeros((self.padded_shape[1], columns.shape[1]), dtype=columns.dtype)
        padded[:n_cols] = columns
        out = np.zeros((self.padded_shape[0], columns.shape[1]), dtype=np.result_type(columns, self.values))
        for row in range(len(self.indptr) - 1):
            for j in range(self.indptr[row], self.indptr[row + 1]):
                col = self.indices[j]
                out[row * bh : (row + 1) * bh] += self.values[j] @ padded[col * bw : (col + 1) * bw]
        return out[:n_rows]

    def linear(self, x, bias=None):
        """Reference ``torch.nn.functional.linear``: ``x [N, C] -> [N, K]``."""
        x = np.asarray(x)
        out = self.matmul(x.T).T
        return out if bias is None else out + np.asarray(bias)

    def _accumulate(self, x_padded, strides, out_size):
        """The reference 1x1 convolution before the bias (:class:`ReferenceConv`)."""
        inputs = window(x_padded, 0, 0, strides, out_size)
        n = inputs.shape[0]
        columns = inputs.transpose(1, 0, 2, 3).reshape(self.shape[1], -1)
        out = self.matmul(columns).reshape((self.shape[0], n) + out_size).transpose(1, 0, 2, 3)
        return np.ascontiguousarray(out)
