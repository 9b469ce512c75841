"""``tvm-sparse tune``: tune a model for a target and write ``tuning_logs/<model>/<target>/``."""

import os
import shlex
import sys
import time

from tvm_sparse.commands.model_argument import add_model_argument, load_model, model_label
from tvm_sparse.commands.pruning_options import add_prune_arguments, block_text, prune_as_asked
from tvm_sparse.commands.target_argument import add_target_argument, phone_target_help
from tvm_sparse.runtime_threads import default_thread_count

#: Where logs go by default (the repository's tuning_logs/ when run from its root).
DEFAULT_ROOT = "tuning_logs"


def register(subparsers):
    """Add the ``tune`` sub-command."""
    parser = subparsers.add_parser(
        "tune",
        help="tune a model's dense schedules and sparse-kernel knobs with MetaSchedule",
        **phone_target_help(
            "Tune a built-in model (CIFAR-10 or ImageNet shapes; optionally pruned one-shot by magnitude, as "
            "`tvm-sparse compile --prune magnitude`) or a torch.export program saved with torch.export.save (.pt2) "
            "for a target: MetaSchedule trials for the dense functions and measured knob settings for each sparse "
            "kernel, on this machine or on a device behind an RPC tracker. Rerunning the same command resumes: "
            "measurements in the log are kept and not repeated. Compile with the result: "
            "`tvm-sparse compile MODEL --tuning-logs DIR` or tvm_sparse.compile(..., tuning_logs=DIR)."),
    )
    add_model_argument(parser)
    add_target_argument(parser)
    parser.add_argument("--trials", type=int, default=64, help="MetaSchedule trials over the dense functions")
    parser.add_argument("--sparse-trials", type=int, default=3,
                        help="knob settings measured per sparse layer, the default first (default %(default)s)")
    add_prune_arguments(parser)
    parser.add_argument("--dense", action="store_true", help="turn the sparse passes off (tune a dense model)")
    parser.add_argument("--threads", type=int,
                        help="threads of TVM's runtime while measuring on this machine: the count the model will "
                             "run with (default: TVM_NUM_THREADS, else the physical cores); a device behind "
                             "--rpc-tracker uses its server's")
    parser.add_argument("--rpc-tracker", metavar="HOST:PORT", help="measure on a device behind this RPC tracker")
    parser.add_argument("--rpc-key", metavar="KEY", help="the device's key at the tracker")
    parser.add_argument("--session-timeout", type=float, default=120.0,
                        help="seconds one RPC measurement session may take (default %(default)s)")
    parser.add_argument("-o", "--output",
                        help="log folder (default tuning_logs/<model>[-pruned<N>x[-block_punched<BK>x<BC>]]/<target>/)")
    parser.set_defaults(func=run)


def default_log_dir(args, target):
    """``tuning_logs/<model>[-pruned<N>x[-block_punched<BK>x<BC>]]/<target slug>`` (pattern 3x3 layers: no suffix)."""
    from tvm_sparse.target import target_slug  # noqa: PLC0415

    model = model_label(args.model)
    if args.prune == "magnitude":
        from tvm_sparse.pruning.one_shot import one_shot_label  # noqa: PLC0415 - torch only when pruning

        model = one_shot_label(model, args.compression, args.scheme_3x3, args.block)
    return os.path.join(DEFAULT_ROOT, model, target_slug(target))


def run(args):
    """Build, optionally prune, tune, and write the COMMAND file next to the logs."""
    import tvm_sparse  # noqa: PLC0415
    from tvm_sparse.target import TargetError  # noqa: PLC0415
    from tvm_sparse.commands.tuning_progress import RichTuningProgress  # noqa: PLC0415
    from tvm_sparse.tuning import COMMAND_FILE, RPCDevice, TuningLogError, tune  # noqa: PLC0415

    if bool(args.rpc_tracker) != bool(args.rpc_key):
        print("tvm-sparse tune: --rpc-tracker and --rpc-key go together", file=sys.stderr)
        return 2
    if args.trials < 0 or args.sparse_trials < 0:
        print("tvm-sparse tune: --trials and --sparse-trials must be >= 0", file=sys.stderr)
        return 2
    if args.threads is not None and (args.threads < 1 or args.rpc_tracker):
        print("tvm-sparse tune: --threads must be >= 1 and measures on this machine (not with --rpc-tracker)",
              file=sys.stderr)
        return 2
    try:
        model, example = load_model(args.model, args.input_size)
        plan = prune_as_asked(model, args) if args.prune == "magnitude" else None
        mod, params = tvm_sparse.from_torch(model, example)
        log_dir = args.output or default_log_dir(args, tvm_sparse.parse_target(args.target))
        rpc = RPCDevice(args.rpc_tracker, args.rpc_key, args.session_timeout) if args.rpc_tracker else None
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        command = "tvm-sparse tune " + shlex.join(_argv_of(args))
        os.makedirs(log_dir, exist_ok=True)
        with open(os.path.join(log_dir, COMMAND_FILE), "a", encoding="utf-8") as handle:
            handle.write(f"{command}\n# started {started}\n")
        result = tune(mod, params, args.target, log_dir=log_dir, trials=args.trials,
                      sparse_trials=args.sparse_trials, rpc=rpc, plan=plan, sparse=not args.dense, threads=args.threads,
                      progress=RichTuningProgress())
    except (ValueError, TargetError, TuningLogError, RuntimeError, OSError) as error:
        print(f"tvm-sparse tune: {error}", file=sys.stderr)
        return 1
    with open(os.path.join(log_dir, COMMAND_FILE), "a", encoding="utf-8") as handle:
        handle.write(f"# finished: {result.dense_trials} dense trials ({result.dense_tasks} functions), "
                     f"{result.sparse_trials} sparse measurements ({result.sparse_layers} layers) in "
                     f"{result.seconds:.0f} s; errors in the log: {result.dense_errors} dense, "
                     f"{result.sparse_errors} sparse\n")
    print(f"{log_dir}: {result.dense_trials} new dense trials over {result.dense_tasks} functions, "
          f"{result.sparse_trials} new sparse measurements over {result.sparse_layers} layers, "
          f"{result.dense_errors + result.sparse_errors} errors in the log, {result.seconds:.0f} s")
    return 0


def _argv_of(args):
    """The options of ``args`` as a command line, defaults spelled out."""
    argv = [args.model, "--target", args.target, "--trials", str(args.trials),
            "--sparse-trials", str(args.sparse_trials)]
    if args.prune != "none":
        argv += ["--prune", args.prune, "--compression", f"{args.compression:g}", "--scheme-3x3", args.scheme_3x3,
                 "--block", block_text(args.block)]
    if args.dense:
        argv.append("--dense")
    if args.rpc_tracker:
        argv += ["--rpc-tracker", args.rpc_tracker, "--rpc-key", args.rpc_key]
    else:
        argv += ["--threads", str(args.threads or default_thread_count())]
    if args.output:
        argv += ["-o", args.output]
    return argv
