"""Pattern sparsity for 3x3 convolutions, stored in PatDNN's filter-kernel-weight (FKW) order.

Every kept 3x3 kernel keeps the weights of one mask of a small pattern library ``[P, 3, 3]``
(4 entries per pattern, at most 5); kernels removed by connectivity pruning are simply absent.
Filters are reordered so that filters with the same number of kept kernels and the same pattern
mix sit together, and inside a filter the kernels are sorted by pattern, then by input channel.
"""

from dataclasses import dataclass

import numpy as np

from ._conv import ReferenceConv, check_finite, window
from .errors import FormatError

#: Pattern kernels keep at most this many of their 9 weights (4 is the norm, 5 is allowed).
MAX_ENTRIES = 5
#: An inferred library with more masks than this is not pattern pruning.
MAX_INFERRED_PATTERNS = 16


def _check_library(library, max_entries):
    """Return the library as a uint8 ``[P, 3, 3]`` array of 0/1 masks with equal entry counts."""
    library = np.asarray(library)
    if library.ndim != 3 or library.shape[1:] != (3, 3):
        raise FormatError(f"a pattern library must have shape [P, 3, 3], got {library.shape}")
    if not np.isin(library, (0, 1)).all():
        raise FormatError("a pattern library must hold 0/1 masks only")
    library = library.astype(np.uint8)
    counts = library.reshape(len(library), 9).sum(axis=1)
    for p, count in enumerate(counts):
        if count == 0 or count > max_entries:
            raise FormatError(f"pattern {p} keeps {count} of 9 weights; patterns keep 1 to {max_entries}")
        if count != counts[0]:
            raise FormatError(
                f"pattern {p} keeps {count} weights but pattern 0 keeps {counts[0]}: "
                "every pattern of a library keeps the same number of weights"
            )
    _, first = np.unique(library.reshape(len(library), 9), axis=0, return_index=True)
    if len(first) != len(library):
        duplicate = sorted(set(range(len(library))) - set(first.tolist()))[0]
        raise FormatError(f"pattern {duplicate} repeats an earlier pattern of the library")
    return library


def _infer_library(masks, where, max_entries, max_patterns):
    """The library of the kept kernels' masks ``[n, 9]``: the distinct masks that keep the most taps.

    A kernel whose mask is a strict subset of such a mask (a kept weight that happens to be 0)
    is assigned to it later; ``where`` maps a row of ``masks`` to its ``(filter, channel)``.
    """
    if len(masks) == 0:
        raise FormatError("every kernel is zero: there is no pattern to infer; pass the library explicitly")
    counts = masks.sum(axis=1)
    entries = counts.max()
    if entries > max_entries:
        k, c = where[np.argmax(counts)]
        raise FormatError(
            f"filter {k}, input channel {c} keeps {entries} of 9 weights; pattern kernels keep at most {max_entries}"
        )
    library = np.unique(masks[counts == entries], axis=0)
    if len(library) > max_patterns:
        raise FormatError(
            f"the kernels use {len(library)} distinct {entries}-entry masks, more than {max_patterns}: "
            "these weights are not pattern-pruned"
        )
    return library.reshape(-1, 3, 3).astype(np.uint8)


def _assign_patterns(masks, library, where):
    """The library pattern of each kept kernel: its exact mask, else the first mask that covers it."""
    flat = library.reshape(len(library), 9).astype(bool)
    exact = (masks[:, None, :] == flat[None]).all(axis=2)
    covers = ~(masks[:, None, :] & ~flat[None]).any(axis=2)
    uncovered = ~covers.any(axis=1)
    if uncovered.any():
        row = int(np.argmax(uncovered))
        k, c = where[row]
        taps = [divmod(int(t), 3) for t in np.flatnonzero(masks[row])]
        raise FormatError(
            f"filter {k}, input channel {c}: kept taps {taps} (row, col) match no pattern of the library"
        )
    return np.where(exact.any(axis=1), exact.argmax(axis=1), covers.argmax(axis=1)).astype(np.int32)


@dataclass(eq=False)
class PatternWeight(ReferenceConv):
    """A pattern-pruned 3x3 convolution weight ``[K, C, 3, 3]`` in FKW order.

    Attributes
    ----------
    shape : tuple of int
        The dense weight shape ``(K, C, 3, 3)``.
    library : numpy.ndarray
        ``[P, 3, 3]`` uint8 masks, each keeping ``entries`` taps.
    filter_ids : numpy.ndarray
        ``[K]`` int32: the original output channel of each stored filter (the FKW reorder).
    indptr : numpy.ndarray
        ``[K + 1]`` int32: the kernels of stored filter ``i`` are ``indptr[i]:indptr[i + 1]``.
    channels : numpy.ndarray
        ``[n_kernels]`` int32: the input channel of each kept kernel.
    pattern_ids : numpy.ndarray
        ``[n_kernels]`` int32: the library pattern of each kept kernel.
    values : numpy.ndarray
        ``[n_kernels, entries]``: the kept weights, in the row-major order of the pattern's taps.
    """

    shape: tuple
    library: np.ndarray
    filter_ids: np.ndarray
    indptr: np.ndarray
    channels: np.ndarray
    pattern_ids: np.ndarray
    values: np.ndarray

    #: The reference convolution's padding when none is given: a 3x3 kernel keeps the map's size.
    default_padding = 1

    @classmethod
    def from_dense(cls, weight, library=None, *, max_entries=MAX_ENTRIES, max_patterns=MAX_INFERRED_PATTERNS):
        """Build the format from a dense pattern-pruned weight.

        Parameters
        ----------
        weight : array_like
            ``[K, C, 3, 3]``; zero kernels are connectivity-pruned and not stored.
        library : array_like or None
            ``[P, 3, 3]`` 0/1 masks. ``None`` infers it from the distinct masks of the kept kernels.
        max_entries : int
            The most weights a pattern may keep.
        max_patterns : int
            The most masks an inferred library may hold.

        Raises
        ------
        FormatError
            If the weight is not 3x3, holds NaN/inf, or a kernel matches no pattern (the message
            names the filter and input channel).
        """
        weight = np.asarray(weight)
        if weight.ndim != 4 or weight.shape[2:] != (3, 3):
            raise FormatError(f"pattern weights must have shape [K, C, 3, 3], got {weight.shape}")
        check_finite(weight, "the weight")
        n_filters, n_channels = weight.shape[:2]
        kernels = weight.reshape(n_filters, n_channels, 9)
        kept = kernels.any(axis=2)
        where = np.argwhere(kept)  # rows in (filter, channel) order
        masks = kernels[kept] != 0
        if library is None:
            library = _infer_library(masks, where, max_entries, max_patterns)
        else:
            library = _check_library(library, max_entries)
        pattern_ids = _assign_patterns(masks, library, where)
        taps = cls._tap_table(library)
        values = kernels[kept][np.arange(len(masks))[:, None], taps[pattern_ids]]

        # FKW reorder: filters by (kept-kernel count, pattern mix); kernels by (pattern, channel).
        n_patterns = len(library)
        mix = np.zeros((n_filters, n_patterns), dtype=np.int64)
        np.add.at(mix, (where[:, 0], pattern_ids), 1)
        filter_ids = np.lexsort([np.arange(n_filters)] + [-mix[:, p] for p in reversed(range(n_patterns))] + [-mix.sum(1)])
        rank = np.empty(n_filters, dtype=np.int64)
        rank[filter_ids] = np.arange(n_filters)
        order = np.lexsort([where[:, 1], pattern_ids, rank[where[:, 0]]])
        indptr = np.concatenate([[0], np.cumsum(mix.sum(1)[filter_ids])])
        result = cls(
            shape=tuple(int(d) for d in weight.shape),
            library=library,
            filter_ids=filter_ids.astype(np.int32),
            indptr=indptr.astype(np.int32),
            channels=where[order, 1].astype(np.int32),
            pattern_ids=pattern_ids[order],
            values=np.ascontiguousarray(values[order]),
        )
        result.validate()
        return result

    @staticmethod
    def _tap_table(library):
        """``[P, entries]`` int: the flat tap indices (``3 * row + col``) of each pattern."""
        return np.stack([np.flatnonzero(mask.ravel()) for mask in library]) if len(library) else np.zeros((0, 0), int)

    @property
    def entries(self):
        """The number of weights each pattern keeps."""
        return int(self.library[0].sum()) if len(self.library) else 0

    @property
    def taps(self):
        """``[P, entries]`` array of ``(row, col)`` pairs: the kept tap positions of each pattern."""
        flat = self._tap_table(self.library)
        return np.stack([flat // 3, flat % 3], axis=-1)

    @property
    def density(self):
        """The fraction of the dense weight's entries that are stored."""
        return self.values.size / float(np.prod(self.shape))

    def kernel_filters(self):
        """``[n_kernels]`` int: the original output channel of each stored kernel."""
        return np.repeat(self.filter_ids, np.diff(self.indptr))

    def filter_groups(self):
        """The FKW groups: ``(start, stop)`` ranges of stored filters with the same kernel count and pattern mix."""
        keys = [
            tuple(np.bincount(self.pattern_ids[self.indptr[i] : self.indptr[i + 1]], minlength=len(self.library)))
            for i in range(len(self.filter_ids))
        ]
        starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
        return list(zip(starts, starts[1:] + [len(keys)]))

    def validate(self):
        """Check every invariant of the stored arrays; raise FormatError naming the first broken one."""
        if len(self.shape) != 4 or tuple(self.shape[2:]) != (3, 3):
            raise FormatError(f"shape must be (K, C, 3, 3), got {self.shape}")
        n_filters, n_channels = self.shape[:2]
        library = _check_library(self.library, max(MAX_ENTRIES, self.entries))
        if sorted(self.filter_ids.tolist()) != list(range(n_filters)):
            raise FormatError(f"filter_ids must be a permutation of range({n_filters})")
        indptr = self.indptr
        if indptr.shape != (n_filters + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            raise FormatError(f"indptr must be non-decreasing, start at 0 and have {n_filters + 1} entries")
        n_kernels = int(indptr[-1])
        if self.channels.shape != (n_kernels,) or self.pattern_ids.shape != (n_kernels,):
            raise FormatError(f"channels and pattern_ids must have {n_kernels} entries (indptr[-1])")
        if self.values.shape != (n_kernels, self.entries):
            raise FormatError(f"values must have shape ({n_kernels}, {self.entries}), got {self.values.shape}")
        check_finite(self.values, "values")
        for i in range(n_filters):
            lo, hi = indptr[i], indptr[i + 1]
            channels, patterns = self.channels[lo:hi], self.pattern_ids[lo:hi]
            if np.any((channels < 0) | (channels >= n_channels)):
                raise FormatError(f"filter {self.filter_ids[i]} stores an input channel outside [0, {n_channels})")
            if np.any((patterns < 0) | (patterns >= len(library))):
                raise FormatError(f"filter {self.filter_ids[i]} uses a pattern id outside [0, {len(library)})")
            if len(np.unique(channels)) != len(channels):
                raise FormatError(f"filter {self.filter_ids[i]} stores an input channel twice")
            if np.any(np.diff(patterns) < 0):
                raise FormatError(f"filter {self.filter_ids[i]}: kernels must be sorted by pattern (FKW order)")

    def to_dense(self):
        """The dense weight ``[K, C, 3, 3]`` (pruned weights are 0)."""
        n_filters, n_channels = self.shape[:2]
        dense = np.zeros((n_filters, n_channels, 9), dtype=self.values.dtype)
        taps = self._tap_table(self.library)
        dense[self.kernel_filters()[:, None], self.channels[:, None], taps[self.pattern_ids]] = self.values
        return dense.reshape(self.shape)

    def _accumulate(self, x_padded, strides, out_size):
        """The reference convolution before the bias (:class:`ReferenceConv`), straight from the stored kernels."""
        out = np.zeros((x_padded.shape[0], self.shape[0]) + out_size, dtype=np.result_type(x_padded, self.values))
        filters, taps = self.kernel_filters(), self.taps
        for pattern in range(len(self.library)):
            rows = np.flatnonzero(self.pattern_ids == pattern)
            for entry, (r, s) in enumerate(taps[pattern]):
                inputs = window(x_padded, r, s, strides, out_size)[:, self.channels[rows]]
                np.add.at(out, (slice(None), filters[rows]), inputs * self.values[rows, entry][None, :, None, None])
        return out
