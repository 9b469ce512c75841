"""``tvm-sparse bench``: side-by-side benchmarks (medians of interleaved rounds).

Sub-commands:

- ``models``: whole CIFAR-10 models compiled by ``tvm_sparse.compile`` vs PyTorch vs ONNX Runtime.
- ``kernels``: single sparse layers, our kernels vs the best dense implementations.
"""

from tvm_sparse.models import MODELS


def register(subparsers):
    """Add the ``bench`` command group and its sub-commands."""
    parser = subparsers.add_parser("bench", help="side-by-side latency benchmarks",
                                   description=__doc__.split("\n\n", 1)[0])
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _register_models(benchmarks)
    _register_kernels(benchmarks)


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


def _register_kernels(benchmarks):
    from tvm_sparse.bench.kernels import LAYERS, QUICK

    parser = benchmarks.add_parser(
        "kernels",
        help="sparse layers: our kernels vs ONNX Runtime, PyTorch and dense TVM",
        description="Time single layers (batch 1, relu(conv + bias)) with pattern, block-punched or BSR "
                    "weights: our specialised sparse kernel against ONNX Runtime, PyTorch and TVM with "
                    "tvm_sparse's dense schedule, all with the dense weight (medians of interleaved rounds; "
                    "one process per thread count). Prints FLOP reduction and achieved speedup / ideal.",
    )
    parser.add_argument("--layer", dest="layers", action="append", choices=sorted(LAYERS),
                        help="layer to run (repeatable; default: all)")
    parser.add_argument("--quick", action="store_true", help=f"only the target layers: {', '.join(QUICK)}")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    parser.set_defaults(func=run_kernels)


def run_kernels(args):
    """Run the kernel benchmark and print the table; returns 1 if an output disagrees with PyTorch."""
    import os

    from rich.console import Console
    from rich.table import Table

    from schedules.target_info import as_target
    from tvm_sparse.bench.kernels import AGREEMENT, LAYERS, QUICK, run_benchmark

    target = as_target(None)
    names = args.layers or (list(QUICK) if args.quick else list(LAYERS))
    layers = [LAYERS[name] for name in names]
    console = Console(width=max(Console().width, 170))
    with console.status(f"compiling {len(layers)} layers for {target.attrs['mcpu']} and timing"):
        compile_seconds, timings = run_benchmark(layers, args.threads, args.rounds, target)
    table = Table(title=f"Batch-1 layer latency, median of {args.rounds} interleaved rounds (ms); "
                        f"llvm -mcpu={target.attrs['mcpu']}")
    for column in ("layer", "threads", "ours", "ONNX Runtime", "PyTorch", "TVM dense", "best dense / ours",
                   "FLOP reduction", "achieved / ideal", "max rel err"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for t in timings:
        ms = t.median_ms
        table.add_row(t.layer, str(t.threads), f"{ms['ours']:.3f}", f"{ms['onnxruntime']:.3f}",
                      f"{ms['pytorch']:.3f}", f"{ms['tvm_dense']:.3f}",
                      f"{t.speedup:.2f}x ({t.best_dense[0]})", f"{t.flop_reduction:.1f}x",
                      f"{t.achieved_over_ideal:.0%}", f"{t.max_rel_err:.1e}")
    console.print(table)
    console.print("compile time (s), ours / TVM dense: " + ", ".join(
        f"{name} {s['ours']:.0f} / {s['tvm_dense']:.0f}" for name, s in compile_seconds.items()))
    console.print(f"load average while measuring (1, 5, 15 min): {os.getloadavg()}")
    disagreeing = [t for t in timings if t.max_rel_err > AGREEMENT]
    for t in disagreeing:
        console.print(f"[red]{t.layer}: outputs disagree with PyTorch (max rel err {t.max_rel_err:.1e})")
    return 1 if disagreeing else 0
