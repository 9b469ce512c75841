"""``tvm-sparse bench``: side-by-side benchmarks (medians of interleaved rounds).

Sub-commands:

- ``models``: whole CIFAR-10 models compiled by ``tvm_sparse.compile`` vs PyTorch vs ONNX Runtime.
"""

from tvm_sparse.models import MODELS


def register(subparsers):
    """Add the ``bench`` command group and its sub-commands."""
    parser = subparsers.add_parser("bench", help="side-by-side latency benchmarks",
                                   description=__doc__.split("\n\n", 1)[0])
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _register_models(benchmarks)


def _register_models(benchmarks):
    parser = benchmarks.add_parser(
        "models",
        help="dense models: tvm_sparse.compile vs PyTorch vs ONNX Runtime",
        description="Compile dense CIFAR-10 models (batch 1, random weights) with tvm_sparse.compile, "
                    "export them to ONNX, and time tvm_sparse, PyTorch and ONNX Runtime side by side "
                    "(medians of interleaved rounds; one process per thread count).",
    )
    parser.add_argument("--model", dest="models", action="append", choices=sorted(MODELS),
                        help="model to run (repeatable; default: all)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    parser.add_argument("--target", default=None,
                        help="target string (default: this CPU, llvm -mcpu=<host cpu>)")
    parser.set_defaults(func=run_models)


def run_models(args):
    """Run the model benchmark and print the table; returns 1 if the runtimes' outputs disagree."""
    import os

    from rich.console import Console
    from rich.table import Table
    from tvm.target import codegen

    from tvm_sparse.bench.models import AGREEMENT, run_benchmark

    target = args.target or f"llvm -mcpu={codegen.llvm_get_system_cpu()}"
    models = args.models or sorted(MODELS)
    console = Console()
    with console.status(f"compiling {', '.join(models)} for {target} and timing"):
        compile_seconds, timings = run_benchmark(models, args.threads, args.rounds, target)
    table = Table(title=f"Batch-1 latency, median of {args.rounds} interleaved rounds (ms); target {target}")
    for column in ("model", "threads", "tvm_sparse", "PyTorch", "ONNX Runtime",
                   "PyTorch / tvm_sparse", "tvm_sparse / ORT", "max rel err"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for t in timings:
        ms = t.median_ms
        table.add_row(t.model, str(t.threads), f"{ms['tvm_sparse']:.2f}", f"{ms['pytorch']:.2f}",
                      f"{ms['onnxruntime']:.2f}", f"{ms['pytorch'] / ms['tvm_sparse']:.2f}x",
                      f"{ms['tvm_sparse'] / ms['onnxruntime']:.2f}x", f"{t.max_rel_err:.1e}")
    console.print(table)
    console.print("compile time: " + ", ".join(f"{m} {s:.0f} s" for m, s in compile_seconds.items()))
    console.print(f"load average while measuring (1, 5, 15 min): {os.getloadavg()}")
    disagreeing = [t for t in timings if t.max_rel_err > AGREEMENT]
    for t in disagreeing:
        console.print(f"[red]{t.model}: outputs disagree with PyTorch (max rel err {t.max_rel_err:.1e})")
    return 1 if disagreeing else 0
