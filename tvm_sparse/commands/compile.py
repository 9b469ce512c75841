"""``tvm-sparse compile``: compile a model for a target, optionally print the per-layer report."""

import logging
import sys

from rich.table import Table

from relay_passes.sparse_rules import SparseRules
from tvm_sparse.commands.console import wide_console
from tvm_sparse.commands.model_argument import add_model_argument, load_model
from tvm_sparse.commands.pruning_options import add_prune_arguments, prune_as_asked
from tvm_sparse.commands.target_argument import add_target_argument, phone_target_help


def register(subparsers):
    """Add the ``compile`` sub-command."""
    parser = subparsers.add_parser(
        "compile",
        help="compile a model with the sparse passes and export it",
        **phone_target_help(
            "Compile a built-in model (CIFAR-10 or ImageNet shapes; optionally pruned one-shot by magnitude) or a torch.export "
            "program saved with torch.export.save (.pt2) for a target, optionally with the logs of "
            "`tvm-sparse tune`, export the library, and print what the sparse passes decided for each layer."),
    )
    add_model_argument(parser)
    add_target_argument(parser)
    add_prune_arguments(parser)
    parser.add_argument("--plan", help="a plan JSON (tvm_sparse.plan) to verify and follow; with --prune magnitude, "
                                       "the model is pruned to it first (e.g. a plan of `tvm-sparse map`)")
    parser.add_argument("--dense", action="store_true", help="turn the sparse passes off")
    # Thresholds not given are the target's (schedules.profiles; docs/sparse-kernels.md).
    parser.add_argument("--pattern-max-density", type=float,
                        help="route pattern layers at this density or below (default: the target's profile)")
    parser.add_argument("--small-map-pattern-max-density", type=float,
                        help="the same on small output maps (default: the target's profile)")
    parser.add_argument("--block-max-density", type=float,
                        help="route block-punched and BSR layers at this density or below (default: the target's "
                             "profile)")
    parser.add_argument("--min-macs", type=int, help="smaller layers stay dense (default: the target's profile)")
    parser.add_argument("--max-kernel-terms", type=int,
                        help="layers with more non-zero weights stay dense, for a shorter compile (default: no limit)")
    parser.add_argument("-o", "--output", help="write the compiled library here (.so)")
    parser.add_argument("--summary", action="store_true", help="print the per-layer report as a table")
    parser.add_argument("--profile", action="store_true",
                        help="run the model on this CPU and print each layer's kernel time and share of the model "
                             "(a target this machine runs)")
    parser.add_argument("--tuning-logs", metavar="DIR",
                        help="apply the tuned schedules and sparse-kernel knobs of this folder, written by "
                             "`tvm-sparse tune` for the same model and target, and say how many matched")
    parser.set_defaults(func=run)


def run(args):
    """Load, optionally prune, compile, export and report."""
    import tvm_sparse
    from tvm_sparse.plan import PlanError, load_plan
    from tvm_sparse.target import TargetError

    console = wide_console(150)
    try:
        model, example = load_model(args.model, args.input_size)
        plan = load_plan(args.plan) if args.plan else None
        rules = SparseRules(pattern_max_density=args.pattern_max_density,
                            small_map_pattern_max_density=args.small_map_pattern_max_density,
                            block_max_density=args.block_max_density, min_macs=args.min_macs,
                            max_kernel_terms=args.max_kernel_terms)
        if args.prune == "magnitude":
            plan = prune_as_asked(model, args, plan)
        mod, params = tvm_sparse.from_torch(model, example)
        with console.status(f"compiling {args.model} for {args.target}"):
            compiled = tvm_sparse.compile(mod, params, target=args.target, sparse=not args.dense, plan=plan,
                                          rules=rules, tuning_logs=args.tuning_logs)
        if args.tuning_logs:
            with console.status(f"matching {args.tuning_logs} against the model"):
                console.print(tuning_logs_applied(args.tuning_logs, mod, params, compiled.target, plan=plan,
                                                  rules=rules, sparse=not args.dense))
        if args.output:
            console.print(f"wrote {compiled.export_library(args.output)}")
    except (ValueError, TargetError, PlanError, FileNotFoundError, RuntimeError) as error:
        print(f"tvm-sparse compile: {error}", file=sys.stderr)
        return 1
    if args.summary:
        console.print(report_table(compiled.report, f"{args.model} for {compiled.target.kind.name} "
                                                    f"{compiled.target.attrs.get('mtriple', '')}"))
    if args.profile:
        if not compiled.runs_here:
            print(f"tvm-sparse compile: --profile runs the model here, and this machine cannot run {compiled.target}",
                  file=sys.stderr)
            return 1
        with console.status("profiling"):
            profile = compiled.profile(*example)
        console.print(f"per-layer profile of {args.model} (each kernel timed alone; ms)", highlight=False)
        console.print(profile.table(), highlight=False, soft_wrap=True)
    return 0


def tuning_logs_applied(log_dir, mod, params, target, *, plan=None, rules=None, sparse=True):
    """One line saying how many of the model's tuning tasks ``log_dir`` holds a result for.

    ``compile(..., tuning_logs=log_dir)`` applies exactly these: a dense function's schedule when
    the log's database has its workload, a sparse layer's knobs when the log measured that layer.
    A log tuned for another model, target or pruning matches nothing, and the line says so.

    Parameters
    ----------
    log_dir : str
        The folder passed to ``compile``.
    mod, params, target, plan, rules, sparse
        As passed to :func:`tvm_sparse.compile` (``target`` parsed).

    Returns
    -------
    str
    """
    from tvm_sparse.tuning import extract_tasks, load_tuning_logs  # noqa: PLC0415 - MetaSchedule only when asked for

    if target.kind.name != "llvm":
        return f"tuning logs {log_dir}: none applied (tune measures CPU targets, not {target.kind.name})"
    tuning_logger = logging.getLogger(load_tuning_logs.__module__)
    level = tuning_logger.level
    tuning_logger.setLevel(logging.ERROR)  # compile has warned about this folder's faults already
    try:
        logs = load_tuning_logs(log_dir)
    finally:
        tuning_logger.setLevel(level)
    dense_tasks, sparse_tasks = extract_tasks(mod, params, target, plan=plan, rules=rules, sparse=sparse)
    dense_tuned = sum(logs.database is not None and logs.database.query_schedule(task.mod, target, "main") is not None
                      for task in dense_tasks)
    sparse_tuned = sum(task.key in logs.sparse_configs for task in sparse_tasks)
    return (f"tuning logs {log_dir}: applied tuned schedules to {dense_tuned} of {len(dense_tasks)} dense "
            f"functions and measured knobs to {sparse_tuned} of {len(sparse_tasks)} sparse layers")


def report_table(report, title):
    """The per-layer decisions as a rich table."""
    table = Table(title=title)
    for column in ("layer", "op", "weight shape", "structure", "density", "kernel", "reason"):
        table.add_column(column, justify="right" if column == "density" else "left")
    for decision in report:
        table.add_row(decision.name, decision.op, "x".join(map(str, decision.weight_shape)), decision.structure,
                      f"{decision.density:.3f}", decision.kernel, decision.reason)
    return table
