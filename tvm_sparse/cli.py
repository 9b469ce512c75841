"""The ``tvm-sparse`` command line.

Each sub-command lives in its own module, which provides ``register(subparsers)``: it adds its
parser and sets ``func`` (called with the parsed arguments, returning an exit code).
"""

import argparse
import logging
import sys
from importlib import import_module

COMMAND_MODULES = (
    "tvm_sparse.commands.bench",
    "tvm_sparse.commands.compile",
    "tvm_sparse.commands.demo",
    "tvm_sparse.commands.map",
    "tvm_sparse.commands.phone_emulator",
    "tvm_sparse.commands.prune_report",
    "tvm_sparse.commands.tune",
)


def build_parser():
    """Build the argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="tvm-sparse",
        description="Prune PyTorch CNNs and compile them with Apache TVM into sparse kernels.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log compiler decisions")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        import_module(module).register(subparsers)
    return parser


def main(argv=None):
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
