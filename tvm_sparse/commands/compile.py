"""``tvm-sparse compile``: compile a model for a target, optionally print the per-layer report."""

import sys

from rich.table import Table

from relay_passes.sparse_rules import SparseRules
from tvm_sparse.commands.console import wide_console
from tvm_sparse.commands.pruning_options import add_scheme_arguments, prune_as_asked
from tvm_sparse.models import MODELS


def register(subparsers):
    """Add the ``compile`` sub-command."""
    parser = subparsers.add_parser(
        "compile",
        help="compile a model with the sparse passes and export it",
        description="Compile a built-in CIFAR-10 model (optionally pruned one-shot by magnitude) or a "
                    "torch.export program saved with torch.export.save (.pt2) for a target, export the "
                    "library, and print what the sparse passes decided for each layer.",
    )
    parser.add_argument("model", help=f"a built-in model ({', '.join(sorted(MODELS))}) or a .pt2 file")
    parser.add_argument("--target", default="llvm", help="target string (default llvm: this CPU)")
    parser.add_argument("--prune", choices=("none", "magnitude"), default="none",
                        help="prune a built-in model first: 3x3 layers as --scheme-3x3 says, block-punched "
                             "1x1/linear (default none)")
    parser.add_argument("--compression", type=float, default=8.0,
                        help="compression of the 3x3 layers when pruning (default 8)")
    add_scheme_arguments(parser)
    parser.add_argument("--plan", help="a plan JSON (tvm_sparse.plan) to verify and follow")
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
    parser.set_defaults(func=run)


def run(args):
    """Load, optionally prune, compile, export and report."""
    import torch

    import tvm_sparse
    from tvm_sparse.plan import PlanError, load_plan
    from tvm_sparse.target import TargetError

    console = wide_console(150)
    try:
        model, example = _load(args.model, torch)
        plan = load_plan(args.plan) if args.plan else None
        rules = SparseRules(pattern_max_density=args.pattern_max_density,
                            small_map_pattern_max_density=args.small_map_pattern_max_density,
                            block_max_density=args.block_max_density, min_macs=args.min_macs,
                            max_kernel_terms=args.max_kernel_terms)
        if args.prune == "magnitude":
            if not hasattr(model, "named_modules"):
                raise ValueError("--prune works on built-in models; prune a .pt2 program before exporting it")
            plan = prune_as_asked(model, args)
        with console.status(f"compiling {args.model} for {args.target}"):
            compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target=args.target,
                                          sparse=not args.dense, plan=plan, rules=rules)
        if args.output:
            console.print(f"wrote {compiled.export_library(args.output)}")
    except (ValueError, TargetError, PlanError, FileNotFoundError, RuntimeError) as error:
        print(f"tvm-sparse compile: {error}", file=sys.stderr)
        return 1
    if args.summary:
        console.print(report_table(compiled.report, f"{args.model} for {compiled.target.kind.name} "
                                                    f"{compiled.target.attrs.get('mtriple', '')}"))
    return 0


def _load(name, torch):
    if name in MODELS:
        from tvm_sparse.models import build_model

        return build_model(name), torch.randn(1, 3, 32, 32)
    if not name.endswith(".pt2"):
        raise ValueError(f"{name!r} is neither a built-in model ({', '.join(sorted(MODELS))}) nor a .pt2 file")
    exported = torch.export.load(name)
    return exported, exported.example_inputs[0]


def report_table(report, title):
    """The per-layer decisions as a rich table."""
    table = Table(title=title)
    for column in ("layer", "op", "weight shape", "structure", "density", "kernel", "reason"):
        table.add_column(column, justify="right" if column == "density" else "left")
    for decision in report:
        table.add_row(decision.name, decision.op, "x".join(map(str, decision.weight_shape)), decision.structure,
                      f"{decision.density:.3f}", decision.kernel, decision.reason)
    return table
