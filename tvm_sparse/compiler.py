"""``tvm_sparse.compile``: bind weights, run the tvm_sparse pipeline and build for a target."""

import contextlib
import logging
import os
import platform
import shutil
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from relay_passes.pipeline import build_pipeline
from relay_passes.layer_chains import weight_names
from relay_passes.route_sparse import RouteSparseLayers
from relay_passes.sparse_rules import SparseRules
from schedules.sparse_cpu.direct_conv import BUILD_CONFIG as SPARSE_KERNEL_BUILD_CONFIG
from tvm_sparse.checks import check_params, checked_plan
from tvm_sparse.relax_utils import bind_params, unpack_outputs
from tvm_sparse.target import AARCH64_LINUX_CXX, default_cross_compiler, is_aarch64, parse_target

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one input of a compiled model."""

    name: str
    shape: tuple
    dtype: str


@dataclass
class CompiledModel:
    """A model compiled by :func:`compile`.

    Attributes
    ----------
    executable : tvm.runtime.Executable
        The Relax executable (run it with ``relax.VirtualMachine``).
    target : tvm.target.Target
        The target it was compiled for.
    inputs : list[TensorSpec]
        The runtime inputs of ``main``, in order.
    report : list[LayerDecision]
        One entry per convolution/linear layer the sparse passes looked at.
    lowered : tvm.IRModule or None
        The module after the pipeline, before code generation: :meth:`profile` links it
        against the executable's kernels to follow the calls one by one.
    """

    executable: object
    target: object
    inputs: list
    report: list = field(default_factory=list)
    lowered: object = field(default=None, repr=False)

    @property
    def runs_here(self):
        """Whether this machine can run the executable (a CPU target for this CPU's architecture)."""
        if self.target.kind.name != "llvm":
            return False
        return is_aarch64(self.target) == (platform.machine() in ("aarch64", "arm64"))

    def check_inputs(self, inputs):
        """Convert inputs to numpy and check their number, shapes and dtypes against :attr:`inputs`.

        Parameters
        ----------
        inputs : sequence of array-like (numpy arrays or torch tensors; those on another device are copied)

        Returns
        -------
        list[numpy.ndarray]

        Raises
        ------
        ValueError
            If the number, a shape or a dtype does not match, naming the input.
        """
        if len(inputs) != len(self.inputs):
            names = ", ".join(spec.name for spec in self.inputs)
            raise ValueError(f"the model takes {len(self.inputs)} input(s) ({names}), got {len(inputs)}")
        arrays = []
        for value, spec in zip(inputs, self.inputs):
            if getattr(value, "is_meta", False):
                raise ValueError(f"input {spec.name!r} is a meta tensor: it has no data to run on")
            array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            if tuple(array.shape) != spec.shape:
                raise ValueError(f"input {spec.name!r} must have shape {spec.shape}, got {tuple(array.shape)}")
            if str(array.dtype) != spec.dtype:
                raise ValueError(f"input {spec.name!r} must have dtype {spec.dtype}, got {array.dtype}")
            arrays.append(np.ascontiguousarray(array))
        return arrays

    def virtual_machine(self, device=None):
        """A Relax virtual machine for the executable on ``device`` (default: this CPU)."""
        if device is None:
            if not self.runs_here:
                raise RuntimeError(
                    f"this model is compiled for {self.target}, which this {platform.machine()} machine "
                    "cannot run: export it with export_library() and run it over RPC (tvm_sparse.rpc)"
                )
            device = tvm.cpu()
        return relax.VirtualMachine(self.executable, device)

    def run(self, *inputs):
        """Run the model on this machine.

        Parameters
        ----------
        *inputs : array-like
            One value per entry of :attr:`inputs` (numpy arrays or torch tensors).

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            The single output, or a tuple when the model has several.
        """
        arrays = self.check_inputs(inputs)
        vm = self.virtual_machine()
        device = tvm.cpu()
        outputs = vm["main"](*(tvm.runtime.tensor(array, device) for array in arrays))
        return unpack_outputs(outputs)

    __call__ = run

    def profile(self, *inputs, repeat=5, min_repeat_ms=10):
        """Time of each layer of :attr:`report`, of the other kernels and outside them (:mod:`tvm_sparse.profile`).

        Returns
        -------
        tvm_sparse.profile.Profile
        """
        from tvm_sparse.profile import profile_model  # noqa: PLC0415 - the profiler imports this module

        return profile_model(self, *inputs, repeat=repeat, min_repeat_ms=min_repeat_ms)

    def export_library(self, path, cross_compiler=None):
        """Write the executable as a shared library that ``tvm.runtime.load_module`` loads on the target.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write the ``.so``.
        cross_compiler : str, optional
            The C++ compiler driver that links for the target. By default: this machine's compiler
            for a local target, ``aarch64-linux-gnu-g++`` for Linux aarch64, and ``$TVM_NDK_CC``
            (the Android NDK's clang++ for the device's ABI) for Android.

        Returns
        -------
        str
            The path written.
        """
        path = os.fspath(path)
        compiler = cross_compiler or default_cross_compiler(self.target)
        if compiler is None:
            self.executable.export_library(path)
        else:
            if shutil.which(compiler) is None:
                raise RuntimeError(
                    f"the cross compiler {compiler!r} for {self.target.attrs.get('mtriple')} is not installed; "
                    + ("run `tvm-sparse phone-emulator --prepare-only` or `apt-get install g++-aarch64-linux-gnu`"
                       if compiler == AARCH64_LINUX_CXX else "point TVM_NDK_CC at the NDK's clang++")
                )
            self.executable.export_library(path, fcompile=tvm.support.cc.cross_compiler(compiler))
        return path

    def summary(self):
        """The per-layer report as text lines (one per layer; a note when there is none)."""
        if not self.report:
            return ["no convolution or linear layer was analysed (sparse passes off)"]
        return [f"{d.name}: {d.op} {list(d.weight_shape)} {d.structure} density={d.density:.3f} "
                f"-> {d.kernel}: {d.reason}" for d in self.report]


def compile(mod, params=None, target="llvm", host=None, *, sparse=True, plan=None, rules=None,  # pylint: disable=redefined-builtin
            tuning_logs=None):
    """Compile a Relax module (from :func:`tvm_sparse.from_torch`) with the tvm_sparse pipeline.

    Parameters
    ----------
    mod : tvm.IRModule
        A Relax module with a ``main`` function.
    params : dict[str, array-like], optional
        Weights to bind as constants, by parameter name. Parameters left unbound stay runtime inputs.
    target : str or dict or tvm.target.Target
        Where the model will run: ``"llvm"`` (this CPU), ``"llvm -mtriple=aarch64"``,
        ``"llvm -mtriple=aarch64-linux-android -mcpu=cortex-a76"``, ``"opencl -device=mali"``, ...
        (see :func:`tvm_sparse.target.parse_target`).
    host : str or dict or tvm.target.Target, optional
        Host of a GPU target (default for Mali/Adreno: aarch64 Linux).
    sparse : bool
        Run the sparse passes (default); ``False`` compiles every layer dense.
    plan : dict[str, scheme] or str or os.PathLike, optional
        A pruning plan (:mod:`tvm_sparse.plan`) keyed by weight name, or a plan file written by
        :func:`tvm_sparse.plan.save_plan`. It is verified against
        ``params`` first (a mismatch raises ``PlanError`` naming the layer); the layers it names
        get their scheme's kernel whatever the rules' thresholds.
    rules : relay_passes.sparse_rules.SparseRules, optional
        Thresholds of the sparse-or-dense decision.
    tuning_logs : str or os.PathLike, optional
        A folder written by :func:`tvm_sparse.tune` (``tuning_logs/<model>/<target>/``): its tuned
        dense schedules and sparse-kernel knobs are applied. A missing, partial or corrupt log is
        reported as a warning and the untuned schedules are used.

    Returns
    -------
    CompiledModel
    """
    target = parse_target(target, host)
    check_params(mod, params)
    plan = checked_plan(plan, params) if plan is not None else None
    names = weight_names(mod["main"])
    if params:
        mod = bind_params(mod, params)
    inputs = [TensorSpec(p.name, tuple(int(d) for d in p.ty.shape), str(p.ty.dtype)) for p in mod["main"].params]
    logs = _load_tuning_logs(tuning_logs, target)
    router = RouteSparseLayers(target, rules or SparseRules(), plan, names,
                               kernel_configs=logs.kernel_config if logs else None) if sparse else None
    logger.info("compiling for %s", target)
    with _compile_context(), (logs.context() if logs else contextlib.nullcontext()):
        # "compiled": the model's own control flow (its kernel calls and buffer allocations) is
        # compiled to machine code instead of interpreted; MobileNetV2 runs 1.5% faster (8-10 us).
        with target:
            lowered = build_pipeline(target, [router] if router else [])(mod)
        executable = relax.build(lowered, target=target, relax_pipeline=None, exec_mode="compiled")
    return CompiledModel(executable, target, inputs, list(router.report) if router else [], lowered)


def _load_tuning_logs(path, target):
    if path is None:
        return None
    from tvm_sparse.tuning import load_tuning_logs  # noqa: PLC0415 - MetaSchedule only when asked for

    return load_tuning_logs(path, target)


def _compile_context():
    """The caller's PassContext with the sparse kernels' build config (TIR's CSE turned off).

    The sparse kernels are straight-line code with one literal per weight; TIR's CSE took a third
    of their compile time (22 of 71 s for a 64-channel layer) and LLVM eliminates the same
    subexpressions anyway (dense ResNet-18 ran at the same speed without it).
    """
    current = tvm.transform.PassContext.current()
    config = {key: current.config[key] for key in current.config}
    config.update(SPARSE_KERNEL_BUILD_CONFIG)
    return tvm.transform.PassContext(opt_level=current.opt_level, required_pass=list(current.required_pass),
                                     disabled_pass=list(current.disabled_pass), instruments=list(current.instruments),
                                     config=config)
