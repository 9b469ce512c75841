"""Command-line arguments the ``bench`` sub-commands share."""

from tvm_sparse.models import MODELS


def add_models_argument(parser, default):
    """``--model`` (repeatable), a built-in model; ``default`` names what runs without it."""
    parser.add_argument("--model", dest="models", action="append", choices=sorted(MODELS),
                        help=f"model to run (repeatable; default: {default})")


def add_timing_arguments(parser):
    """``--threads`` (one worker process per count) and ``--rounds`` (interleaved timing rounds)."""
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
