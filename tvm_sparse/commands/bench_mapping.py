"""``tvm-sparse bench mapping`` and ``bench mapping-accuracy``: mapped plans against uniform ones.

- ``mapping``: latency of the rule- and search-mapped plans vs the uniform one-shot plans at the
  same global compression (:mod:`tvm_sparse.bench.mapping`).
- ``mapping-accuracy``: Fashion-MNIST accuracy after the same ClickTrain training, and latency, of
  plans searched at the uniform plans' estimated accuracy cost (:mod:`tvm_sparse.bench.mapping_accuracy`).
"""

from tvm_sparse.commands.bench_arguments import add_models_argument, add_timing_arguments
from tvm_sparse.commands.console import wide_console
from tvm_sparse.mapping.sensitivity import METHODS as SENSITIVITY_METHODS


def register_mapping_benchmarks(benchmarks):
    """Add ``mapping`` and ``mapping-accuracy`` to the ``bench`` sub-commands."""
    _register_mapping(benchmarks)
    _register_mapping_accuracy(benchmarks)


def _register_mapping(benchmarks):
    parser = benchmarks.add_parser(
        "mapping",
        help="per-layer mapped plans (rules, search) vs the uniform one-shot plans, end to end",
        description="Prune a built-in model with the uniform one-shot plans (3x3 layers all pattern or all "
                    "block-punched 8x4) and with the plans `tvm-sparse map` finds by rules and by search at the same "
                    "global compression; compile all four and time them side by side (medians of interleaved "
                    "rounds, one process per thread count), with the search's predicted latency.",
    )
    add_models_argument(parser, "resnet18")
    parser.add_argument("--compression", type=float, default=8.0,
                        help="compression of the uniform plans' 3x3 layers (default 8)")
    add_timing_arguments(parser)
    parser.add_argument("--workdir", help="keep the latency tables here (default: a temporary folder)")
    parser.set_defaults(func=run_mapping)


def run_mapping(args):
    """Run the mapping benchmark and print one block per model and thread count."""
    import os
    import tempfile

    from tvm_sparse.bench.mapping import format_rows, run_benchmark

    console = wide_console(160)
    os.environ["TVM_SPARSE_BENCH_COMPRESSION"] = str(args.compression)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or scratch
        os.makedirs(workdir, exist_ok=True)
        with console.status("mapping, pruning, compiling and timing"):
            rows = run_benchmark(args.models or ["resnet18"], args.threads, args.rounds, workdir)
    for line in format_rows(rows):
        console.print(line, highlight=False)
    console.print(f"load average while measuring (1, 5, 15 min): {os.getloadavg()}")
    return 0


def _register_mapping_accuracy(benchmarks):
    parser = benchmarks.add_parser(
        "mapping-accuracy",
        help="searched vs uniform plans on Fashion-MNIST: accuracy after the same ClickTrain training, and latency",
        description="Train a small ResNet on Fashion-MNIST briefly, search a plan at the estimated accuracy cost of "
                    "each uniform one-shot plan (3x3 layers all block-punched 8x4 or all pattern), train every plan "
                    "from scratch with ClickTrain under the same seeds, and compare test accuracies and latencies "
                    "(medians of interleaved rounds). Needs Fashion-MNIST (scripts/install-fashion-mnist.sh).",
    )
    parser.add_argument("--compression", type=float, default=8.0,
                        help="compression of the uniform plans' 3x3 layers (default 8)")
    parser.add_argument("--seeds", type=int, default=3, help="ClickTrain seeds per plan (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="ClickTrain epochs (default 3)")
    parser.add_argument("--train-limit", type=int, default=6000, metavar="N",
                        help="Fashion-MNIST training images (default 6000; 0: all 60,000)")
    parser.add_argument("--threads", type=int, default=1, help="TVM and PyTorch threads (default 1)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    parser.add_argument("--table", help="keep the latency table here (default: in memory)")
    parser.add_argument("--objective", choices=("accuracy_budget", "compression"), default="accuracy_budget",
                        help="what the search takes from each uniform plan as its budget: its summed sensitivity "
                             "(default) or its global compression")
    parser.add_argument("--sensitivity", choices=SENSITIVITY_METHODS, default="loss",
                        help="how the candidates' accuracy costs are measured (as in `tvm-sparse map`; default loss)")
    parser.set_defaults(func=run_mapping_accuracy)


def run_mapping_accuracy(args):
    """Run the accuracy benchmark of the mapping and print one line per plan."""
    import os

    from tvm_sparse.bench.mapping_accuracy import format_rows, run
    from tvm_sparse.bench.timing import configure_threads

    configure_threads(args.threads)
    console = wide_console(200)
    with console.status("") as status:
        results = run(args.compression, tuple(range(args.seeds)), args.epochs, train_limit=args.train_limit or None,
                      rounds=args.rounds, table=args.table, objective=args.objective, sensitivity=args.sensitivity,
                      progress=status.update)
    for line in format_rows(results):
        console.print(line, highlight=False)
    console.print(f"{args.threads} thread(s); load average (1, 5, 15 min): {os.getloadavg()}")
    return 0
