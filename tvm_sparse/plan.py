"""Sparsity schemes and the pruning plan, the one contract between the PyTorch and TVM sides.

A *plan* maps tensor names (``"features.3.weight"``) to a scheme: which structure the pruned
weight has (3x3 patterns plus connectivity, block-punched, BSR, unstructured, filter) and how much
was removed. The pruning side writes it, the compiler reads it and checks it against the weights
with :func:`verify_plan` before trusting it. This module imports numpy only (never torch, never
TVM); the structure checks themselves belong to :mod:`tvm_sparse.formats`.

Examples
--------
>>> plan = {"conv2.weight": PatternScheme(entries=4, library_size=8, connectivity=0.5)}
>>> plan_from_json(plan_to_json(plan)) == plan
True
"""

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from tvm_sparse.formats import BlockPunchedWeight, BSRWeight, FormatError, PatternWeight

PATTERN_ENTRIES = (4, 5)
PATTERN_LIBRARY_SIZES = (4, 6, 8, 12)


class SchemeError(ValueError):
    """A scheme's parameters are invalid or do not fit together."""


class PlanError(ValueError):
    """A plan is malformed or does not match the weights it describes."""


def _check_fraction(scheme, name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise SchemeError(f"{scheme}: {name} must be a number in [0, 1), got {value!r}")


def _checked_block(scheme, block):
    """``block`` as a tuple of two positive ints, else SchemeError."""
    given = block
    block = tuple(block) if isinstance(block, (tuple, list)) else (block,)
    if len(block) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block):
        raise SchemeError(f"{scheme}: block must be two positive integers, got {given!r}")
    return block


def kept_count(total, removed_fraction):
    """How many of ``total`` units (kernels, columns, blocks) a pruner keeps when it removes ``removed_fraction``."""
    return int(round((1.0 - removed_fraction) * total))


def _max_kept_count(total, removed_fraction):
    """The most units a weight may keep and still meet the rate: one unit of slack for rounding."""
    return math.ceil((1.0 - removed_fraction) * total - 1e-9)


@dataclass(frozen=True)
class PatternScheme:
    """3x3 pattern pruning plus connectivity pruning (PatDNN).

    Every 3x3 kernel either is removed entirely (connectivity pruning) or keeps exactly the
    positions of one pattern of a small library.

    Parameters
    ----------
    entries : int
        Weights kept per kernel, 4 or 5.
    library_size : int
        Number of patterns in the library, one of 4, 6, 8, 12.
    keep_centre : bool
        Whether every pattern keeps the centre weight.
    connectivity : float
        Fraction of the kernels removed entirely, in [0, 1).
    library : array-like of shape (library_size, 3, 3) or None
        The 0/1 pattern masks; ``None`` until the pruner has generated them from the weights.
    """

    name: ClassVar[str] = "pattern"
    entries: int = 4
    library_size: int = 8
    keep_centre: bool = True
    connectivity: float = 0.0
    library: tuple | None = None

    def __post_init__(self):
        if self.entries not in PATTERN_ENTRIES:
            raise SchemeError(f"pattern: entries must be one of {PATTERN_ENTRIES}, got {self.entries!r}")
        if self.library_size not in PATTERN_LIBRARY_SIZES:
            raise SchemeError(
                f"pattern: library_size must be one of {PATTERN_LIBRARY_SIZES}, got {self.library_size!r}"
            )
        if not isinstance(self.keep_centre, bool):
            raise SchemeError(f"pattern: keep_centre must be a bool, got {self.keep_centre!r}")
        _check_fraction("pattern", "connectivity", self.connectivity)
        available = len(candidate_patterns(self.entries, self.keep_centre))
        if self.library_size > available:
            raise SchemeError(
                f"pattern: only {available} patterns keep {self.entries} entries"
                f"{' with the centre' if self.keep_centre else ''}; library_size {self.library_size} is too large"
            )
        if self.library is not None:
            object.__setattr__(self, "library", self._checked_library(self.library))

    def _checked_library(self, library):
        array = np.asarray(library)
        if array.shape != (self.library_size, 3, 3):
            raise SchemeError(
                f"pattern: library must have shape ({self.library_size}, 3, 3), got {array.shape}"
            )
        if not np.isin(array, (0, 1)).all():
            raise SchemeError("pattern: library entries must be 0 or 1")
        array = array.astype(np.uint8)
        for index, pattern in enumerate(array):
            if pattern.sum() != self.entries:
                raise SchemeError(
                    f"pattern: library pattern {index} keeps {int(pattern.sum())} entries, not {self.entries}"
                )
            if self.keep_centre and not pattern[1, 1]:
                raise SchemeError(f"pattern: library pattern {index} drops the centre but keep_centre is set")
        if len({pattern.tobytes() for pattern in array}) != len(array):
            raise SchemeError("pattern: library patterns must be distinct")
        return tuple(tuple(tuple(int(v) for v in row) for row in pattern) for pattern in array)

    @property
    def compression(self):
        """Dense size over kept size for the 3x3 weights."""
        return 9.0 / self.entries / (1.0 - self.connectivity)

    def library_array(self):
        """The library as a ``uint8`` array of shape ``(library_size, 3, 3)``; requires a library."""
        if self.library is None:
            raise SchemeError("pattern: this scheme has no library yet")
        return np.array(self.library, dtype=np.uint8)


class _SparsityScheme:
    """Shared by the schemes whose rate is ``sparsity``, the removed fraction (and maybe a ``block``)."""

    def __post_init__(self):
        if hasattr(self, "block"):
            object.__setattr__(self, "block", _checked_block(self.name, self.block))
        _check_fraction(self.name, "sparsity", self.sparsity)

    @property
    def compression(self):
        """Dense size over kept size."""
        return 1.0 / (1.0 - self.sparsity)


@dataclass(frozen=True)
class BlockPunchedScheme(_SparsityScheme):
    """Block-punched pruning.

    The weight ``[K, C, R, S]`` is viewed as the GEMM matrix ``[K, C*R*S]`` and split into blocks of
    ``bk`` filters x ``bc`` input channels (``bc*R*S`` columns); inside a block the same columns are
    kept for all ``bk`` rows.

    Parameters
    ----------
    block : tuple of int
        ``(bk, bc)``, 8x4 by default.
    sparsity : float
        Fraction of each block's columns removed, in [0, 1).
    """

    name: ClassVar[str] = "block_punched"
    block: tuple = (8, 4)
    sparsity: float = 0.0


@dataclass(frozen=True)
class BSRScheme(_SparsityScheme):
    """Block sparse rows for 1x1 convolutions and linear layers.

    Parameters
    ----------
    block : tuple of int
        ``(bh, bw)`` rows x columns of each dense block.
    sparsity : float
        Fraction of the blocks removed, in [0, 1).
    """

    name: ClassVar[str] = "bsr"
    block: tuple = (4, 4)
    sparsity: float = 0.0


@dataclass(frozen=True)
class UnstructuredScheme(_SparsityScheme):
    """Unstructured magnitude-style pruning (a baseline: no kernel speeds it up much).

    Parameters
    ----------
    sparsity : float
        Fraction of the weights removed, in [0, 1).
    """

    name: ClassVar[str] = "unstructured"
    sparsity: float = 0.0


@dataclass(frozen=True)
class FilterScheme(_SparsityScheme):
    """Filter (output channel) pruning, a baseline.

    Parameters
    ----------
    sparsity : float
        Fraction of the filters removed, in [0, 1).
    """

    name: ClassVar[str] = "filter"
    sparsity: float = 0.0


SCHEMES = {cls.name: cls for cls in (PatternScheme, BlockPunchedScheme, BSRScheme, UnstructuredScheme, FilterScheme)}


def candidate_patterns(entries, keep_centre):
    """Every 3x3 0/1 mask with ``entries`` ones (and the centre, if asked), in a fixed order.

    Returns
    -------
    numpy.ndarray of shape (n, 3, 3), dtype uint8
    """
    positions = [p for p in range(9) if not (keep_centre and p == 4)]
    chosen = entries - 1 if keep_centre else entries
    masks = []
    for combo in itertools.combinations(positions, chosen):
        mask = np.zeros(9, dtype=np.uint8)
        mask[list(combo)] = 1
        if keep_centre:
            mask[4] = 1
        masks.append(mask.reshape(3, 3))
    return np.stack(masks)


def scheme_to_dict(scheme):
    """A JSON-ready dict: ``{"scheme": name, **fields}``, the library as nested lists."""
    fields = dataclasses.asdict(scheme)
    for key, value in fields.items():
        if isinstance(value, tuple):
            fields[key] = json.loads(json.dumps(value))
    return {"scheme": scheme.name, **fields}


def scheme_from_dict(config):
    """Build a scheme from :func:`scheme_to_dict`'s output; unknown names or fields raise SchemeError."""
    if not isinstance(config, dict) or "scheme" not in config:
        raise SchemeError(f"a scheme config must be a dict with a 'scheme' key, got {config!r}")
    fields = dict(config)
    name = fields.pop("scheme")
    if not isinstance(name, str) or name not in SCHEMES:
        raise SchemeError(f"unknown scheme {name!r}; known: {sorted(SCHEMES)}")
    cls = SCHEMES[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise SchemeError(f"{name}: unknown field(s) {unknown}; known: {sorted(known)}")
    return cls(**fields)


def plan_to_json(plan):
    """Serialise a plan ``{tensor_fqn: scheme}`` to a JSON string (keys sorted)."""
    return json.dumps({fqn: scheme_to_dict(scheme) for fqn, scheme in plan.items()}, indent=1, sort_keys=True)


def plan_from_json(text):
    """Parse :func:`plan_to_json`'s output back into ``{tensor_fqn: scheme}``."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise PlanError(f"plan is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise PlanError(f"a plan must be a JSON object {{tensor_fqn: scheme}}, got {type(raw).__name__}")
    plan = {}
    for fqn, config in raw.items():
        try:
            plan[fqn] = scheme_from_dict(config)
        except SchemeError as err:
            raise PlanError(f"{fqn}: {err}") from err
    return plan


def save_plan(plan, path):
    """Write a plan to ``path`` as JSON."""
    Path(path).write_text(plan_to_json(plan) + "\n")


def load_plan(path):
    """Read a plan written by :func:`save_plan`."""
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"no plan file at {path}")
    return plan_from_json(path.read_text())


def _verify_pattern(scheme, weight):
    if scheme.library is None:
        return ["pattern scheme has no library; the compiler needs the library the weights were pruned with"]
    stored = PatternWeight.from_dense(weight, scheme.library_array())
    kernels = stored.shape[0] * stored.shape[1]
    kept = len(stored.channels)
    allowed = _max_kept_count(kernels, scheme.connectivity)
    if kept > allowed:
        return [f"{kept} of {kernels} kernels are non-zero but connectivity {scheme.connectivity} allows {allowed}"]
    return []


def _verify_block_punched(scheme, weight):
    stored = BlockPunchedWeight.from_dense(weight, block=scheme.block)
    _, n_channels, kh, kw = (stored.shape + (1, 1))[:4]
    bc = stored.block[1]
    kept = np.diff(stored.block_ptr).reshape(stored.grid)
    columns = np.minimum(bc, n_channels - bc * np.arange(stored.grid[1])) * kh * kw  # per channel block
    allowed = np.array([_max_kept_count(int(count), scheme.sparsity) for count in columns])
    return [
        f"block ({kb}, {cb}) keeps {kept[kb, cb]} of {columns[cb]} columns; sparsity {scheme.sparsity} allows "
        f"{allowed[cb]}"
        for kb, cb in np.argwhere(kept > allowed)[:3]
    ]


def _verify_bsr(scheme, weight):
    stored = BSRWeight.from_dense(weight, block=scheme.block)
    (bh, bw), (rows, cols) = stored.block, stored.padded_shape
    blocks = (rows // bh) * (cols // bw)
    allowed = _max_kept_count(blocks, scheme.sparsity)
    if len(stored.indices) > allowed:
        return [f"{len(stored.indices)} of {blocks} blocks are non-zero but sparsity {scheme.sparsity} allows {allowed}"]
    return []


def _verify_unstructured(scheme, weight):
    kept = int(np.count_nonzero(weight))
    allowed = _max_kept_count(weight.size, scheme.sparsity)
    if kept > allowed:
        return [f"{kept} of {weight.size} weights are non-zero but sparsity {scheme.sparsity} allows {allowed}"]
    return []


def _verify_filter(scheme, weight):
    filters = weight.shape[0]
    kept = int(np.count_nonzero(np.abs(weight).reshape(filters, -1).sum(axis=1)))
    allowed = _max_kept_count(filters, scheme.sparsity)
    if kept > allowed:
        return [f"{kept} of {filters} filters are non-zero but sparsity {scheme.sparsity} allows {allowed}"]
    return []


_VERIFIERS = {
    PatternScheme: _verify_pattern,
    BlockPunchedScheme: _verify_block_punched,
    BSRScheme: _verify_bsr,
    UnstructuredScheme: _verify_unstructured,
    FilterScheme: _verify_filter,
}


def verify_plan(plan, weights):
    """Check that every weight named in ``plan`` really has its scheme's structure and rate.

    The structure checks are :mod:`tvm_sparse.formats`' ``from_dense``; the rate may be missed by at
    most one kernel, block column or block (rounding).

    Parameters
    ----------
    plan : dict of str to scheme
    weights : dict of str to numpy.ndarray
        The constant weights by tensor name; names not in the plan are ignored (dense).

    Raises
    ------
    PlanError
        Naming every tensor that is missing, of the wrong shape, or not pruned as the plan says.
    """
    problems = []
    for fqn, scheme in plan.items():
        verifier = _VERIFIERS.get(type(scheme))
        if verifier is None:
            problems.append(f"{fqn}: {scheme!r} is not a scheme")
            continue
        if fqn not in weights:
            problems.append(f"{fqn}: the plan names this tensor but the weights have no such tensor")
            continue
        weight = np.asarray(weights[fqn])
        try:
            problems.extend(f"{fqn}: {problem}" for problem in verifier(scheme, weight))
        except FormatError as err:
            problems.append(f"{fqn}: not {scheme.name}-structured: {err}")
    if problems:
        raise PlanError("plan does not match the weights:\n  " + "\n  ".join(problems))
