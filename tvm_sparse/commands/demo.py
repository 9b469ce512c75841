"""``tvm-sparse demo``: prune a CIFAR-10 model, compile it with and without the sparse passes, compare."""

import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from tvm_sparse.models import MODELS, build_model


def register(subparsers):
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="prune a CIFAR-10 model, compile it for this CPU, compare with PyTorch",
        description="Prune a model defined in tvm_sparse (CIFAR-10 shapes, random weights, nothing "
                    "downloaded) one-shot by magnitude (pattern + connectivity on 3x3 layers, block-punched "
                    "on 1x1 and linear layers), compile it with tvm_sparse.compile with and without the "
                    "sparse passes, check both against PyTorch and print the latencies side by side "
                    "(medians of interleaved rounds).",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    parser.add_argument("--compression", type=float, default=8.0,
                        help="compression of the 3x3 layers (default 8); 0 keeps the model dense")
    parser.add_argument("--threads", type=int, default=1, help="threads for TVM and PyTorch (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    parser.add_argument("--target", default="llvm", help="target string (default llvm: this CPU)")
    parser.set_defaults(func=run)


def run(args):
    """Prune, compile, check and time the model; returns 1 if an output disagrees with PyTorch."""
    # Imported here so that `tvm-sparse --help` does not pay for importing TVM.
    import tvm

    import tvm_sparse
    from tvm_sparse.bench.timing import configure_threads, interleaved_medians
    from tvm_sparse.commands.compile import report_table
    from tvm_sparse.pruning.one_shot import magnitude_prune

    configure_threads(args.threads)
    console = Console()
    model = build_model(args.model)
    plan = magnitude_prune(model, compression=args.compression) if args.compression else None
    example = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mod, params = tvm_sparse.from_torch(model, example)
    compiled, compile_seconds = {}, {}
    for name, sparse in (("tvm_sparse", True), ("tvm_sparse, passes off", False)):
        with console.status(f"compiling {args.model} for {args.target} ({name})"):
            start = time.perf_counter()
            compiled[name] = tvm_sparse.compile(mod, params, target=args.target, sparse=sparse, plan=plan)
            compile_seconds[name] = time.perf_counter() - start
    console.print(report_table(compiled["tvm_sparse"].report, f"{args.model}: what the sparse passes decided"))

    with torch.no_grad():
        expected = model(example).numpy()
    errors = {name: float(np.abs(c(example) - expected).max() / np.abs(expected).max())
              for name, c in compiled.items()}
    inputs = [tvm.runtime.tensor(example.numpy())]
    machines = {name: c.virtual_machine() for name, c in compiled.items()}

    def run_torch():
        with torch.no_grad():
            model(example)

    candidates = {name: (lambda vm=vm: vm["main"](*inputs)) for name, vm in machines.items()}
    candidates["PyTorch"] = run_torch
    timings = interleaved_medians(candidates, rounds=args.rounds)
    pruning = f"pruned {args.compression:g}x on 3x3 layers" if plan else "unpruned"
    title = (f"{args.model} {pruning}, batch 1, {args.threads} thread(s), "
             f"median of {args.rounds} interleaved rounds")
    table = Table(title=title)
    for column in ("runtime", "median ms", "min ms", "max ms", "speed vs PyTorch", "max rel. error", "compile s"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    reference = timings["PyTorch"].median_ms
    for name, timing in timings.items():
        table.add_row(name, f"{timing.median_ms:.2f}", f"{timing.min_ms:.2f}", f"{timing.max_ms:.2f}",
                      f"{reference / timing.median_ms:.2f}x", f"{errors[name]:.1e}" if name in errors else "-",
                      f"{compile_seconds[name]:.0f}" if name in compile_seconds else "-")
    console.print(table)
    return 0 if max(errors.values()) <= 1e-4 else 1
