"""Tuning tasks of a model, found by running the compile pipeline through its ``pack`` phase.

Dense tasks are the PrimFuncs the dense rules meet with at least one knob (deduplicated, weighted
by how often they occur); sparse tasks are the layers the router turned into sparse kernels, with
everything needed to generate their kernel again with other knobs.
"""

import dataclasses
import functools
from dataclasses import dataclass

import tvm
from tvm_ffi import structural_hash

from relay_passes.pipeline import build_pipeline
from relay_passes.layer_chains import weight_names
from relay_passes.route_sparse import KernelCall, RouteSparseLayers
from relay_passes.sparse_rules import SparseRules
from schedules.dense.space import dense_schedule
from tvm_sparse.relax_utils import bind_params, workload_module
from tvm_sparse.tuning.logs import layer_key


@dataclass(frozen=True)
class SparseTask(KernelCall):
    """One routed sparse layer to tune: the router's kernel call, keyed for ``sparse_kernels.json``."""

    @functools.cached_property
    def key(self):
        """A stable hash of the layer (kernel, weight values, shapes, stride/padding, epilogue)."""
        return layer_key(self.kernel, self.weight, self.data_shape, self.epilogue, self.options)

    @classmethod
    def of(cls, call):
        """The task of a :class:`~relay_passes.route_sparse.KernelCall` (its knobs left to the tuner)."""
        return cls(call.kernel, call.weight, tuple(call.data_shape), call.epilogue, dict(call.options))


@dataclass(frozen=True)
class DenseTask:
    """A dense PrimFunc with tunable knobs, as MetaSchedule tunes it (the function named ``main``)."""

    name: str
    mod: tvm.IRModule
    weight: int


def check_tunable(target):
    """Raise ``ValueError`` unless ``target`` is a CPU (llvm) target, the only kind tuning measures."""
    if target.kind.name != "llvm":
        raise ValueError(f"tuning supports CPU (llvm) targets; got {target.kind.name}")


def extract_tasks(mod, params, target, *, plan=None, rules=None, sparse=True):
    """The tuning tasks of a model, as ``tvm_sparse.compile`` would build it.

    Parameters
    ----------
    mod, params, plan, rules, sparse
        As :func:`tvm_sparse.compile`.
    target : tvm.target.Target

    Returns
    -------
    (list[DenseTask], list[SparseTask])
        Dense functions that the schedule phase meets with at least one knob (deduplicated), and
        the routed sparse layers.
    """
    check_tunable(target)
    names = weight_names(mod["main"])
    if params:
        mod = bind_params(mod, params)
    router = RouteSparseLayers(target, rules or SparseRules(), plan, names) if sparse else None
    with tvm.transform.PassContext(opt_level=3):
        packed = build_pipeline(target, [router] if router else [], until="pack")(mod)
    sparse_tasks = [SparseTask.of(d.call) for d in (router.report if router else []) if d.call is not None]
    return dense_tasks(packed, target), sparse_tasks


def dense_tasks(mod, target):
    """The unscheduled PrimFuncs of ``mod`` with knobs, one :class:`DenseTask` per distinct function."""
    found = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled"):
            continue
        task_mod = workload_module(func)
        if not has_knobs(task_mod["main"], target):
            continue
        digest = structural_hash(task_mod)
        if digest in found:
            found[digest] = dataclasses.replace(found[digest], weight=found[digest].weight + 1)
        else:
            found[digest] = DenseTask(gvar.name_hint, task_mod, 1)
    return list(found.values())


def has_knobs(func, target):
    """Whether the dense rules schedule ``func`` with at least one sampled decision."""
    scheduled = dense_schedule(func, target, True)
    return scheduled is not None and any(inst.kind.name.startswith("Sample") for inst in scheduled.trace.insts)
