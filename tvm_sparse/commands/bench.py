"""``tvm-sparse bench``: side-by-side benchmarks (medians of interleaved rounds).

Sub-commands:

- ``models``: whole dense models compiled by ``tvm_sparse.compile`` vs PyTorch vs ONNX Runtime.
- ``kernels``: single sparse layers, our kernels vs the best dense implementations.
- ``model``: one pruned model, tvm_sparse (sparse and dense) vs PyTorch, ONNX Runtime and DeepSparse.
- ``mapping``, ``mapping-accuracy``: mapped plans vs uniform ones (:mod:`tvm_sparse.commands.bench_mapping`).
"""

import argparse
from dataclasses import asdict

from tvm_sparse.commands.bench_arguments import add_models_argument, add_timing_arguments
from tvm_sparse.commands.bench_mapping import register_mapping_benchmarks
from tvm_sparse.commands.console import wide_console
from tvm_sparse.commands.model_argument import add_input_size_argument
from tvm_sparse.commands.result_files import add_result_file_arguments, write_result_files
from tvm_sparse.models import CIFAR_MODELS


def register(subparsers):
    """Add the ``bench`` command group and its sub-commands."""
    parser = subparsers.add_parser("bench", help="side-by-side latency benchmarks",
                                   description=__doc__.split("\n\n", 1)[0])
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _register_models(benchmarks)
    _register_kernels(benchmarks)
    _register_model(benchmarks)
    register_mapping_benchmarks(benchmarks)


def _register_models(benchmarks):
    parser = benchmarks.add_parser(
        "models",
        help="dense models: tvm_sparse.compile vs PyTorch vs ONNX Runtime",
        description="Compile dense built-in models (batch 1, random weights) with tvm_sparse.compile, "
                    "export them to ONNX, and time tvm_sparse, PyTorch and ONNX Runtime side by side "
                    "(medians of interleaved rounds; one process per thread count).",
    )
    add_models_argument(parser, "the CIFAR-10 ones")
    add_input_size_argument(parser)
    add_timing_arguments(parser)
    parser.add_argument("--target", default=None,
                        help="target string (default: this CPU, llvm -mcpu=<host cpu>)")
    parser.add_argument("--tuning-logs", metavar="ROOT", default=None,
                        help="also time each model compiled with its logs ROOT/<model>/<target>/ "
                             "(from tvm-sparse tune MODEL --dense), where they exist")
    add_result_file_arguments(parser)
    parser.set_defaults(func=run_models)


def run_models(args):
    """Run the model benchmark and print the table; returns 1 if the runtimes' outputs disagree."""
    import os

    from rich.table import Table
    from tvm.target import codegen

    from tvm_sparse.bench import plots
    from tvm_sparse.bench.models import AGREEMENT, run_benchmark

    target = args.target or f"llvm -mcpu={codegen.llvm_get_system_cpu()}"
    models = args.models or sorted(CIFAR_MODELS)
    console = wide_console(150)
    with console.status(f"compiling {', '.join(models)} for {target} and timing"):
        compile_seconds, timings = run_benchmark(models, args.threads, args.rounds, target, args.tuning_logs,
                                                 args.input_size)
    table = Table(title=f"Batch-1 latency, median of {args.rounds} interleaved rounds (ms); target {target}")
    for column in ("model", "threads", "tvm_sparse", "tuned", "PyTorch", "ONNX Runtime",
                   "PyTorch / tvm_sparse", "tvm_sparse / ORT", "tuned / ORT", "max rel err"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for t in timings:
        ms = t.median_ms
        tuned = ms.get("tvm_sparse tuned")
        table.add_row(t.model, str(t.threads), f"{ms['tvm_sparse']:.2f}", "-" if tuned is None else f"{tuned:.2f}",
                      f"{ms['pytorch']:.2f}", f"{ms['onnxruntime']:.2f}", f"{ms['pytorch'] / ms['tvm_sparse']:.2f}x",
                      f"{ms['tvm_sparse'] / ms['onnxruntime']:.2f}x",
                      "-" if tuned is None else f"{tuned / ms['onnxruntime']:.2f}x", f"{t.max_rel_err:.1e}")
    console.print(table)
    console.print("compile time: " + ", ".join(f"{m} {s:.0f} s" for m, s in compile_seconds.items()))
    console.print(f"load average while measuring (1, 5, 15 min): {os.getloadavg()}")
    write_result_files(args, console, {"benchmark": "models", "target": target, "rounds": args.rounds,
                                       "compile_seconds": compile_seconds, "timings": [asdict(t) for t in timings]},
                       lambda data, path: plots.model_latencies(data["timings"], path,
                                                                title=f"Dense models, batch 1; {target}"))
    disagreeing = [t for t in timings if t.max_rel_err > AGREEMENT]
    for t in disagreeing:
        console.print(f"[red]{t.model}: outputs disagree with PyTorch (max rel err {t.max_rel_err:.1e})")
    return 1 if disagreeing else 0


def _density(text):
    """argparse type: a density in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a density is in (0, 1], got {text}")
    return value


def _register_kernels(benchmarks):
    from tvm_sparse.bench.kernels import LAYERS, QUICK

    parser = benchmarks.add_parser(
        "kernels",
        help="sparse layers: our kernels vs ONNX Runtime, PyTorch and dense TVM",
        description="Time single layers (batch 1, relu(conv + bias)) with pattern, block-punched or BSR "
                    "weights: our sparse kernels (compact, and specialised where its code fits the compile budget) against ONNX Runtime, PyTorch and TVM with "
                    "tvm_sparse's dense schedule, all with the dense weight (medians of interleaved rounds; "
                    "one process per thread count). Prints FLOP reduction and achieved speedup / ideal.",
    )
    parser.add_argument("--layer", dest="layers", action="append", choices=sorted(LAYERS),
                        help="layer to run (repeatable; default: all)")
    parser.add_argument("--quick", action="store_true", help=f"only the target layers: {', '.join(QUICK)}")
    parser.add_argument("--density", dest="densities", type=_density, nargs="+",
                        help="run each layer at these densities instead of its own (pattern: fraction of 3x3 "
                             "kernels kept, on top of the 4-of-9 patterns; block formats: fraction of blocks "
                             "kept), to see where the sparse kernel stops paying")
    add_timing_arguments(parser)
    add_result_file_arguments(parser)
    parser.set_defaults(func=run_kernels)


def run_kernels(args):
    """Run the kernel benchmark and print the table; returns 1 if an output disagrees with PyTorch."""
    import os

    from rich.table import Table

    from schedules.target_info import as_target
    from tvm_sparse.bench import plots
    from tvm_sparse.bench.kernels import AGREEMENT, LAYERS, QUICK, layer_named, result_rows, run_benchmark

    target = as_target(None)
    names = args.layers or (list(QUICK) if args.quick else list(LAYERS))
    if args.densities:
        names = [f"{name}@{density:g}" for name in names for density in args.densities]
    layers = [layer_named(name) for name in names]
    console = wide_console(230)
    with console.status(f"compiling {len(layers)} layers for {target.attrs['mcpu']} and timing"):
        compile_seconds, timings = run_benchmark(layers, args.threads, args.rounds, target)
    table = Table(title=f"Batch-1 layer latency, median of {args.rounds} interleaved rounds (ms); "
                        f"llvm -mcpu={target.attrs['mcpu']}")
    for column in ("layer", "threads", "compact", "specialised", "ONNX Runtime", "PyTorch", "TVM dense",
                   "best dense / compact", "best dense / specialised", "FLOP reduction", "achieved / ideal",
                   "compile s compact / specialised / TVM dense", "max rel err"):
        table.add_column(column, justify="left" if column == "layer" else "right")

    def cell(value, form):
        return "-" if value is None else form.format(value)

    for t in timings:
        ms, seconds = t.median_ms, compile_seconds[t.layer]
        table.add_row(t.layer, str(t.threads), cell(ms.get("compact"), "{:.3f}"), cell(ms.get("specialized"), "{:.3f}"),
                      f"{ms['onnxruntime']:.3f}", f"{ms['pytorch']:.3f}", f"{ms['tvm_dense']:.3f}",
                      cell(t.speedup_of("compact"), "{:.2f}x") + f" ({t.best_dense[0].replace('onnxruntime', 'ORT')})",
                      cell(t.speedup_of("specialized"), "{:.2f}x"), f"{t.flop_reduction:.1f}x",
                      f"{t.achieved_over_ideal:.0%}",
                      " / ".join(cell(seconds.get(k), "{:.1f}") for k in ("compact", "specialized", "tvm_dense")),
                      f"{t.max_rel_err:.1e}")
    console.print(table)
    console.print("specialised: '-' where its code exceeds the compile-time budget (not built); "
                  "achieved / ideal: best dense / best sparse over the FLOP reduction")
    console.print(f"load average while measuring (1, 5, 15 min): {os.getloadavg()}")
    write_result_files(args, console, {"benchmark": "kernels", "target": f"llvm -mcpu={target.attrs['mcpu']}",
                                       "rounds": args.rounds, "compile_seconds": compile_seconds,
                                       "timings": result_rows(timings)},
                       lambda data, path: plots.kernel_speedups(data["timings"], path))
    disagreeing = [t for t in timings if t.max_rel_err > AGREEMENT]
    for t in disagreeing:
        console.print(f"[red]{t.layer}: outputs disagree with PyTorch (max rel err {t.max_rel_err:.1e})")
    return 1 if disagreeing else 0


def _register_model(benchmarks):
    from tvm_sparse.commands.pruning_options import add_scheme_arguments

    parser = benchmarks.add_parser(
        "model",
        help="a pruned model: tvm_sparse sparse and dense vs PyTorch, ONNX Runtime and DeepSparse",
        description="Prune a built-in model one-shot (pattern + connectivity, or block-punched, on every 3x3 layer "
                    "but the first, block-punched on 1x1 and linear layers), compile it with tvm_sparse with and "
                    "without the sparse passes, and time it side by side with PyTorch, ONNX Runtime on the dense "
                    "model and DeepSparse 1.8.0 on the model pruned unstructured to the same rate per layer (medians "
                    "of interleaved rounds; one process per thread count). DeepSparse runs in its own environment: "
                    "install it with `bash scripts/install-deepsparse.sh`; without it its columns are left out.",
    )
    add_models_argument(parser, "resnet18")
    add_input_size_argument(parser)
    parser.add_argument("--compression", type=float, default=8.0,
                        help="compression of the 3x3 layers (default 8)")
    add_scheme_arguments(parser)
    parser.add_argument("--mapping", choices=("rules", "search"),
                        help="prune to a per-layer plan of `tvm-sparse map` (rules, or a search over latencies measured "
                             "here) at the global compression the one-shot plan reaches, instead of the one-shot plan")
    add_timing_arguments(parser)
    parser.add_argument("--target", default=None,
                        help="target string (default: this CPU, llvm -mcpu=<host cpu>)")
    parser.add_argument("--tuning-logs", metavar="ROOT", default=None,
                        help="also time the pruned model compiled with its logs "
                             "ROOT/<model>-pruned<N>x[-<scheme><block>]/<target>/ (from tvm-sparse tune MODEL --prune "
                             "magnitude with the same options), where they exist")
    add_result_file_arguments(parser)
    parser.set_defaults(func=run_model)


def run_model(args):
    """Run the pruned-model benchmark and print the tables; returns 1 if an output disagrees with PyTorch."""
    import os

    from rich.table import Table
    from tvm.target import codegen

    from tvm_sparse.bench import plots
    from tvm_sparse.bench.pruned_model import AGREEMENT, RUNTIMES, TARGETS, run_benchmark, targets_of
    from tvm_sparse.commands.pruning_options import block_text

    target = args.target or f"llvm -mcpu={codegen.llvm_get_system_cpu()}"
    models = args.models or ["resnet18"]
    console = wide_console(160)
    with console.status(f"pruning and compiling {', '.join(models)} for {target}, then timing"):
        prepared, timings = run_benchmark(models, args.compression, args.threads, args.rounds, target,
                                          scheme_3x3=args.scheme_3x3, block=args.block, size=args.input_size,
                                          mapping=args.mapping, tuning_root=args.tuning_logs)
    for p in prepared:
        plan = (f"mapped by {args.mapping} at the global compression of 3x3 layers {args.scheme_3x3} at "
                f"{args.compression:g}x" if args.mapping else
                f"3x3 layers {args.scheme_3x3} at {args.compression:g}x (block-punched blocks {block_text(args.block)})")
        console.print(f"{p.model}: {plan}, pruned layers {p.compression:.1f}x overall; "
                      f"{p.routed} of {p.layers} layers routed to sparse kernels; compile "
                      + ", ".join(f"{runtime} {s:.0f} s" for runtime, s in p.compile_seconds.items()))
    present = [r for r in RUNTIMES if any(r in t.median_ms for t in timings)]
    compared = [r for r in TARGETS["default"] if r in present]
    table = Table(title=f"Batch-1 latency (ms), median of {args.rounds} interleaved rounds; target {target}")
    for column in ("model", "threads", *present, *(f"vs {r} (target)" for r in compared),
                   *(["tuned vs onnxruntime"] if "tvm_sparse tuned" in present else []),
                   "vs tvm_sparse dense", "ideal (FLOPs)", "of ideal"):
        table.add_column(column, justify="left" if column == "model" else "right")
    by_model = {p.model: p for p in prepared}
    speedups = []
    for t in timings:
        ms = t.median_ms
        ratios = [f"{ms[r] / ms['tvm_sparse']:.2f}x (>= {targets_of(t.model)[r]:g}x)" for r in compared]
        if "tvm_sparse tuned" in present:
            ratios.append(f"{ms['onnxruntime'] / ms['tvm_sparse tuned']:.2f}x" if "tvm_sparse tuned" in ms else "-")
        speedup, fraction = by_model[t.model].speedup_reached(t)
        speedups.append({"model": t.model, "threads": t.threads, "speedup": speedup,
                         "ideal_speedup": by_model[t.model].ideal_speedup, "fraction_of_ideal": fraction})
        table.add_row(t.model, str(t.threads), *(f"{ms[r]:.2f}" if r in ms else "-" for r in present), *ratios,
                      f"{speedup:.2f}x", f"{by_model[t.model].ideal_speedup:.2f}x", f"{fraction:.0%}")
    console.print(table)
    console.print("ideal (FLOPs): dense over kept multiply-adds of the convolution and linear layers; "
                  "of ideal: the speed-up over tvm_sparse dense as a fraction of it")
    errors = Table(title="Max relative error vs PyTorch on the same weights")
    for column in ("model", "threads", *present):
        errors.add_column(column, justify="left" if column == "model" else "right")
    for t in timings:
        errors.add_row(t.model, str(t.threads), *(f"{t.max_rel_err[r]:.1e}" if r in t.max_rel_err else "-"
                                                   for r in present))
    console.print(errors)
    if "deepsparse" not in present:
        console.print("DeepSparse is not installed: `bash scripts/install-deepsparse.sh` adds it")
    console.print(f"load average while measuring (1, 5, 15 min): {os.getloadavg()}")
    write_result_files(args, console, {"benchmark": "model", "target": target, "rounds": args.rounds,
                                       "compression": args.compression, "scheme_3x3": args.scheme_3x3,
                                       "mapping": args.mapping, "prepared": [asdict(p) for p in prepared],
                                       "timings": [asdict(t) for t in timings], "speedups": speedups},
                       lambda data, path: plots.model_latencies(
                           data["timings"], path, title=f"Pruned {args.compression:g}x "
                                                        f"({args.mapping or args.scheme_3x3}), batch 1; {target}"))
    # DeepSparse is a third-party engine: its error is shown, but only ours and the references gate.
    gated = ("tvm_sparse", "tvm_sparse dense", "onnxruntime")
    disagreeing = [(t, r) for t in timings for r in gated if t.max_rel_err.get(r, 0.0) > AGREEMENT]
    for t, r in disagreeing:
        console.print(f"[red]{t.model} ({t.threads} threads): {r} disagrees with PyTorch "
                      f"(max rel err {t.max_rel_err[r]:.1e})")
    return 1 if disagreeing else 0
