"""``tvm-sparse demo``: compile a CIFAR-10 model with tvm_sparse and compare it with PyTorch."""

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from tvm_sparse.models import MODELS, build_model


def register(subparsers):
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="compile a CIFAR-10 model for this CPU and compare it with PyTorch",
        description="Compile a model defined in tvm_sparse (CIFAR-10 shapes, random weights, nothing "
                    "downloaded) with tvm_sparse.compile for this CPU, check its output against PyTorch "
                    "and print their latencies side by side (medians of interleaved rounds).",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    parser.add_argument("--threads", type=int, default=1, help="threads for TVM and PyTorch (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    parser.add_argument("--target", default="llvm", help="target string (default llvm: this CPU)")
    parser.set_defaults(func=run)


def run(args):
    """Compile, check and time the model; returns 1 if the outputs disagree."""
    # Imported here so that `tvm-sparse --help` does not pay for importing TVM.
    import tvm

    import tvm_sparse
    from tvm_sparse.bench.timing import configure_threads, interleaved_medians

    configure_threads(args.threads)
    console = Console()
    model = build_model(args.model)
    example = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with console.status(f"compiling {args.model} for {args.target}"):
        mod, params = tvm_sparse.from_torch(model, example)
        compiled = tvm_sparse.compile(mod, params, target=args.target)

    with torch.no_grad():
        expected = model(example).numpy()
    actual = compiled(example)
    error = float(np.abs(actual - expected).max() / np.abs(expected).max())
    console.print(f"{args.model}: max |TVM - PyTorch| / max |PyTorch| = {error:.2e}")
    for line in compiled.summary():
        console.print(f"  {line}")

    vm = compiled.virtual_machine()
    inputs = [tvm.runtime.tensor(example.numpy())]

    def run_torch():
        with torch.no_grad():
            model(example)

    timings = interleaved_medians({"tvm_sparse": lambda: vm["main"](*inputs), "PyTorch": run_torch},
                                  rounds=args.rounds)
    table = Table(title=f"{args.model}, batch 1, {args.threads} thread(s), median of {args.rounds} rounds")
    for column in ("runtime", "median ms", "min ms", "max ms", "speed vs PyTorch"):
        table.add_column(column, justify="right" if column != "runtime" else "left")
    reference = timings["PyTorch"].median_ms
    for name, timing in timings.items():
        table.add_row(name, f"{timing.median_ms:.2f}", f"{timing.min_ms:.2f}", f"{timing.max_ms:.2f}",
                      f"{reference / timing.median_ms:.2f}x")
    console.print(table)
    return 0 if error <= 1e-4 else 1

