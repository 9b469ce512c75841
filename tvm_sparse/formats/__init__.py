"""Sparse weight formats (numpy only): pattern (3x3), block-punched (any kernel) and BSR (1x1, linear).

Each format has ``from_dense`` (raising :class:`FormatError` when the weights lack its structure),
``to_dense``, ``validate``, ``density`` and a slow reference convolution.
"""

from .block_punched import BlockPunchedWeight
from .bsr import BSRWeight
from .errors import FormatError
from .pattern import PatternWeight

__all__ = ["BSRWeight", "BlockPunchedWeight", "FormatError", "PatternWeight"]
