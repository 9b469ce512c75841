"""``tvm-sparse demo``: prune a built-in model, compile it with and without the sparse passes, compare."""

import copy
import time

import numpy as np
import torch
from rich.table import Table

from tvm_sparse.commands.console import status_step, wide_console
from tvm_sparse.commands.model_argument import add_input_size_argument
from tvm_sparse.commands.pruning_options import add_mapping_argument, add_scheme_arguments, mapped_plan, prune_as_asked
from tvm_sparse.models import MODELS, example_input


def register(subparsers):
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="prune a built-in model, compile it for this CPU, compare with PyTorch",
        description="Prune a model defined in tvm_sparse (CIFAR-10 or ImageNet shapes, random weights, nothing downloaded) "
                    "one-shot by magnitude (pattern + connectivity, or block-punched, on 3x3 layers, block-punched "
                    "on 1x1 and linear layers), compile it with tvm_sparse.compile with and without the sparse "
                    "passes, check both against PyTorch and print the latencies side by side with PyTorch and "
                    "ONNX Runtime on the dense model (medians of interleaved rounds).",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    add_input_size_argument(parser)
    parser.add_argument("--compression", type=float, default=8.0,
                        help="compression of the 3x3 layers (default 8); 0 keeps the model dense")
    add_scheme_arguments(parser)
    add_mapping_argument(parser)
    parser.add_argument("--threads", type=int, default=1, help="threads for TVM and PyTorch (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    parser.add_argument("--target", default="llvm", help="target string (default llvm: this CPU)")
    parser.set_defaults(func=run)


def run(args):
    """Prune, compile, check and time the model; returns 1 if an output disagrees with PyTorch."""
    # Imported here so that `tvm-sparse --help` does not pay for importing TVM.
    import os
    import tempfile

    import tvm

    import tvm_sparse
    from tvm_sparse.bench.models import benchmark_model
    from tvm_sparse.bench.timing import configure_threads, interleaved_medians
    from tvm_sparse.bench.workers import onnxruntime_session
    from tvm_sparse.commands.compile import report_table
    from tvm_sparse.relax_utils import unpack_outputs

    configure_threads(args.threads)
    console = wide_console(150)
    dense_model = benchmark_model(args.model)
    model = copy.deepcopy(dense_model)
    plan = None
    example = example_input(args.model, size=args.input_size)
    if args.compression and args.mapping:
        with status_step(console, f"mapping {args.model}'s layers ({args.mapping}), pruning {args.compression:g}x overall"):
            plan = prune_as_asked(model, args, mapped_plan(dense_model, example, args.target, args))
    elif args.compression:
        with status_step(console, f"pruning {args.model} {args.compression:g}x on 3x3 layers ({args.scheme_3x3})"):
            plan = prune_as_asked(model, args)
    with status_step(console, f"importing {args.model} into TVM (torch.export)"):
        mod, params = tvm_sparse.from_torch(model, example)
    machines, compile_seconds = {}, {}
    for name, sparse in (("tvm_sparse", True), ("tvm_sparse, passes off", False)):
        with status_step(console, f"compiling {args.model} for {args.target} ({name})"):
            start = time.perf_counter()
            compiled = tvm_sparse.compile(mod, params, target=args.target, sparse=sparse, plan=plan)
            machines[name] = compiled.virtual_machine()
            machines[name]["main"](tvm.runtime.tensor(example.numpy()))  # LLVM emits the code on first use
            compile_seconds[name] = time.perf_counter() - start
        if sparse:
            console.print(report_table(compiled.report, f"{args.model}: what the sparse passes decided"))

    inputs = [tvm.runtime.tensor(example.numpy())]
    with torch.no_grad():
        expected = model(example).numpy()
    errors = {name: float(np.abs(unpack_outputs(vm["main"](*inputs)) - expected).max() / np.abs(expected).max())
              for name, vm in machines.items()}

    def run_torch():
        with torch.no_grad():
            model(example)

    candidates = {name: (lambda vm=vm: vm["main"](*inputs)) for name, vm in machines.items()}
    candidates["PyTorch"] = run_torch
    with tempfile.TemporaryDirectory(prefix="tvm_sparse_demo_") as workdir:
        onnx_path = os.path.join(workdir, "dense.onnx")
        with status_step(console, "exporting the dense model to ONNX Runtime"), torch.no_grad():
            torch.onnx.export(dense_model, (example,), onnx_path, input_names=["x"], dynamo=False)
            session = onnxruntime_session(onnx_path, args.threads)
        x_numpy = example.numpy()
        candidates["ONNX Runtime (dense model)"] = lambda: session.run(None, {"x": x_numpy})
        with status_step(console, f"timing, {args.rounds} interleaved rounds"):
            timings = interleaved_medians(candidates, rounds=args.rounds)
    pruning = f"pruned {args.compression:g}x on 3x3 layers ({args.scheme_3x3})" if plan else "unpruned"
    if plan and args.mapping:
        pruning = f"pruned {args.compression:g}x overall, a scheme per layer ({args.mapping})"
    title = (f"{args.model} {pruning}, batch 1, {args.threads} thread(s), "
             f"median of {args.rounds} interleaved rounds")
    table = Table(title=title)
    for column in ("runtime", "median ms", "min ms", "max ms", "tvm_sparse speed-up", "max rel. error",
                   "compile s (incl. code gen)"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    ours = timings["tvm_sparse"].median_ms
    for name, timing in timings.items():
        table.add_row(name, f"{timing.median_ms:.2f}", f"{timing.min_ms:.2f}", f"{timing.max_ms:.2f}",
                      f"{timing.median_ms / ours:.2f}x", f"{errors[name]:.1e}" if name in errors else "-",
                      f"{compile_seconds[name]:.0f}" if name in compile_seconds else "-")
    console.print(table)
    console.print(f"load average (1, 5, 15 min): {os.getloadavg()}")
    return 0 if max(errors.values()) <= 1e-4 else 1
