"""One pruned model, every runtime side by side: ``tvm-sparse bench model``.

The model (batch 1, its own input size or a given one, seeded random weights and BatchNorm
statistics) is pruned
one-shot by magnitude (:func:`tvm_sparse.pruning.one_shot.magnitude_prune`: pattern + connectivity,
or block-punched, on every 3x3 layer but the first, block-punched on 1x1 and linear layers).
Compared:

- ``tvm_sparse``: the pruned model through ``tvm_sparse.compile`` with the sparse passes;
- ``tvm_sparse tuned``: the same, compiled with the model's tuning logs, when a log root is given
  and holds them (``<root>/<model>-pruned<N>x[-<scheme><block>]/<target>/``, the folder
  ``tvm-sparse tune MODEL --prune magnitude`` writes);
- ``tvm_sparse dense``: the same pruned model compiled with ``sparse=False``;
- ``pytorch``: the pruned model in PyTorch (eager, dense kernels);
- ``onnxruntime``: the *dense* model in ONNX Runtime (the issue's baseline);
- ``deepsparse``: the dense model pruned *unstructured* by magnitude to the same rate per layer,
  in DeepSparse 1.8.0 (its own environment, :mod:`tvm_sparse.bench.deepsparse_engine`);
- ``deepsparse dense``: the dense model in DeepSparse.

Everything is compiled or exported once into a work directory; then per thread count a fresh
worker process (TVM's thread pool is sized once per process) loads them, checks every output
against PyTorch on its own weights, and times them in interleaved rounds.
"""

import copy
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from tvm_sparse.bench.models import benchmark_model, tuning_logs_of
from tvm_sparse.bench.workers import onnxruntime_session, run_workers, worker_main
from tvm_sparse.models import example_input

#: The runtimes, in table order.
RUNTIMES = ("tvm_sparse", "tvm_sparse tuned", "tvm_sparse dense", "pytorch", "onnxruntime", "deepsparse", "deepsparse dense")

#: Outputs must agree with PyTorch on the same weights to this relative error.
AGREEMENT = 1e-4

#: The issues' targets: tvm_sparse at least this many times faster than ... (per model, else the default).
TARGETS = {"default": {"onnxruntime": 4.0, "deepsparse": 2.0},
           "resnet50": {"onnxruntime": 3.0, "deepsparse": 2.0}}


def targets_of(model):
    """The speed-up targets of ``model`` against the other runtimes (:data:`TARGETS`)."""
    return TARGETS.get(model, TARGETS["default"])


@dataclass(frozen=True)
class PrunedModelTiming:
    """Median latencies (ms) per runtime at one thread count, and each runtime's error vs PyTorch.

    A runtime that could not run (DeepSparse not installed) is absent from both dicts.
    """

    model: str
    threads: int
    median_ms: dict
    max_rel_err: dict


@dataclass(frozen=True)
class PreparedModel:
    """What :func:`prepare` made for one model: compile times, pruning and routing facts.

    ``ideal_speedup`` is the speed-up the removed FLOPs allow: the dense multiply-adds of the
    convolution and linear layers over the ones their kept weights leave
    (:func:`tvm_sparse.mapping.layers.model_macs`).
    """

    model: str
    compile_seconds: dict
    compression: float
    routed: int
    layers: int
    ideal_speedup: float = 1.0

    def speedup_reached(self, timing):
        """``(speed-up, fraction of the ideal)``: tvm_sparse dense over tvm_sparse on the same pruned
        model, in ``timing`` (a :class:`PrunedModelTiming` of this model), and that over the ideal."""
        speedup = timing.median_ms["tvm_sparse dense"] / timing.median_ms["tvm_sparse"]
        return speedup, speedup / self.ideal_speedup


def _paths(workdir, name):
    return {kind: os.path.join(workdir, f"{name}.{kind}") for kind in
            ("sparse.so", "tuned.so", "dense.so", "pruned.pt", "dense.onnx", "unstructured.onnx", "input.npy",
             "dense.pt", "unstructured.pt")}


def pruned_variants(name, compression, scheme_3x3="pattern", block=(8, 4), model=None, mapping=None,
                    example=None, target="llvm"):
    """The dense model, the pruned one with its plan, and the unstructured one at the same rates.

    ``scheme_3x3`` and ``block`` are as in :func:`tvm_sparse.pruning.one_shot.one_shot_config`;
    ``model`` (a module, copied) replaces the built-in model ``name``. With ``mapping``
    (``"rules"`` or ``"search"``) the plan is :func:`tvm_sparse.map_schemes`'s for ``target`` on
    ``example``, at the global compression the one-shot plan reaches (the search measures its
    latency table here, with this process's threads).
    """
    from tvm_sparse.mapping.mapper import map_schemes
    from tvm_sparse.pruning.one_shot import (global_compression, magnitude_prune, magnitude_prune_unstructured,
                                             prune_by_plan, weight_sparsity)

    dense = benchmark_model(name) if model is None else copy.deepcopy(model).eval()
    pruned = copy.deepcopy(dense)
    plan = magnitude_prune(pruned, compression=compression, scheme_3x3=scheme_3x3, block=block)
    if mapping is not None:
        mapped = map_schemes(dense, example, target, mapping, compression=global_compression(pruned))
        pruned = copy.deepcopy(dense)
        plan = prune_by_plan(pruned, mapped.plan)
    unstructured = copy.deepcopy(dense)
    magnitude_prune_unstructured(unstructured, weight_sparsity(pruned, plan))
    return dense, pruned, plan, unstructured


def _export_onnx(model, example, path):
    with torch.no_grad():
        # Opset 17: DeepSparse 1.8.0's onnx (1.14) reads up to 19.
        torch.onnx.export(model, (example,), path, input_names=["x"], opset_version=17, dynamo=False)


def prepare(name, compression, target, workdir, rules=None, scheme_3x3="pattern", block=(8, 4), model=None,
            size=None, mapping=None, tuning_logs=None):
    """Prune, compile (sparse and dense) and export one model into ``workdir`` (``model`` and
    ``mapping`` as in :func:`pruned_variants`).

    ``size`` is the side of the input image (default: the built-in model's own; 32 for ``model``);
    with ``tuning_logs`` (a log folder) the pruned model is also compiled with them.

    Returns
    -------
    PreparedModel
    """
    import tvm_sparse
    from tvm_sparse.mapping.layers import model_macs

    paths = _paths(workdir, name)
    example = example_input(name if model is None else None, size=size)
    dense, pruned, plan, unstructured = pruned_variants(name, compression, scheme_3x3, block, model, mapping, example,
                                                        target)
    np.save(paths["input.npy"], example.numpy())
    mod, params = tvm_sparse.from_torch(pruned, example)
    compile_seconds, routed = {}, 0
    variants = [("tvm_sparse", True, None, "sparse.so"), ("tvm_sparse dense", False, None, "dense.so")]
    if tuning_logs is not None:
        variants.insert(1, ("tvm_sparse tuned", True, tuning_logs, "tuned.so"))
    for runtime, sparse, logs, library in variants:
        start = time.perf_counter()
        compiled = tvm_sparse.compile(mod, params, target=target, sparse=sparse, plan=plan, rules=rules,
                                      tuning_logs=logs)
        # LLVM generates the machine code when the library is exported (or first run): time both.
        compiled.export_library(paths[library])
        compile_seconds[runtime] = time.perf_counter() - start
        if runtime == "tvm_sparse":
            routed, layers = sum(d.decision == "sparse" for d in compiled.report), len(compiled.report)
    for model, kind in ((pruned, "pruned.pt"), (dense, "dense.pt"), (unstructured, "unstructured.pt")):
        torch.save(model, paths[kind])
    _export_onnx(dense, example, paths["dense.onnx"])
    _export_onnx(unstructured, example, paths["unstructured.onnx"])
    kept = sum(int(torch.count_nonzero(p)) for n, p in pruned.named_parameters() if n in plan)
    total = sum(p.numel() for n, p in pruned.named_parameters() if n in plan)
    dense_macs, kept_macs = model_macs(pruned, example)
    return PreparedModel(name, compile_seconds, total / kept, routed, layers, dense_macs / kept_macs)


def measure(names, threads, rounds, workdir):
    """Load the prepared models and time them with ``threads`` threads (call in a fresh process).

    Returns
    -------
    list[PrunedModelTiming]
    """
    import tvm
    from tvm import relax

    from tvm_sparse.bench.deepsparse_engine import DeepSparseEngine, deepsparse_python
    from tvm_sparse.bench.timing import configure_threads, interleaved_medians
    from tvm_sparse.relax_utils import unpack_outputs

    configure_threads(threads)
    results = []
    for name in names:
        paths = _paths(workdir, name)
        models = {kind: torch.load(paths[f"{kind}.pt"], weights_only=False).eval()
                  for kind in ("pruned", "dense", "unstructured")}
        x_numpy = np.load(paths["input.npy"])
        example = torch.from_numpy(x_numpy)
        with torch.no_grad():
            expected = {kind: model(example).numpy() for kind, model in models.items()}
        x_tvm = tvm.runtime.tensor(x_numpy)
        libraries = {"tvm_sparse": "sparse.so", "tvm_sparse tuned": "tuned.so", "tvm_sparse dense": "dense.so"}
        machines = {runtime: relax.VirtualMachine(tvm.runtime.load_module(paths[so]), tvm.cpu())
                    for runtime, so in libraries.items() if os.path.exists(paths[so])}
        session = onnxruntime_session(paths["dense.onnx"], threads)

        def run_pytorch(model=models["pruned"]):
            with torch.no_grad():
                return model(example)

        candidates = {runtime: (lambda vm=vm: vm["main"](x_tvm)) for runtime, vm in machines.items()}
        candidates.update({"pytorch": run_pytorch, "onnxruntime": lambda: session.run(None, {"x": x_numpy})})
        outputs = {runtime: unpack_outputs(candidates[runtime]()) for runtime in machines}
        outputs["pytorch"] = run_pytorch().numpy()
        outputs["onnxruntime"] = session.run(None, {"x": x_numpy})[0]
        reference = {"tvm_sparse": "pruned", "tvm_sparse tuned": "pruned", "tvm_sparse dense": "pruned",
                     "pytorch": "pruned", "onnxruntime": "dense", "deepsparse": "unstructured",
                     "deepsparse dense": "dense"}
        engines = []
        if deepsparse_python() is not None:
            for runtime, onnx in (("deepsparse", "unstructured.onnx"), ("deepsparse dense", "dense.onnx")):
                engine = DeepSparseEngine(paths[onnx], paths["input.npy"], threads)
                engines.append(engine)
                candidates[runtime] = engine
                engine()
                out_path = os.path.join(workdir, f"{name}.{threads}.deepsparse.npy")
                engine.save_output(out_path)
                outputs[runtime] = np.load(out_path)
        try:
            timings = interleaved_medians(candidates, rounds=rounds)
        finally:
            for engine in engines:
                engine.close()
        errors = {runtime: _relative_error(out, expected[reference[runtime]]) for runtime, out in outputs.items()}
        results.append(PrunedModelTiming(name, threads, {k: t.median_ms for k, t in timings.items()}, errors))
    return results


def _relative_error(actual, expected):
    return float(np.abs(np.asarray(actual) - expected).max() / np.abs(expected).max())


def run_benchmark(names, compression, thread_counts, rounds, target, rules=None, scheme_3x3="pattern", block=(8, 4),
                  models=None, size=None, mapping=None, tuning_root=None):
    """Prepare each model once, then measure them in one worker process per thread count.

    ``models`` maps a name to a module to use instead of the built-in model of that name (it takes
    a CIFAR-10-shaped image unless ``size`` is given); ``size`` is the side of the input image;
    ``mapping`` as in :func:`pruned_variants`; ``tuning_root`` (e.g. ``"tuning_logs"``) adds
    ``tvm_sparse tuned`` for the one-shot plans whose log folder is there.

    Returns
    -------
    prepared : list[PreparedModel]
    timings : list[PrunedModelTiming]
    """
    from tvm_sparse.pruning.one_shot import one_shot_label

    with tempfile.TemporaryDirectory(prefix="tvm_sparse_bench_model_") as workdir:
        prepared = [prepare(name, compression, target, workdir, rules, scheme_3x3, block, (models or {}).get(name),
                            size, mapping, None if mapping else tuning_logs_of(
                                one_shot_label(name, compression, scheme_3x3, block), target, tuning_root))
                    for name in names]
        rows = run_workers("tvm_sparse.bench.pruned_model", workdir, thread_counts, rounds, names)
    return prepared, [PrunedModelTiming(**row) for row in rows]


if __name__ == "__main__":
    worker_main(measure, __doc__)  # the names of the models prepared in the work directory
