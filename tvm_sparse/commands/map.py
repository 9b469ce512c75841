"""``tvm-sparse map``: choose a pruning scheme per layer for a target and write the plan."""

import sys

from tvm_sparse.commands.console import wide_console
from tvm_sparse.commands.model_argument import add_model_argument, load_model
from tvm_sparse.commands.target_argument import add_target_argument, phone_target_help
from tvm_sparse.mapping.sensitivity import METHODS as SENSITIVITY_METHODS

#: Calibration images per batch and batches for the sensitivities.
CALIBRATION_BATCH = 64
CALIBRATION_BATCHES = 2


def register(subparsers):
    """Add the ``map`` sub-command."""
    parser = subparsers.add_parser(
        "map",
        help="choose a pruning scheme, block and rate for every layer, for a target",
        **phone_target_help(
            "Map every convolution and linear layer of a built-in model to dense, pattern, block-punched or BSR: "
            "by rules (instant) or by an exact search over latencies measured on the target (here, or on a "
            "device behind an RPC tracker) and, given data, per-layer accuracy sensitivities. Writes the plan "
            "JSON that pruning and `tvm-sparse compile --plan` take."),
    )
    add_model_argument(parser)
    add_target_argument(parser)
    parser.add_argument("--method", choices=("rules", "search"), default="rules", help="default rules")
    objective = parser.add_mutually_exclusive_group()
    objective.add_argument("--compression", type=float, help="global compression (dense over kept weights)")
    objective.add_argument("--latency-ms", type=float, help="search: the predicted latency to stay under")
    objective.add_argument("--accuracy-budget", type=float, help="search: the summed sensitivities to stay under")
    parser.add_argument("--data", metavar="fashion-mnist|digits|cifar10:DIR",
                        help="calibration data for the sensitivities (search)")
    parser.add_argument("--sensitivity", choices=SENSITIVITY_METHODS, default="loss",
                        help="how a candidate's accuracy cost is measured: the loss increase when only its layer is "
                             "pruned (default), the (w * dL/dw)^2 it removes (first_order), the loss increase "
                             "left after a few steps of fine-tuning (recovered_loss, slower), or the loss increase "
                             "once the layer's kept weights are refit by least squares to its dense outputs "
                             "(refit_loss)")
    parser.add_argument("--rpc-tracker", metavar="HOST:PORT", help="measure on a device behind this tracker")
    parser.add_argument("--rpc-key", help="the device's key at the tracker")
    parser.add_argument("--table", metavar="DIR", help="keep (and resume) the latency table in this folder")
    parser.add_argument("-o", "--output", required=True, help="write the plan JSON here")
    parser.add_argument("--report-json", metavar="FILE", help="write the per-layer report as JSON here")
    parser.set_defaults(func=run)


def calibration_batches(spec, image_shape):
    """A few ``(inputs, labels)`` batches of the data ``spec`` names, shaped like ``image_shape`` (C, H, W)."""
    import numpy as np
    import torch

    from tvm_sparse import data

    if spec == "fashion-mnist":
        images = data.load_fashion_mnist(size=max(28, image_shape[1]), train_limit=0)
    elif spec == "digits":
        images = data.load_digits(size=image_shape[1] if image_shape[1] % 8 == 0 else 16)
    elif spec.startswith("cifar10:"):
        images = data.load_cifar10(spec.split(":", 1)[1], train_limit=0)
    else:
        raise ValueError(f"--data {spec!r}: choose fashion-mnist, digits or cifar10:DIR")
    x, y = images.x_test, images.y_test
    if x.shape[2:] != tuple(image_shape[1:]):
        raise ValueError(f"--data {spec}: images are {x.shape[2:]}, the model takes {tuple(image_shape[1:])}")
    if x.shape[1] != image_shape[0]:
        x = np.repeat(x, image_shape[0], axis=1)  # grey images for a colour network
    count = CALIBRATION_BATCH * CALIBRATION_BATCHES
    return [(torch.from_numpy(x[i:i + CALIBRATION_BATCH]), torch.from_numpy(y[i:i + CALIBRATION_BATCH]))
            for i in range(0, min(count, len(x)), CALIBRATION_BATCH)]


def run(args):
    """Map, print the report, write the plan."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tvm_sparse.mapping.mapper import map_schemes
    from tvm_sparse.plan import save_plan
    from tvm_sparse.rpc import parse_address
    from tvm_sparse.target import TargetError

    console = wide_console(150)
    try:
        if (args.rpc_tracker is None) != (args.rpc_key is None):
            raise ValueError("--rpc-tracker and --rpc-key go together")
        model, example = load_model(args.model, args.input_size)
        if not hasattr(model, "named_modules"):
            raise ValueError(f"{args.model}: a saved program has no layers to hook; map a torch.nn.Module "
                             "through the Python API (tvm_sparse.map_schemes)")
        model.eval()
        batches = calibration_batches(args.data, tuple(example[0].shape[1:])) if args.data else None
        rpc = (parse_address(args.rpc_tracker), args.rpc_key) if args.rpc_tracker else None
        compression = args.compression
        if args.method == "rules" and compression is None:
            compression = 8.0
        bars = Progress(TextColumn("latency table"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=True)
        with bars:
            task = bars.add_task("table", total=None)
            mapping = map_schemes(model, example[0], args.target, args.method, compression=compression,
                                  latency_ms=args.latency_ms, accuracy_budget=args.accuracy_budget, data=batches,
                                  sensitivity=args.sensitivity, table=args.table, rpc=rpc,
                                  progress=lambda done, total: bars.update(task, completed=done, total=total))
        save_plan(mapping.plan, args.output)
        if args.report_json:
            with open(args.report_json, "w", encoding="utf-8") as handle:
                handle.write(mapping.to_json() + "\n")
    except (ValueError, TargetError, FileNotFoundError, RuntimeError, TimeoutError) as error:
        print(f"tvm-sparse map: {error}", file=sys.stderr)
        return 1
    for line in mapping.table():
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"wrote {args.output}")
    return 0
