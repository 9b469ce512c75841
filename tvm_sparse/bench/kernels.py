"""Per-layer latency: our sparse kernels vs the best dense implementations, side by side.

For each layer (ResNet-18 / VGG-16 CIFAR and ImageNet 3x3 layers, MobileNetV2 1x1 layers) a
seeded random weight with the layer's sparse structure is made (pattern: 4-entry patterns and 72%
of the kernels removed, 8x; BSR 8x4 at 90% block sparsity; block-punched 8x4 at 8x). Each layer
computes ``relu(conv2d(x, w) + bias)`` at batch 1, by:

- ``compact``: the table-driven sparse kernel of :mod:`schedules.sparse_cpu.compact` (its default
  config from the kernel's tuning space, :meth:`schedules.registry.KernelSpec.candidates`), whose
  compile time does not grow with the non-zeros;
- ``specialized``: the sparse kernel with literal weights (:mod:`schedules.sparse_cpu.specialized`),
  only where the tuner would try it, its code within the target profile's ``code_budget_tuning``
  (larger layers take minutes to compile and lost to the compact code);
- ``tvm_dense``: the same layer with the dense weight through ``tvm_sparse``'s pipeline without
  the sparse phase (the hand-written register-tiled dense schedule of ``schedules.dense.conv2d``);
- ``pytorch`` (oneDNN) and ``onnxruntime`` with the dense weight.

Everything is compiled once (the compile seconds of each are reported); then, per thread count, a fresh worker process (TVM's thread pool is
sized once per process) loads the kernels, checks every output against PyTorch, and times them in
interleaved rounds (:func:`tvm_sparse.bench.timing.interleaved_medians`). The worker prints its
results as JSON.
"""

import functools
import os
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, replace

import numpy as np

from tvm_sparse.bench.workers import onnxruntime_session, run_workers, worker_main

#: Our sparse kernel variants (their codegen names) and the dense implementations, in table order.
SPARSE_RUNTIMES = ("compact", "specialized")
DENSE_RUNTIMES = ("onnxruntime", "pytorch", "tvm_dense")

#: Outputs must agree with PyTorch to this relative error (max |diff| / max |reference|).
AGREEMENT = 1e-4


@dataclass(frozen=True)
class KernelLayer:
    """One benchmarked layer: a convolution ``[filters, channels, kernel, kernel]`` on ``size x size``.

    ``scheme`` is ``"pattern"``, ``"block_punched"`` or ``"bsr"``; ``density`` is the fraction of
    kernels kept (pattern, on top of the 4-of-9 patterns) or of blocks / block columns kept.
    """

    name: str
    scheme: str
    channels: int
    filters: int
    size: int
    kernel: int = 3
    stride: int = 1
    density: float = 0.28

    @property
    def padding(self):
        return self.kernel // 2

    @property
    def data_shape(self):
        return (1, self.channels, self.size, self.size)


LAYERS = {
    layer.name: layer
    for layer in (
        KernelLayer("resnet18-cifar-64x32", "pattern", 64, 64, 32),
        KernelLayer("vgg16-cifar-128x32", "pattern", 128, 128, 32),
        KernelLayer("resnet18-cifar-128x16", "pattern", 128, 128, 16),
        KernelLayer("resnet18-cifar-256x8", "pattern", 256, 256, 8),
        KernelLayer("vgg16-cifar-256x8", "pattern", 256, 256, 8),
        KernelLayer("resnet18-cifar-512x4", "pattern", 512, 512, 4),
        KernelLayer("resnet18-imagenet-64x56", "pattern", 64, 64, 56),
        KernelLayer("resnet18-imagenet-128x28", "pattern", 128, 128, 28),
        KernelLayer("resnet18-imagenet-256x14", "pattern", 256, 256, 14),
        KernelLayer("resnet18-imagenet-512x7", "pattern", 512, 512, 7),
        KernelLayer("block-punched-128x16", "block_punched", 128, 128, 16, density=0.125),
        KernelLayer("mobilenetv2-1x1-144to24x56", "bsr", 144, 24, 56, kernel=1, density=0.1),
        KernelLayer("mobilenetv2-1x1-32to192x28", "bsr", 32, 192, 28, kernel=1, density=0.1),
        KernelLayer("mobilenetv2-1x1-384to64x14", "bsr", 384, 64, 14, kernel=1, density=0.1),
        KernelLayer("mobilenetv2-1x1-960to160x7", "bsr", 960, 160, 7, kernel=1, density=0.1),
    )
}


def layer_named(name):
    """The layer ``name`` of :data:`LAYERS`, or ``"NAME@DENSITY"``: that layer at another density.

    Raises
    ------
    ValueError
        For an unknown layer or a density outside (0, 1].
    """
    base, _, density = name.partition("@")
    if base not in LAYERS:
        raise ValueError(f"unknown layer {base!r}; expected one of {sorted(LAYERS)}")
    if not density:
        return LAYERS[base]
    value = float(density)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    return replace(LAYERS[base], name=name, density=value)


#: The layers of the two speed targets (``--quick``): 3x3 layers of 128 channels or more at 8x, a 1x1 BSR layer.
QUICK = ("vgg16-cifar-128x32", "resnet18-cifar-128x16", "resnet18-cifar-512x4", "mobilenetv2-1x1-144to24x56")


@dataclass(frozen=True)
class KernelTiming:
    """Median latencies (ms) of one layer at one thread count, its FLOP reduction and agreement.

    ``median_ms`` has the sparse variants that were built and every dense implementation.
    """

    layer: str
    threads: int
    median_ms: dict
    flop_reduction: float
    max_rel_err: float

    @property
    def best_dense(self):
        """The fastest dense implementation: ``(name, ms)``."""
        return min(((k, v) for k, v in self.median_ms.items() if k in DENSE_RUNTIMES), key=lambda kv: kv[1])

    @property
    def best_sparse(self):
        """Our fastest sparse variant: ``(name, ms)``."""
        return min(((k, v) for k, v in self.median_ms.items() if k in SPARSE_RUNTIMES), key=lambda kv: kv[1])

    def speedup_of(self, variant):
        """Best dense latency over a sparse variant's (None when it was not built)."""
        return self.best_dense[1] / self.median_ms[variant] if variant in self.median_ms else None

    @property
    def speedup(self):
        """Best dense latency over our best variant's."""
        return self.best_dense[1] / self.best_sparse[1]

    @property
    def achieved_over_ideal(self):
        """The speedup as a fraction of the FLOP reduction."""
        return self.speedup / self.flop_reduction


def result_rows(timings):
    """The timings as JSON-able rows, each with its layer's scheme and nominal density, speed-up and fraction of the ideal."""
    return [dict(asdict(t), scheme=layer_named(t.layer).scheme, density=layer_named(t.layer).density,
                 speedup=t.speedup, achieved_over_ideal=t.achieved_over_ideal) for t in timings]


def layer_weights(layer):
    """The layer's seeded sparse format object, its dense weight ``[K, C, R, S]`` and bias."""
    from tvm_sparse.formats import BlockPunchedWeight, BSRWeight, PatternWeight
    from tvm_sparse.formats import synthetic

    rng = np.random.default_rng(zlib.crc32(layer.name.encode()))
    shape = (layer.filters, layer.channels, layer.kernel, layer.kernel)
    if layer.scheme == "pattern":
        library = synthetic.pattern_library(8, 4, rng)
        dense = synthetic.pattern_pruned(rng, layer.filters, layer.channels, library, layer.density)
        fmt = PatternWeight.from_dense(dense, library)
    elif layer.scheme == "block_punched":
        dense = synthetic.block_punched(rng, shape, (8, 4), layer.density)
        fmt = BlockPunchedWeight.from_dense(dense, (8, 4))
    else:
        dense = synthetic.block_sparse(rng, shape, (8, 4), layer.density)
        fmt = BSRWeight.from_dense(dense, (8, 4))
    bias = rng.standard_normal(layer.filters).astype("float32")
    return fmt, dense, bias


def cpu_kernel(layer, target):
    """The :class:`schedules.registry.KernelSpec` of the layer's scheme on the (CPU) ``target``."""
    from schedules.registry import kernels_for
    from schedules.target_info import target_family

    return kernels_for(target_family(target), layer.scheme)[0]


def sparse_configs(layer, fmt, target):
    """The config of each sparse variant built for the layer: ``{codegen: config}``.

    The compact variant's default always; the specialised one when the tuner would try it (its
    code within the target profile's ``code_budget_tuning``).
    """
    configs = {}
    for config in cpu_kernel(layer, target).candidates(fmt, layer.data_shape, target, stride=layer.stride,
                                                       padding=layer.padding):
        configs.setdefault(config.codegen, config)
    return configs


def _sparse_kernel(layer, fmt, target, config):
    from schedules.epilogue import Epilogue

    return cpu_kernel(layer, target).entry_point(
        fmt, layer.data_shape, stride=layer.stride, padding=layer.padding,
        epilogue=Epilogue(bias=True, activation="relu"), target=target, config=config, name="sparse_layer",
    )


def _dense_module(layer, dense, bias):
    """A Relax ``main(x) = relu(conv2d(x, w) + bias)`` with constant weights."""
    from tvm import relax

    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(layer.data_shape, "float32"))
    with builder.function("main", [x]):
        with builder.dataflow():
            y = builder.emit(relax.op.nn.conv2d(x, relax.const(dense), strides=layer.stride, padding=layer.padding))
            y = builder.emit(relax.op.add(y, relax.const(bias.reshape(1, -1, 1, 1))))
            out = builder.emit_output(builder.emit(relax.op.nn.relu(y)))
        builder.emit_func_output(out)
    return builder.get()


def _onnx_model(layer, dense, bias):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    pad = layer.padding
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[pad] * 4, strides=[layer.stride] * 2),
        helper.make_node("Relu", ["conv"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, layer.name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(layer.data_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(dense, "w"), numpy_helper.from_array(bias, "b")],
    )
    # IR version 9 (ONNX 1.15): the newest onnx writes one that ONNX Runtime cannot read yet.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def prepare(layers, target, workdir):
    """Compile our kernel and the dense TVM module of each layer and export the ONNX models.

    Returns
    -------
    dict[str, dict[str, float]]
        Per layer, compile seconds (kernel generation included) of each sparse variant built and
        of ``tvm_dense``.
    """
    import onnx
    import tvm

    from relay_passes.pipeline import build_pipeline
    from schedules.kernel_table import table_argument
    from schedules.sparse_cpu.direct_conv import BUILD_CONFIG

    seconds = {}
    for layer in layers:
        fmt, dense, bias = layer_weights(layer)
        seconds[layer.name] = {}
        for codegen, config in sparse_configs(layer, fmt, target).items():
            start = time.perf_counter()
            with tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG):
                kernel = _sparse_kernel(layer, fmt, target, config)
                tvm.compile(tvm.IRModule({"sparse_layer": kernel}), target=target).export_library(
                    os.path.join(workdir, f"{layer.name}.{codegen}.so")
                )
            seconds[layer.name][codegen] = time.perf_counter() - start
            table = table_argument(kernel)
            if table is not None:
                np.save(os.path.join(workdir, f"{layer.name}.{codegen}.table.npy"), table)
        start = time.perf_counter()
        tvm.compile(_dense_module(layer, dense, bias), target=target, relax_pipeline=build_pipeline(target)).export_library(
            os.path.join(workdir, f"{layer.name}.dense.so")
        )
        seconds[layer.name]["tvm_dense"] = time.perf_counter() - start
        onnx.save(_onnx_model(layer, dense, bias), os.path.join(workdir, f"{layer.name}.onnx"))
    return seconds


def measure(layers, threads, rounds, workdir):
    """Load the prepared kernels and time them with ``threads`` threads (call in a fresh process).

    Returns
    -------
    list[KernelTiming]
    """
    import torch
    import tvm
    from tvm import relax

    from tvm_sparse.bench.timing import configure_threads, interleaved_medians

    configure_threads(threads)
    dev = tvm.cpu()
    results = []
    for layer in layers:
        fmt, dense, bias = layer_weights(layer)
        x = np.random.default_rng(1).standard_normal(layer.data_shape).astype("float32")
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(dense), torch.from_numpy(bias)
        with torch.no_grad():
            reference = torch.relu(torch.nn.functional.conv2d(xt, wt, bt, layer.stride, layer.padding)).numpy()
        x_tvm, b_tvm = tvm.runtime.tensor(x, dev), tvm.runtime.tensor(bias, dev)
        sparse_calls, sparse_outputs = {}, []
        for codegen in SPARSE_RUNTIMES:
            path = os.path.join(workdir, f"{layer.name}.{codegen}.so")
            if not os.path.exists(path):
                continue
            table_path = path[: -len(".so")] + ".table.npy"
            tables = [tvm.runtime.tensor(np.load(table_path), dev)] if os.path.exists(table_path) else []
            y_tvm = tvm.runtime.tensor(np.zeros(reference.shape, "float32"), dev)
            call = functools.partial(tvm.runtime.load_module(path)["sparse_layer"], x_tvm, b_tvm, *tables, y_tvm)
            call()
            sparse_calls[codegen] = call
            sparse_outputs.append(y_tvm.numpy())
        vm = relax.VirtualMachine(tvm.runtime.load_module(os.path.join(workdir, f"{layer.name}.dense.so")), dev)
        session = onnxruntime_session(os.path.join(workdir, f"{layer.name}.onnx"), threads)

        def run_torch():
            with torch.no_grad():
                return torch.relu(torch.nn.functional.conv2d(xt, wt, bt, layer.stride, layer.padding))

        candidates = {
            **sparse_calls,
            "onnxruntime": lambda: session.run(None, {"x": x}),
            "pytorch": run_torch,
            "tvm_dense": lambda: vm["main"](x_tvm),
        }
        outputs = [*sparse_outputs, session.run(None, {"x": x})[0], vm["main"](x_tvm).numpy()]
        scale = np.abs(reference).max()
        max_rel_err = max(float(np.abs(out - reference).max() / scale) for out in outputs)
        timings = interleaved_medians(candidates, rounds=rounds)
        results.append(
            KernelTiming(layer.name, threads, {k: t.median_ms for k, t in timings.items()}, 1.0 / fmt.density, max_rel_err)
        )
    return results


def run_benchmark(layers, thread_counts, rounds, target):
    """Prepare the layers once, then measure them in one worker process per thread count.

    Returns
    -------
    compile_seconds : dict[str, dict[str, float]]
    timings : list[KernelTiming]
    """
    with tempfile.TemporaryDirectory(prefix="tvm_sparse_kernels_") as workdir:
        compile_seconds = prepare(layers, target, workdir)
        rows = run_workers("tvm_sparse.bench.kernels", workdir, thread_counts, rounds, [layer.name for layer in layers])
    return compile_seconds, [KernelTiming(**row) for row in rows]


if __name__ == "__main__":
    worker_main(measure, __doc__, name_type=layer_named)
