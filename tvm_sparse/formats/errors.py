"""The error raised when weights do not have the structure a sparse format needs."""


class FormatError(ValueError):
    """Weights, a pattern library or a stored format that breaks the format's rules.

    The message names the offending filter, kernel or block, so that a caller (the pruning
    module, a plan verifier, a compiler pass) can report it or route the layer to a dense kernel.
    """
