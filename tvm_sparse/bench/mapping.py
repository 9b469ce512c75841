"""Benchmark of the per-layer mapping: mapped plans against the uniform ones, end to end, side by side.

For one model and thread count (a worker process each, :mod:`tvm_sparse.bench.workers`), the
uniform one-shot plans (every 3x3 layer pattern, or every 3x3 layer block-punched 8x4; 1x1 and
linear block-punched 8x4 at 0.75) are pruned first; their larger global compression (dense over
kept weights of all layers) is the target of the rule- and search-based mappings, whose plans
are pruned the same way. All four are compiled and timed in interleaved rounds; the search's
predicted latency is printed beside its measured one. The table's two calibration models (the
dense model, and each layer's fastest candidate) are timed with them too: their times now against
their times when the table was calibrated tell the machine's drift, and the line refitted on this
row's times predicts the mapped model without it (the prediction's own error).
"""

import copy
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from tvm_sparse.bench.workers import run_workers, worker_main
from tvm_sparse.models import MODELS, example_input

#: The candidate set of the benchmark's search (a narrower one than the default, for its run time).
BENCH_BLOCKS = ((8, 1), (8, 4), (16, 4))
BENCH_SPARSITIES = (0.5, 0.75, 0.875, 0.95)
BENCH_PATTERNS = ((4, 0.5), (4, 0.75), (5, 0.75))

#: The labels of the latency table's calibration models: each layer's fastest candidate, and dense.
REFERENCE = "table's fastest per layer"
DENSE = "dense"


@dataclass
class MappingTiming:
    """One model at one thread count: median latency (ms) per plan, compressions, search facts."""

    model: str
    threads: int
    compression: float
    milliseconds: dict
    compressions: dict
    predicted_ms: float
    mapping_seconds: dict
    errors: dict
    reference_calibrated_ms: float = None
    refitted_predicted_ms: float = None


def _candidates(layer, target):
    from tvm_sparse.mapping.candidates import candidates_for  # noqa: PLC0415

    return candidates_for(layer, target, blocks=BENCH_BLOCKS, sparsities=BENCH_SPARSITIES, patterns=BENCH_PATTERNS)


def measure(names, threads, rounds, workdir):
    """Map, prune, compile and time the plans of each model with ``threads`` threads (a fresh process)."""

    import tvm_sparse  # noqa: PLC0415
    from tvm_sparse.bench.models import benchmark_model  # noqa: PLC0415
    from tvm_sparse.bench.timing import configure_threads  # noqa: PLC0415
    from tvm_sparse.mapping.calibration import ModelCalibration, fastest_plan  # noqa: PLC0415
    from tvm_sparse.mapping.latency import LatencyTable  # noqa: PLC0415
    from tvm_sparse.mapping.layers import find_layers  # noqa: PLC0415
    from tvm_sparse.mapping.mapper import map_schemes  # noqa: PLC0415
    from tvm_sparse.pruning.one_shot import global_compression, magnitude_prune, prune_by_plan  # noqa: PLC0415

    configure_threads(threads)
    compression = float(os.environ.get("TVM_SPARSE_BENCH_COMPRESSION", "8"))
    results = []
    for name in names:
        dense = benchmark_model(name).eval()
        example = example_input(name)
        pruned, plans = {}, {}
        for label, scheme in (("uniform pattern", "pattern"), ("uniform block-punched 8x4", "block_punched")):
            pruned[label] = copy.deepcopy(dense)
            plans[label] = magnitude_prune(pruned[label], compression=compression, scheme_3x3=scheme, block=(8, 4))
        target_compression = max(global_compression(model) for model in pruned.values())
        seconds = {}
        for method in ("rules", "search"):
            start = time.perf_counter()
            mapping = map_schemes(dense, example, "llvm", method, compression=target_compression,
                                  candidates=_candidates if method == "search" else None,
                                  table=os.path.join(workdir, f"{name}-{threads}threads.json"))
            seconds[method] = time.perf_counter() - start
            label = f"mapped ({method})"
            pruned[label] = copy.deepcopy(dense)
            plans[label] = prune_by_plan(pruned[label], mapping.plan)
            if method == "search":
                predicted = mapping.predicted_ms
                searched_sum = sum(row.predicted_ms for row in mapping.report)
        layers = find_layers(dense, example)
        table = LatencyTable.open(os.path.join(workdir, f"{name}-{threads}threads.json"), tvm_sparse.parse_target("llvm"),
                                  threads)
        reference = fastest_plan(layers, {layer.name: _candidates(layer, "llvm") for layer in layers}, table)
        pruned[REFERENCE] = copy.deepcopy(dense)
        plans[REFERENCE] = prune_by_plan(pruned[REFERENCE], reference)
        pruned[DENSE], plans[DENSE] = dense, {}
        milliseconds, errors = time_side_by_side(pruned, plans, example, "llvm", rounds)
        calibration = table.calibration
        refitted = ModelCalibration.fit(milliseconds[DENSE], calibration.dense_sum_ms,
                                        milliseconds[REFERENCE], calibration.reference_sum_ms)
        results.append(MappingTiming(name, threads, target_compression,
                                     milliseconds,
                                     {label: global_compression(model) for label, model in pruned.items()},
                                     predicted, seconds, errors, calibration.reference_ms,
                                     refitted.predict_ms(searched_sum)))
    return results


def time_side_by_side(models, plans, example, target, rounds):
    """Compile each PyTorch model with its plan, check it against PyTorch and time all in interleaved rounds.

    Returns
    -------
    (dict, dict)
        Median milliseconds and largest relative error against PyTorch, by label.
    """
    import tvm  # noqa: PLC0415

    import tvm_sparse  # noqa: PLC0415
    from tvm_sparse.bench.timing import interleaved_medians  # noqa: PLC0415

    compiled = {label: tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target, plan=plans[label])
                for label, model in models.items()}
    errors = {}
    for label, model in compiled.items():
        with torch.no_grad():
            expected = models[label](example).numpy()
        errors[label] = float(np.abs(model(example) - expected).max() / max(np.abs(expected).max(), 1e-6))
    x = tvm.runtime.tensor(example.numpy(), tvm.cpu())
    machines = {label: model.virtual_machine() for label, model in compiled.items()}
    timings = interleaved_medians({label: (lambda vm=vm: vm["main"](x)) for label, vm in machines.items()},
                                  rounds=rounds)
    return {label: t.median_ms for label, t in timings.items()}, errors


def run_benchmark(names, thread_counts, rounds, workdir):
    """Rows of :class:`MappingTiming` (as dicts), one per model and thread count."""
    return run_workers(__name__, workdir, thread_counts, rounds, names)


def format_rows(rows):
    """Text lines: per model and thread count, each plan's latency and its ratio to the best uniform plan."""
    lines = []
    for row in rows:
        times = row["milliseconds"]
        uniform = {k: v for k, v in times.items() if k.startswith("uniform")}
        best_label = min(uniform, key=uniform.get)
        lines.append(f"{row['model']} at {row['threads']} thread(s), global compression >= {row['compression']:.2f}x "
                     f"(mapping took rules {row['mapping_seconds']['rules']:.1f} s, search "
                     f"{row['mapping_seconds']['search']:.0f} s)")
        for label, milliseconds in times.items():
            lines.append(f"  {label:28s} {milliseconds:8.3f} ms  {uniform[best_label] / milliseconds:5.2f}x vs "
                         f"{best_label}  compression {row['compressions'][label]:.2f}x  "
                         f"max rel. error {row['errors'][label]:.1e}")
        measured = times["mapped (search)"]
        lines.append(f"  the rules' plan runs at {measured / times['mapped (rules)']:.0%} of the search's speed")
        lines.append(f"  search predicted {row['predicted_ms']:.3f} ms, measured {measured:.3f} ms "
                     f"({row['predicted_ms'] / measured - 1:+.1%})")
        if row.get("reference_calibrated_ms"):
            now = times[REFERENCE]
            lines.append(f"  {REFERENCE}: {row['reference_calibrated_ms']:.3f} ms when the table was calibrated, "
                         f"{now:.3f} ms now ({row['reference_calibrated_ms'] / now - 1:+.1%}: the machine's drift)")
        if row.get("refitted_predicted_ms"):
            refitted = row["refitted_predicted_ms"]
            lines.append(f"  search predicted by the line refitted on this row's {DENSE} and {REFERENCE} models: "
                         f"{refitted:.3f} ms ({refitted / measured - 1:+.1%}: the prediction without the drift)")
    return lines


if __name__ == "__main__":
    worker_main(measure, "time mapped and uniform plans with one thread count", choices=sorted(MODELS))

