"""Whole-model latency: tvm_sparse.compile vs PyTorch vs ONNX Runtime, side by side.

Each model (batch 1, its own input size or a given one, random weights with random BatchNorm
statistics) is compiled once with ``tvm_sparse.compile`` (exported to a shared library; also with
its tuning logs, ``<tuning root>/<model>/<target slug>/``, when a root is given and the folder
exists) and exported once to ONNX, with its example input. Then, per thread count, a fresh worker
process (TVM's thread pool is sized once per process) loads the three, checks that their outputs
agree, and times them in interleaved rounds (:func:`tvm_sparse.bench.timing.interleaved_medians`).
The worker prints its results as JSON.
"""

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from tvm_sparse.bench.workers import onnxruntime_session, run_workers, worker_main
from tvm_sparse.models import MODELS, build_model, example_input

#: The runtimes compared, in table order (``tvm_sparse tuned`` only for models with tuning logs).
RUNTIMES = ("tvm_sparse", "tvm_sparse tuned", "pytorch", "onnxruntime")

#: Outputs of the three runtimes must agree to this relative error (max |diff| / max |reference|).
AGREEMENT = 1e-4


@dataclass(frozen=True)
class ModelTiming:
    """Median latencies (ms) of one model at one thread count, and the runtimes' agreement."""

    model: str
    threads: int
    median_ms: dict
    max_rel_err: float


def benchmark_model(name):
    """The model ``name`` in eval mode, with seeded random weights and BatchNorm statistics.

    Random (not default) BatchNorm statistics make the folded weights differ from the raw ones,
    so a wrong fold would show as a disagreement.
    """
    torch.manual_seed(0)
    model = build_model(name).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    return model


def tuning_logs_of(name, target, tuning_root):
    """The tuning log folder of model ``name`` for ``target`` under ``tuning_root``, or None if there is none."""
    from tvm_sparse.target import target_slug

    if tuning_root is None:
        return None
    folder = os.path.join(tuning_root, name, target_slug(target))
    return folder if os.path.isdir(folder) else None


def prepare(models, target, workdir, tuning_root=None, size=None):
    """Compile each model with tvm_sparse (and with its tuning logs, if any) and export it to ONNX, into ``workdir``.

    ``size`` is the side of the input image (default: each model's own).

    Returns
    -------
    dict[str, float]
        Compile time (seconds) per model, untuned.
    """
    import time

    import tvm_sparse

    compile_seconds = {}
    for name in models:
        model, example = benchmark_model(name), example_input(name, size=size)
        np.save(os.path.join(workdir, f"{name}.input.npy"), example.numpy())
        start = time.perf_counter()
        mod, params = tvm_sparse.from_torch(model, example)
        tvm_sparse.compile(mod, params, target=target).export_library(os.path.join(workdir, f"{name}.so"))
        compile_seconds[name] = time.perf_counter() - start
        logs = tuning_logs_of(name, target, tuning_root)
        if logs is not None:
            tuned = tvm_sparse.compile(mod, params, target=target, tuning_logs=logs)
            tuned.export_library(os.path.join(workdir, f"{name}-tuned.so"))
        with torch.no_grad():
            torch.onnx.export(model, (example,), os.path.join(workdir, f"{name}.onnx"),
                              input_names=["x"], dynamo=False)
    return compile_seconds


def measure(models, threads, rounds, workdir):
    """Load the prepared models and time them with ``threads`` threads (call in a fresh process).

    Returns
    -------
    list[ModelTiming]
    """
    import tvm
    from tvm import relax

    from tvm_sparse.bench.timing import configure_threads, interleaved_medians

    configure_threads(threads)
    results = []
    for name in models:
        model, x_numpy = benchmark_model(name), np.load(os.path.join(workdir, f"{name}.input.npy"))
        example = torch.from_numpy(x_numpy)
        libraries = {"tvm_sparse": os.path.join(workdir, f"{name}.so"),
                     "tvm_sparse tuned": os.path.join(workdir, f"{name}-tuned.so")}
        vms = {runtime: relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
               for runtime, path in libraries.items() if os.path.exists(path)}
        x_tvm = tvm.runtime.tensor(x_numpy)
        session = onnxruntime_session(os.path.join(workdir, f"{name}.onnx"), threads)
        candidates = {runtime: (lambda vm=vm: vm["main"](x_tvm)) for runtime, vm in vms.items()}
        candidates["pytorch"] = lambda: model(example)
        candidates["onnxruntime"] = lambda: session.run(None, {"x": x_numpy})
        with torch.no_grad():
            reference = model(example).numpy()
            outputs = [_first(vm["main"](x_tvm)).numpy() for vm in vms.values()]
            outputs.append(session.run(None, {"x": x_numpy})[0])
            max_rel_err = max(float(np.abs(out - reference).max() / np.abs(reference).max()) for out in outputs)
            timings = interleaved_medians(candidates, rounds=rounds)
        results.append(ModelTiming(name, threads, {k: t.median_ms for k, t in timings.items()}, max_rel_err))
    return results


def _first(outputs):
    """The first output of a Relax VM call (a tensor, or a tuple of them)."""
    return outputs[0] if not hasattr(outputs, "numpy") else outputs


def run_benchmark(models, thread_counts, rounds, target, tuning_root=None, size=None):
    """Prepare the models once, then measure them in one worker process per thread count.

    ``tuning_root`` (e.g. ``"tuning_logs"``) adds ``tvm_sparse tuned`` for models with logs there;
    ``size`` is the side of the input image (default: each model's own).

    Returns
    -------
    compile_seconds : dict[str, float]
    timings : list[ModelTiming]
    """
    with tempfile.TemporaryDirectory(prefix="tvm_sparse_bench_") as workdir:
        compile_seconds = prepare(models, target, workdir, tuning_root, size)
        rows = run_workers("tvm_sparse.bench.models", workdir, thread_counts, rounds, models)
    return compile_seconds, [ModelTiming(**row) for row in rows]


if __name__ == "__main__":
    worker_main(measure, __doc__, choices=sorted(MODELS))
