"""Where the time of a compiled model goes: one row per layer of its report, the other kernels, the rest.

TVM 0.27's Relax VM has no profiler, but its interpreter (the "bytecode" executable) calls an
instrument before every call. So :func:`profile_model` links the compiled model's lowered module
as bytecode against the kernels already compiled in its executable (no code is generated again),
runs it once to record each kernel call with a copy of its arguments, and times every call alone
with ``time_evaluator``. The model's own latency is timed on the executable that users run; what
it spends outside the kernels (the VM's control flow, allocations, copies) is the difference.

Kernel calls map to the report's layers in execution order: a sparse layer to the next call of
a ``sparse_*`` kernel, a dense layer to the next call of a function that TVM named after a
``conv2d``, ``matmul`` or ``dense`` it fused; either must write as many channels as the layer has
filters. The other calls (activations, pooling, reshapes, normalisations left unfused) are "other
kernels". A layer with no such call gets an empty kernel name and no time.
"""

import statistics
from dataclasses import asdict, dataclass, field

import tvm
from tvm import relax

#: Substrings of the names TVM gives to the functions that hold a dense convolution or matmul.
DENSE_KERNEL_OPS = ("conv2d", "matmul", "dense")

#: Prefix of the sparse kernels' function names (relay_passes.route_sparse names them after the layer).
SPARSE_KERNEL_PREFIX = "sparse_"


@dataclass(frozen=True)
class LayerTime:
    """One layer of the report: its kernel function, the implementation the report names, its time."""

    layer: str
    kernel: str
    implementation: str
    ms: float
    share: float


@dataclass(frozen=True)
class Profile:
    """Per-layer times of one model (ms), as :func:`profile_model` measured them.

    Attributes
    ----------
    layers : list[LayerTime]
        One row per layer of ``CompiledModel.report``, in its order and with its names.
    other_kernels : dict[str, float]
        Time of each kernel function that belongs to no report layer (summed over its calls).
    model_ms : float
        The model's latency: the larger of its measured time and the sum of its kernels' (each
        kernel is timed alone and a noisy machine can make the sum exceed the whole).
    """

    layers: list
    other_kernels: dict = field(default_factory=dict)
    model_ms: float = 0.0

    @property
    def layers_ms(self):
        """Time of the report's layers' kernels."""
        return sum(row.ms for row in self.layers)

    @property
    def other_kernels_ms(self):
        """Time of the kernels outside the report's layers."""
        return sum(self.other_kernels.values())

    @property
    def outside_kernels_ms(self):
        """Time outside every kernel (the VM's own work)."""
        return max(0.0, self.model_ms - self.layers_ms - self.other_kernels_ms)

    def breakdown(self):
        """``{label: ms}``: each layer, then ``other kernels`` and ``outside kernels`` (they sum to the model)."""
        parts = {row.layer: row.ms for row in self.layers}
        parts["other kernels"] = self.other_kernels_ms
        parts["outside kernels"] = self.outside_kernels_ms
        return parts

    def to_dict(self):
        """The profile as JSON-able data."""
        return {"model_ms": self.model_ms, "layers": [asdict(row) for row in self.layers],
                "other_kernels": dict(self.other_kernels), "other_kernels_ms": self.other_kernels_ms,
                "outside_kernels_ms": self.outside_kernels_ms}

    def table(self):
        """The profile as aligned text lines: one per layer, then the other kernels, the rest and the total."""
        width = max([len(row.layer) for row in self.layers] + [len("outside kernels")])
        kernel_width = max([len(row.kernel) for row in self.layers] + [len("kernel")])
        lines = [f"{'layer':<{width}}  {'kernel':<{kernel_width}}  {'implementation':<22} {'ms':>9} {'share':>6}"]
        total = self.model_ms or 1.0
        for row in self.layers:
            lines.append(f"{row.layer:<{width}}  {row.kernel:<{kernel_width}}  {row.implementation:<22} "
                         f"{row.ms:9.4f} {row.share:6.1%}")
        for label, ms in (("other kernels", self.other_kernels_ms), ("outside kernels", self.outside_kernels_ms)):
            lines.append(f"{label:<{width}}  {'':<{kernel_width}}  {'':<22} {ms:9.4f} {ms / total:6.1%}")
        lines.append(f"{'model':<{width}}  {'':<{kernel_width}}  {'':<22} {self.model_ms:9.4f} {1:6.1%}")
        return "\n".join(lines)


@dataclass
class RecordedCall:
    """One call of a compiled kernel function: its name, a copy of its arguments, its time."""

    symbol: str
    args: list
    ms: float = 0.0

    @property
    def out_channels(self):
        """Channels of the output (the last argument): dim 1, times the inner block of a 5-D packed layout."""
        shape = tuple(self.args[-1].shape) if hasattr(self.args[-1], "shape") else ()
        if len(shape) < 2:
            return None
        return int(shape[1]) * (int(shape[4]) if len(shape) == 5 else 1)


def kernel_library(executable):
    """The module of compiled kernel functions that a Relax executable imports."""
    libraries = [module for module in executable.mod.imports if module.kind in ("llvm", "c", "static_library")]
    if not libraries:
        raise RuntimeError("the executable holds no CPU kernel library to profile")
    return libraries[0]


def bytecode_executable(lowered, target, library):
    """The lowered module as an interpreted (bytecode) executable that calls the kernels of ``library``.

    TVM's ``relax.build(..., exec_mode="bytecode")`` would generate the kernels' code again; its two
    steps, the VM code generation and the link, are called here with the compiled library instead.
    """
    builder = relax.ExecBuilder()
    relax.vm_build._vmcodegen(builder, lowered, "bytecode")  # pylint: disable=protected-access
    return relax.vm_build.VMExecutable(relax._ffi_api.VMLink(builder, target, library, [], {}))  # pylint: disable=protected-access


def record_calls(vm, library, tensors):
    """Run ``main`` once on the bytecode ``vm`` and return its kernel calls, in order, with copied arguments."""
    calls, is_kernel = [], {}

    def instrument(_func, symbol, before_run, _ret, *args):
        if before_run:
            if symbol not in is_kernel:
                is_kernel[symbol] = library.implements_function(symbol)
            if is_kernel[symbol]:
                calls.append(RecordedCall(symbol, [_copy(arg) for arg in args]))
        return relax.VMInstrumentReturnKind.NO_OP

    vm.set_instrument(instrument)
    vm["main"](*tensors)
    return calls


def _copy(arg):
    """A fresh tensor holding ``arg``'s values (the VM reuses its buffers), or ``arg`` itself if it is no tensor."""
    if isinstance(arg, tvm.runtime.Tensor):
        return tvm.runtime.tensor(arg.numpy(), arg.device)
    return arg


def _median_ms(evaluator, *args):
    return statistics.median(evaluator(*args).results) * 1e3


def assign_layers(report, calls):
    """``{report index: call index}``: each layer's kernel call, in execution order (see the module docstring)."""
    assigned, position = {}, {"sparse": 0, "dense": 0}
    candidates = {
        "sparse": [i for i, c in enumerate(calls) if c.symbol.startswith(SPARSE_KERNEL_PREFIX)],
        "dense": [i for i, c in enumerate(calls) if not c.symbol.startswith(SPARSE_KERNEL_PREFIX)
                  and any(op in c.symbol for op in DENSE_KERNEL_OPS)],
    }
    for index, decision in enumerate(report):
        kind = "sparse" if decision.decision == "sparse" else "dense"
        filters = int(decision.weight_shape[0])
        for offset, call_index in enumerate(candidates[kind][position[kind]:]):
            if calls[call_index].out_channels == filters:
                assigned[index] = call_index
                position[kind] += offset + 1
                break
    return assigned


def profile_model(compiled, *inputs, repeat=5, min_repeat_ms=10):
    """Time each kernel of ``compiled`` alone and the whole model, and map the kernels to the report's layers.

    Parameters
    ----------
    compiled : tvm_sparse.CompiledModel
        A model compiled for this machine's CPU.
    *inputs : array-like
        The model's inputs (as for ``compiled.run``).
    repeat : int
        Measurements of each kernel and of the model; the median is kept.
    min_repeat_ms : float
        Each measurement runs its kernel (or the model) for at least this long.

    Returns
    -------
    Profile

    Raises
    ------
    RuntimeError
        If the model does not run on this machine or was not made by ``tvm_sparse.compile``.
    """
    arrays = compiled.check_inputs(inputs)
    model_vm = compiled.virtual_machine()  # raises for a target this machine cannot run
    if compiled.lowered is None:
        raise RuntimeError("this CompiledModel holds no lowered module to profile: make it with tvm_sparse.compile")
    device = tvm.cpu()
    tensors = [tvm.runtime.tensor(array, device) for array in arrays]
    library = kernel_library(compiled.executable)
    calls = record_calls(relax.VirtualMachine(bytecode_executable(compiled.lowered, compiled.target, library), device),
                         library, tensors)
    for call in calls:
        call.ms = _median_ms(library.time_evaluator(call.symbol, device, repeat=repeat,
                                                                 min_repeat_ms=min_repeat_ms), *call.args)
    model_ms = _median_ms(model_vm.time_evaluator("main", device, repeat=repeat, min_repeat_ms=min_repeat_ms), *tensors)
    model_ms = max(model_ms, sum(call.ms for call in calls))
    assigned = assign_layers(compiled.report, calls)
    layers = []
    for index, decision in enumerate(compiled.report):
        call = calls[assigned[index]] if index in assigned else None
        ms = call.ms if call else 0.0
        layers.append(LayerTime(decision.name, call.symbol if call else "", decision.kernel, ms, ms / model_ms))
    other = {}
    for call_index, call in enumerate(calls):
        if call_index not in assigned.values():
            other[call.symbol] = other.get(call.symbol, 0.0) + call.ms
    return Profile(layers, other, model_ms)
