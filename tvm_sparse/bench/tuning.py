"""What tuning buys: a built-in model compiled untuned and with its tuning logs, sparse and dense.

``python -m tvm_sparse.bench.tuning resnet18 --sparse-logs DIR --dense-logs DIR`` compiles four
variants of the model (the same pruned weights for both sparse ones; the unpruned model for the
dense ones), exports them to a work directory, then times them side by side in one worker process
per thread count (interleaved rounds, medians; :mod:`tvm_sparse.bench.workers`) and prints the
medians and the ratios: tuned vs untuned sparse, and tuned sparse vs tuned dense.
"""

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass

VARIANTS = ("sparse-untuned", "sparse-tuned", "dense-untuned", "dense-tuned")


@dataclass
class Row:
    """One variant's median latency at one thread count."""

    variant: str
    threads: int
    median_ms: float
    min_ms: float
    max_ms: float


def prepare(model_name, compression, sparse_logs, dense_logs, target, workdir):
    """Compile and export the four variants; returns ``{variant: compile seconds}``."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    import tvm_sparse  # noqa: PLC0415
    from tvm_sparse.models import build_model, example_input  # noqa: PLC0415
    from tvm_sparse.pruning.one_shot import magnitude_prune  # noqa: PLC0415

    example = example_input(model_name)
    dense_model = build_model(model_name)
    pruned_model = build_model(model_name)
    plan = magnitude_prune(pruned_model, compression=compression)
    setups = {
        "sparse-untuned": (pruned_model, plan, True, None),
        "sparse-tuned": (pruned_model, plan, True, sparse_logs),
        "dense-untuned": (dense_model, None, False, None),
        "dense-tuned": (dense_model, None, False, dense_logs),
    }
    seconds = {}
    for variant, (model, variant_plan, sparse, logs) in setups.items():
        start = time.monotonic()
        compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target=target, sparse=sparse,
                                      plan=variant_plan, tuning_logs=logs)
        seconds[variant] = time.monotonic() - start
        with torch.no_grad():
            expected = model(example).numpy()
        error = float(np.abs(compiled.run(example) - expected).max() / np.abs(expected).max())
        if error > 1e-4:
            raise RuntimeError(f"{variant}: relative error {error:.2e} against PyTorch")
        compiled.export_library(os.path.join(workdir, f"{variant}.so"))
    np.save(os.path.join(workdir, "input.npy"), example.numpy())
    return seconds


def measure(names, threads, rounds, workdir):
    """Worker body: load the exported variants and time them interleaved."""
    import numpy as np  # noqa: PLC0415
    import tvm  # noqa: PLC0415
    from tvm import relax  # noqa: PLC0415

    from tvm_sparse.bench.timing import interleaved_medians  # noqa: PLC0415

    device = tvm.cpu()
    data = tvm.runtime.tensor(np.load(os.path.join(workdir, "input.npy")), device)
    candidates = {}
    for name in names:
        vm = relax.VirtualMachine(tvm.runtime.load_module(os.path.join(workdir, f"{name}.so")), device)
        candidates[name] = (lambda vm=vm: vm["main"](data))
    timings = interleaved_medians(candidates, rounds=rounds)
    return [Row(name, threads, t.median_ms, t.min_ms, t.max_ms) for name, t in timings.items()]


def main(argv=None):
    """Prepare, run one worker per thread count, print the table."""
    from rich.table import Table  # noqa: PLC0415

    from tvm_sparse.bench.workers import run_workers  # noqa: PLC0415
    from tvm_sparse.commands.console import wide_console  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--sparse-logs", required=True, help="tuning logs of the pruned model")
    parser.add_argument("--dense-logs", required=True, help="tuning logs of the dense model")
    parser.add_argument("--compression", type=float, default=8.0)
    parser.add_argument("--target", default="llvm")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    console = wide_console(160)
    with tempfile.TemporaryDirectory() as workdir:
        with console.status("compiling four variants"):
            seconds = prepare(args.model, args.compression, args.sparse_logs, args.dense_logs, args.target, workdir)
        console.print("compile seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
        rows = run_workers("tvm_sparse.bench.tuning", workdir, args.threads, args.rounds, list(VARIANTS))
    table = Table(title=f"{args.model}: tuned vs untuned (medians of {args.rounds} interleaved rounds, ms)")
    for column in ("threads", *VARIANTS, "sparse tuned/untuned", "tuned sparse vs tuned dense"):
        table.add_column(column, justify="right")
    for threads in args.threads:
        by_name = {row["variant"]: row["median_ms"] for row in rows if row["threads"] == threads}
        table.add_row(str(threads), *(f"{by_name[v]:.2f}" for v in VARIANTS),
                      f"{by_name['sparse-untuned'] / by_name['sparse-tuned']:.2f}x",
                      f"{by_name['dense-tuned'] / by_name['sparse-tuned']:.2f}x")
    console.print(table)
    console.print(f"load: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    if "--workdir" in sys.argv:
        from tvm_sparse.bench.workers import worker_main

        worker_main(measure, "time the exported variants", VARIANTS)
    else:
        sys.exit(main())
