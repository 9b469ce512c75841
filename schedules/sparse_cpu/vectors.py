"""TIR vector expressions that degrade to scalars for one lane."""

from tvm import tirx


def as_vector(value, lanes):
    """``value`` broadcast to ``lanes`` lanes (itself for one lane)."""
    return tirx.Broadcast(value, lanes) if lanes > 1 else value


def vector_index(base, lanes):
    """The index of ``lanes`` consecutive elements from ``base`` (``base`` itself for one lane)."""
    return tirx.Ramp(base, 1, lanes) if lanes > 1 else base

