"""``tvm_sparse.tune``: tune a model's kernels with MetaSchedule, locally or over TVM RPC.

Two kinds of kernel come out of ``tvm_sparse.compile``, and they are tuned differently:

* **Dense functions** (the layers the sparse passes left to TVM, after ``PackDenseWeights``) are
  ordinary MetaSchedule tasks: the space is ``schedules.dense.space.dense_search_space`` (the dense
  rules with their ``sample_categorical`` knobs), the search is MetaSchedule's evolutionary search
  with the xgboost cost model, builds and runs go through MetaSchedule's ``LocalBuilder`` and its
  local or RPC runner, and the results land in MetaSchedule's JSON database.
  ``ApplyTunedSchedules`` applies that database when the model is compiled.
* **Sparse kernels** are code generated from the weights (literals, or a table read by per-pattern
  code); their knobs (``SpecializedConvConfig``: code generator, input layout, register tile,
  channel block, parallel split) are code-generation parameters, not schedule decisions on a
  block, so they cannot be a MetaSchedule trace. Each
  candidate configuration is generated as its own PrimFunc and measured with the *same*
  MetaSchedule builder and runner (so RPC, timeouts and errors behave alike); the spaces are a
  handful of configurations (``schedules.registry.KernelSpec.candidates``) and one build takes
  seconds to minutes, so the candidates are measured in order (the default first), not searched by
  a cost model. Results are kept in
  ``sparse_kernels.json`` next to the database, keyed by a hash of the layer (kernel, weight,
  shapes, epilogue).

Faults and resumption: a run that fails (a device that disappeared, a build error) is stored as an
error (MetaSchedule's ``1e10`` seconds; ``"error"`` in ``sparse_kernels.json``) and the run goes on.
A rerun with the same log folder counts the valid measurements already there against the budget
and never measures them again (:class:`ResumingSearch` filters MetaSchedule's candidates; the
sparse candidates are skipped by key); failed ones are tried again.
"""

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import types
from dataclasses import dataclass

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.runner import local_runner
from tvm.ir.utils import derived_object
from tvm.support.popen_pool import PopenPoolExecutor
from tvm_ffi import structural_equal, structural_hash

from relay_passes.pipeline import build_pipeline
from relay_passes.route_sparse import RouteSparseLayers, weight_names
from relay_passes.sparse_rules import SparseRules
from schedules import registry
from schedules.dense.space import dense_schedule, dense_search_space
from schedules.kernel_table import table_argument
from schedules.sparse_cpu.config import SpecializedConvConfig
from schedules.sparse_cpu.direct_conv import BUILD_CONFIG
from tvm_sparse.compiler import bind_params, default_cross_compiler
from tvm_sparse.rpc.session import parse_address
from tvm_sparse.runtime_threads import default_thread_count, use_threads
from tvm_sparse.target import parse_target

logger = logging.getLogger(__name__)

#: Files of a tuning log folder.
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
SPARSE_FILE = "sparse_kernels.json"
COMMAND_FILE = "COMMAND"

#: Run times at or above this are failures (MetaSchedule records a failed run as 1e10 s).
FAILED_SECONDS = 1e9

#: Search rounds without a fresh candidate after which :class:`ResumingSearch` ends a task whose
#: space size is unknown.
EMPTY_ROUNDS = 8

#: Evolutionary search of the dense spaces: a random population scored by the cost model, one
#: round of mutation. The spaces are a few dozen register tiles picked by ``sample_categorical``,
#: which no MetaSchedule mutator changes (mutation cannot find new schedules there); with the
#: default (512 traces, 4 rounds) a search round took 13-14 s on this 2-core machine.
POPULATION = 128
GENETIC_ITERATIONS = 1


class TuningLogError(ValueError):
    """A tuning log folder that cannot be read (missing, partial or corrupt files)."""


@dataclass(frozen=True)
class RPCDevice:
    """A device behind a TVM RPC tracker.

    Attributes
    ----------
    tracker : str
        ``"host:port"`` of the tracker.
    key : str
        The device key its RPC server registered with.
    session_timeout : float
        Seconds one measurement session may take on the device.
    """

    tracker: str
    key: str
    session_timeout: float = 120.0

    def runner(self, evaluator):
        """A MetaSchedule ``RPCRunner`` for this device (arguments from :func:`host_random_arguments`)."""
        host, port = parse_address(self.tracker)
        config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=self.key,
                                     session_timeout_sec=self.session_timeout)
        return DeadlineRPCRunner(config, evaluator_config=evaluator, max_workers=1,
                                 f_alloc_argument=host_random_arguments)


def host_random_arguments(session, device, args_info, alloc_repeat):
    """MetaSchedule ``f_alloc_argument`` for a remote device: random tensors made here and copied there.

    MetaSchedule's default fills them on the device with ``tvm.contrib.random``, which a device
    running only TVM's runtime (the emulated phone, a runtime-only install) does not have.
    Floating-point arguments are uniform in [-1, 1); integer ones are zero.
    """
    del session
    rng = np.random.default_rng(0)
    repeated = []
    for _ in range(alloc_repeat):
        arguments = []
        for kind, dtype, shape in args_info:
            if kind != "TENSOR":
                raise NotImplementedError(f"cannot allocate a {kind} argument")
            value = rng.uniform(-1.0, 1.0, size=shape) if "float" in dtype else np.zeros(shape)
            arguments.append(tvm.runtime.tensor(value.astype(dtype), device))
        repeated.append(arguments)
    return repeated


@derived_object
class DeadlineRPCRunner(ms.runner.RPCRunner._cls):  # pylint: disable=protected-access
    """MetaSchedule's ``RPCRunner`` whose measurements end after ``session_timeout_sec``.

    MetaSchedule's own runner waits for its worker without a limit (its timeout only appears in
    the error message), and a tracker queues a request for a device that has gone away forever:
    a tuning run would hang when the phone disappears. Here the worker pool kills a measurement
    after the session timeout, which MetaSchedule then records as an error.
    """

    def __init__(self, rpc_config, **kwargs):
        super().__init__(rpc_config, **kwargs)
        self.pool.shutdown()
        self.pool = PopenPoolExecutor(max_workers=1, timeout=rpc_config.session_timeout_sec)


@dataclass(frozen=True)
class SparseTask:
    """One routed sparse layer: everything needed to regenerate its kernel with other knobs."""

    kernel: str
    weight: object
    data_shape: tuple
    epilogue: object
    options: dict

    @functools.cached_property
    def key(self):
        """A stable hash of the layer (kernel, weight values, shapes, stride/padding, epilogue)."""
        return layer_key(self.kernel, self.weight, self.data_shape, self.epilogue, self.options)

    def prim_func(self, target, config):
        """The kernel PrimFunc with ``config`` (None: the kernel's own default), named ``main``."""
        return registry.kernel(self.kernel).entry_point(self.weight, self.data_shape, epilogue=self.epilogue,
                                                        target=target, config=config, name="main", **self.options)


@dataclass(frozen=True)
class DenseTask:
    """A dense PrimFunc with tunable knobs, as MetaSchedule tunes it (the function named ``main``)."""

    name: str
    mod: tvm.IRModule
    weight: int


@dataclass(frozen=True)
class TuningResult:
    """What one :func:`tune` call did.

    Attributes
    ----------
    log_dir : str
    dense_tasks, sparse_layers : int
        Tuning tasks found.
    dense_trials, sparse_trials : int
        Measurements made by this call (resumed ones not counted).
    dense_errors, sparse_errors : int
        Failed measurements in the whole log after this call.
    seconds : float
        Wall time of this call.
    """

    log_dir: str
    dense_tasks: int
    sparse_layers: int
    dense_trials: int
    sparse_trials: int
    dense_errors: int
    sparse_errors: int
    seconds: float


def layer_key(kernel, weight, data_shape, epilogue, options):
    """The key of a sparse layer in ``sparse_kernels.json``."""
    dense = np.ascontiguousarray(weight.to_dense(), dtype="float32")
    digest = hashlib.sha256()
    digest.update(repr((kernel, dense.shape, tuple(data_shape), sorted(options.items()), epilogue)).encode())
    digest.update(dense.tobytes())
    return digest.hexdigest()[:32]


def target_slug(target):
    """A folder name for a target: ``llvm-rocketlake``, ``llvm-aarch64-linux-gnu``, ``opencl-mali``."""
    target = parse_target(target)
    parts = [target.kind.name]
    for attr in ("device", "mtriple", "mcpu"):
        value = target.attrs.get(attr)
        if value:
            parts.append(str(value))
    return "-".join("".join(ch if ch.isalnum() or ch in "._" else "-" for ch in part) for part in parts)


# ---------------------------------------------------------------------------------------------
# Task extraction


@tvm.ir.instrument.pass_instrument
class _CaptureBefore:
    """Keep a copy of the module as it enters the pass named ``pass_name`` (later passes edit it in place)."""

    def __init__(self, pass_name):
        self.pass_name = pass_name
        self.mod = None

    def run_before_pass(self, mod, info):
        if info.name == self.pass_name:
            self.mod = tvm.IRModule(dict(mod.functions_items()))


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
    sparse_tasks = []

    def record(kernel, weight, data_shape, epilogue, options):
        sparse_tasks.append(SparseTask(kernel, weight, tuple(data_shape), epilogue, dict(options)))

    names = weight_names(mod["main"])
    if params:
        mod = bind_params(mod, params)
    router = RouteSparseLayers(target, rules or SparseRules(), plan, names, kernel_configs=record) if sparse else None
    capture = _CaptureBefore("tvm_sparse.ApplyTunedSchedules")
    with tvm.transform.PassContext(opt_level=3, instruments=[capture]):
        build_pipeline(target, [router] if router else [])(mod)
    if capture.mod is None:
        raise ValueError(f"the pipeline for {target} has no tuned-schedule phase (CPU targets only)")
    return _dense_tasks(capture.mod, target), sparse_tasks


def _dense_tasks(mod, target):
    found = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled"):
            continue
        task_mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        if not _has_knobs(task_mod["main"], target):
            continue
        digest = structural_hash(task_mod)
        if digest in found:
            found[digest] = dataclasses.replace(found[digest], weight=found[digest].weight + 1)
        else:
            found[digest] = DenseTask(gvar.name_hint, task_mod, 1)
    return list(found.values())


def _has_knobs(func, target):
    scheduled = dense_schedule(func, target, True)
    return scheduled is not None and any(inst.kind.name.startswith("Sample") for inst in scheduled.trace.insts)


# ---------------------------------------------------------------------------------------------
# Dense tasks: MetaSchedule


@derived_object
class ResumingSearch(ms.search_strategy.PySearchStrategy):
    """MetaSchedule's evolutionary search that never hands out a schedule already measured.

    MetaSchedule's own search only remembers what it measured in the current run. This wrapper
    reads the task's valid records from the database at ``pre_tuning`` and drops candidates whose
    scheduled module equals one of them (reporting their recorded times to the inner search, so
    its trial count moves on), and remembers the new valid ones as they come.
    """

    def __init__(self, inner=None):
        self.inner = inner or ms.search_strategy.EvolutionarySearch(population_size=POPULATION,
                                                                     genetic_num_iters=GENETIC_ITERATIONS)
        self.context = None
        self.measured = {}  # structural hash -> recorded run_secs
        self.remaining = 0  # trials this run may still hand out
        self.space_size = None  # schedules in the design spaces, when known

    def _initialize_with_tune_context(self, context):
        self.context = context
        self.inner._initialize_with_tune_context(context)  # pylint: disable=protected-access

    def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None, cost_model=None):
        self.measured = {}
        if database is not None and database.has_workload(self.context.mod):
            workload = database.commit_workload(self.context.mod)
            for record in database.get_all_tuning_records():
                if not structural_equal(record.workload.mod, workload.mod) or not _valid(record.run_secs):
                    continue
                self.measured[structural_hash(_scheduled(self.context.mod, record.trace))] = list(record.run_secs)
        self.remaining = max_trials
        self.space_size = space_size(design_spaces)
        # The inner search counts the candidates dropped here as trials: give it room for them.
        self.inner.pre_tuning(max_trials + len(self.measured), num_trials_per_iter, design_spaces, database,
                              cost_model)

    def post_tuning(self):
        self.inner.post_tuning()

    def generate_measure_candidates(self):
        # Every round is a whole evolutionary search: once each schedule of a space of known size
        # is measured, the task ends at once (VGG-16 spent 10 minutes in empty rounds after its
        # 130th trial).
        if self.space_size is not None and len(self.measured) >= self.space_size:
            return None
        for _ in range(EMPTY_ROUNDS):
            candidates = self.inner.generate_measure_candidates()
            if candidates is None:
                return None
            fresh = [c for c in candidates if structural_hash(c.sch.mod) not in self.measured]
            known = [c for c in candidates if structural_hash(c.sch.mod) in self.measured]
            if known:
                self.inner.notify_runner_results(
                    known, [ms.runner.RunnerResult(self.measured[structural_hash(c.sch.mod)], None)
                            for c in known])
            if fresh and self.remaining > 0:
                fresh = fresh[:self.remaining]
                self.remaining -= len(fresh)
                return fresh
        return None

    def notify_runner_results(self, measure_candidates, results):
        for candidate, result in zip(measure_candidates, results):
            if result.error_msg is None and _valid(result.run_secs):
                self.measured[structural_hash(candidate.sch.mod)] = list(result.run_secs)
        self.inner.notify_runner_results(measure_candidates, results)

    def clone(self):
        return ResumingSearch(self.inner.clone())


def space_size(design_spaces):
    """Schedules in ``design_spaces`` whose only decisions are ``sample_categorical`` (the dense
    spaces), or None when another kind of sampling makes the count unknown."""
    total = 0
    for space in design_spaces:
        size = 1
        for inst in space.trace.insts:
            if inst.kind.name == "SampleCategorical":
                size *= len(inst.attrs[0])
            elif inst.kind.name.startswith("Sample"):
                return None
        total += size
    return total


def _mean_seconds(run_secs):
    return float(np.mean([float(s) for s in run_secs]))


def _valid(run_secs):
    return run_secs is not None and len(run_secs) > 0 and _mean_seconds(run_secs) < FAILED_SECONDS


def open_database(log_dir, allow_missing=True):
    """The MetaSchedule JSON database of a log folder.

    Raises
    ------
    TuningLogError
        If a file is missing (unless ``allow_missing``), unreadable or not a database.
    """
    paths = [os.path.join(log_dir, name) for name in (WORKLOAD_FILE, RECORD_FILE)]
    if not allow_missing:
        missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
        if missing:
            raise TuningLogError(f"{log_dir} has no {' or '.join(missing)}")
    try:
        return ms.database.JSONDatabase(*paths, allow_missing=allow_missing)
    except Exception as error:  # noqa: BLE001 - TVM raises its own error types for bad JSON
        raise TuningLogError(f"{log_dir} holds an unreadable MetaSchedule database: "
                             f"{str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__}") from error


def _records_of(database, mod):
    if not database.has_workload(mod):
        return []
    workload = database.commit_workload(mod)
    return [r for r in database.get_all_tuning_records() if structural_equal(r.workload.mod, workload.mod)]


@derived_object
class _ProgressCallback(ms.measure_callback.PyMeasureCallback):
    def __init__(self, advance):
        self.advance = advance

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        errors = sum(r.error_msg is not None or not _valid(r.run_secs) for r in runner_results)
        self.advance(len(runner_results), errors)


def _tune_dense(tasks, target, database, log_dir, trials, num_trials_per_iter, builder, runner, advance):
    """Run MetaSchedule on ``tasks`` for what is left of ``trials``; returns the trials run and how many failed."""
    done = sum(_valid(r.run_secs) for task in tasks for r in _records_of(database, task.mod))
    if done:
        advance(min(done, trials), 0, resumed=True)
    remaining = trials - done
    if remaining <= 0 or not tasks:
        logger.info("dense: %d valid trials already in the database, nothing left of %d", done, trials)
        return 0, 0
    contexts = [dense_tune_context(task, target) for task in tasks]
    counted, failed = [], []

    def count(n, errors, resumed=False):
        counted.append(n)
        failed.append(errors)
        advance(n, errors, resumed)

    ms.tune_tasks(tasks=contexts, task_weights=[float(t.weight) for t in tasks], work_dir=log_dir,
                  max_trials_global=remaining, num_trials_per_iter=min(num_trials_per_iter, remaining),
                  builder=builder, runner=runner, database=database, cost_model="xgb",
                  measure_callbacks=ms.measure_callback.MeasureCallback.create("default") + [_ProgressCallback(count)],
                  task_scheduler="gradient")
    return sum(counted), sum(failed)


#: Best records of each dense function that :func:`_confirm_dense` measures again.
FINALISTS = 3
#: Interleaved rounds of that measurement; each finalist keeps the median of its rounds.
CONFIRMATION_ROUNDS = 5


def _scheduled(workload_mod, trace):
    """``workload_mod`` scheduled by ``trace``."""
    sch = tvm.s_tir.Schedule(workload_mod)
    trace.apply_to_schedule(sch, remove_postproc=False)
    return sch.mod


def _confirm_dense(tasks, target, database, log_dir, builder, runner, device_type):
    """Measure each dense function's finalists again in interleaved rounds; rewrite their records.

    A MetaSchedule trial is measured once, in one window of time. On a noisy machine the fastest
    of a function's trials is then often a lucky one: MobileNetV2 tuned with 160 trials ran
    0.601 ms at 2 threads against 0.571 untuned. Here the :data:`FINALISTS` best records of
    every function and its untuned schedule run in :data:`CONFIRMATION_ROUNDS` rounds, every
    function in each round, and the record file is rewritten with each finalist's median over
    the rounds in place of its single measurement (the untuned schedule joins as a record when no
    trial measured it; the failed records of a schedule measured again are dropped). A finalist's
    median can exceed the single measurement of a trial that was not a finalist; the new best
    records are then measured in rounds of their own, until every function's :data:`FINALISTS`
    best records hold medians. So the best record is the untuned schedule unless a tuned one beat
    it when measured again. A finalist whose build or run fails keeps its record; when a round
    measures nothing (the device is gone) the rest are skipped.

    Returns
    -------
    int
        Functions whose finalists were measured.
    """
    # Every record once: its key, (workload hash, scheduled-module hash), names it from here on.
    keyed = []
    for record in database.get_all_tuning_records():
        scheduled = _scheduled(record.workload.mod, record.trace)
        keyed.append(((structural_hash(record.workload.mod), structural_hash(scheduled)), record, scheduled))
    schedules = {}  # key -> (workload, trace, args_info, scheduled module): each function's candidates
    single = {}  # key -> the trial's own measurement (mean seconds); none for an untuned schedule no trial measured
    untuned_keys = set()
    for task in tasks:
        if not database.has_workload(task.mod):
            continue
        workload = database.commit_workload(task.mod)
        workload_hash = structural_hash(workload.mod)
        args_info = ms.arg_info.ArgInfo.from_prim_func(task.mod["main"])
        for key, record, scheduled in keyed:
            if key[0] == workload_hash and _valid(record.run_secs):
                schedules.setdefault(key, (workload, record.trace, args_info, scheduled))
                single[key] = min(single.get(key, FAILED_SECONDS), _mean_seconds(record.run_secs))
        untuned = dense_schedule(task.mod["main"], target, False)  # the schedule compile gives it without logs
        if untuned is not None:
            key = (workload_hash, structural_hash(untuned.mod))
            schedules.setdefault(key, (workload, untuned.trace, args_info, untuned.mod))
            untuned_keys.add(key)

    confirmed, unmeasurable = {}, set()

    def finalists():
        """The :data:`FINALISTS` best schedules of each function, by median where they have one."""
        by_function = {}
        for key in schedules.keys() - unmeasurable:
            by_function.setdefault(key[0], []).append(key)
        return {key for keys in by_function.values()
                for key in sorted(keys, key=lambda k: confirmed.get(k, single.get(k, FAILED_SECONDS)))[:FINALISTS]}

    pending = finalists() | untuned_keys
    while pending:
        medians = _median_of_rounds(pending, schedules, target, builder, runner, device_type)
        if medians is None:
            logger.warning("dense finalists: a round measured nothing; the records keep their single measurements")
            break
        confirmed.update(medians)
        unmeasurable |= pending - medians.keys()
        pending = finalists() - confirmed.keys()
    functions = len({key[0] for key in confirmed})
    if not functions:
        return 0

    # Every valid record of a schedule measured again takes its median (not only the first, should the
    # log hold a schedule twice). Its failed records go: a device lost mid-run leaves them, and the
    # rerun measures their schedules again (given the median, a failed record became a second one).
    records = [(r.workload.mod, r.trace, r.args_info, r.target, [confirmed[key]] if key in confirmed else r.run_secs)
               for key, r, _ in keyed if key not in confirmed or _valid(r.run_secs)]
    for key in sorted(confirmed.keys() - single.keys()):  # untuned schedules that no trial measured
        workload, trace, args_info, _ = schedules[key]
        records.append((workload.mod, trace, args_info, target, [confirmed[key]]))
    # Written beside the record file, then moved over it: a run stopped here keeps every record.
    record_path = os.path.join(log_dir, RECORD_FILE)
    staged = record_path + ".new"
    if os.path.exists(staged):
        os.remove(staged)
    rewritten = ms.database.JSONDatabase(os.path.join(log_dir, WORKLOAD_FILE), staged, allow_missing=True)
    for mod, trace, args_info, record_target, run_secs in records:
        rewritten.commit_tuning_record(ms.database.TuningRecord(
            trace, rewritten.commit_workload(mod), None if run_secs is None else [float(t) for t in run_secs],
            record_target, args_info))
    os.replace(staged, record_path)
    return functions


def _median_of_rounds(keys, schedules, target, builder, runner, device_type):
    """Build ``keys``' schedules and run them all in each of :data:`CONFIRMATION_ROUNDS` rounds.

    Returns
    -------
    dict or None
        ``{key: median over the rounds of its mean seconds}`` for the schedules that built and ran
        in every round; None when a round measured nothing (the device is gone).
    """
    keys = sorted(keys)
    built = builder.build([ms.builder.BuilderInput(schedules[k][3], target) for k in keys])
    artifacts = {k: b.artifact_path for k, b in zip(keys, built) if b.error_msg is None}
    means = {k: [] for k in artifacts}
    for _ in range(CONFIRMATION_ROUNDS):
        futures = runner.run([ms.runner.RunnerInput(path, device_type, schedules[k][2]) for k, path in artifacts.items()])
        measured = 0
        for key, future in zip(artifacts, futures):
            result = future.result()
            if result.error_msg is None and _valid(result.run_secs):
                means[key].append(_mean_seconds(result.run_secs))
                measured += 1
        if artifacts and not measured:
            return None
    return {k: float(np.median(v)) for k, v in means.items() if len(v) == CONFIRMATION_ROUNDS}


#: The module of TVM's tensor intrinsics, which ``ms.TuneContext`` imports on creation.
TENSOR_INTRIN_MODULE = "tvm.s_tir.tensor_intrin"


@contextlib.contextmanager
def _tensor_intrinsics_skipped():
    """Within the block, importing :data:`TENSOR_INTRIN_MODULE` gives an empty module.

    ``ms.TuneContext`` imports it on creation, which registers every intrinsic of every target
    (CUDA's included) by parsing TVMScript: 2 min 45 s on this 2-core machine, 57% of a small
    tuning run. The dense spaces never tensorize, so they need none. A real import made before or
    after the block is unaffected.
    """
    if TENSOR_INTRIN_MODULE in sys.modules:
        yield
        return
    sys.modules[TENSOR_INTRIN_MODULE] = types.ModuleType(TENSOR_INTRIN_MODULE)
    try:
        yield
    finally:
        del sys.modules[TENSOR_INTRIN_MODULE]


def dense_tune_context(task, target):
    """MetaSchedule's ``TuneContext`` of a dense task: the dense rules' space and :class:`ResumingSearch`.

    Parameters
    ----------
    task : DenseTask
    target : tvm.target.Target

    Returns
    -------
    tvm.s_tir.meta_schedule.TuneContext
        Initialised (its space can generate design spaces).
    """
    with _tensor_intrinsics_skipped():
        context = ms.TuneContext(mod=task.mod, target=_with_num_cores(target),
                                 space_generator=dense_search_space(target), search_strategy=ResumingSearch(),
                                 task_name=task.name, num_threads=1)
    return context.clone()


def _with_num_cores(target):
    """MetaSchedule's postprocessors need ``num-cores``; a remote device's count is not known here."""
    if target.attrs.get("num-cores"):
        return target
    config = dict(target.export())
    config["num-cores"] = os.cpu_count() or 1
    return tvm.target.Target(config)


# ---------------------------------------------------------------------------------------------
# Sparse kernels: candidate configurations measured with MetaSchedule's builder and runner


def sparse_candidates(task, target):
    """Knob settings to try for one sparse layer (``schedules.registry``), the default first.

    A layer the space does not describe gets only the kernel's own default (None).
    """
    try:
        return registry.kernel(task.kernel).candidates(task.weight, task.data_shape, target, **task.options)
    except (TypeError, ValueError) as error:
        logger.warning("sparse %s %s: no candidate knobs (%s); its default is measured", task.kernel,
                       task.data_shape, error)
        return [None]


def _config_to_json(config):
    return None if config is None else dataclasses.asdict(config)


def _config_from_json(data):
    return None if data is None else SpecializedConvConfig(**data)


class SparseRecords:
    """The measurements of sparse-kernel knobs in ``sparse_kernels.json`` (rewritten after each one).

    Parameters
    ----------
    path : str
    """

    def __init__(self, path):
        self.path = path
        self.records = []
        if os.path.exists(path):
            self.records = _load_sparse_records(path)

    def measured(self, key, config):
        """Whether a valid measurement of ``config`` for layer ``key`` is recorded."""
        data = _config_to_json(config)
        return any(r["layer"] == key and r["config"] == data and r["error"] is None for r in self.records)

    def add(self, key, kernel, config, seconds, error):
        """Record one measurement (``seconds`` a list) or failure (``error`` a message) and save."""
        self.records.append({"layer": key, "kernel": kernel, "config": _config_to_json(config),
                             "seconds": seconds, "error": error})
        folder = os.path.dirname(self.path) or "."
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as handle:
            json.dump({"format": 1, "records": self.records}, handle, indent=1)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, self.path)

    @property
    def errors(self):
        return sum(r["error"] is not None for r in self.records)

    def best(self):
        """``{layer key: fastest config}`` over the valid measurements (None: the kernel's default)."""
        best = {}
        for record in self.records:
            if record["error"] is not None:
                continue
            seconds = float(np.median(record["seconds"]))
            if record["layer"] not in best or seconds < best[record["layer"]][0]:
                best[record["layer"]] = (seconds, record["config"])
        return {key: _config_from_json(config) for key, (_, config) in best.items()}


def _load_sparse_records(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        records = data["records"]
        for record in records:
            _config_from_json(record["config"])
            if record["error"] is None:
                [float(s) for s in record["seconds"]]  # pylint: disable=expression-not-assigned
            str(record["layer"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TuningLogError(f"{path} is not a readable sparse-kernel log: {type(error).__name__}: {error}") from error
    return records


def build_function(mod, target, _params):
    """MetaSchedule ``f_build``: ``tvm.tirx.build`` with the sparse kernels' build config.

    MetaSchedule's default build first imports ``tvm.s_tir.tensor_intrin`` in every (new) builder
    worker, which took 45 s to 7 minutes on this loaded 2-core machine; none of our spaces
    tensorizes, so this build skips it. TIR's CSE is off as in ``tvm_sparse.compile``.
    """
    with tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG):
        return tvm.tirx.build(mod, target=target)


def export_with(compiler, rt_mod):
    """MetaSchedule ``f_export`` that links a shared library with ``compiler`` (a cross compiler)."""
    path = os.path.join(tempfile.mkdtemp(), "tvm_sparse_tuning.so")
    rt_mod.export_library(path, fcompile=tvm.support.cc.cross_compiler(compiler))
    return path


def _measure_sparse(task, configs, target, builder, runners, device_type):
    """Build the candidates of one layer in one builder batch, then run each.

    Returns
    -------
    list of (run seconds or None, error or None)
        One entry per config.
    """
    outcomes = [None] * len(configs)
    funcs = {}
    for index, config in enumerate(configs):
        try:
            funcs[index] = task.prim_func(target, config)
        except ValueError as error:
            outcomes[index] = (None, f"generation: {error}")
    order = sorted(funcs)
    built = builder.build([ms.builder.BuilderInput(tvm.IRModule({"main": funcs[i]}), target) for i in order])
    warm = False
    for index, result in zip(order, built):
        if result.error_msg is not None:
            outcomes[index] = (None, _last_line(result.error_msg))
            continue
        try:
            func = funcs[index]
            runner = runners.for_kernel(func)
            runner_input = ms.runner.RunnerInput(result.artifact_path, device_type,
                                                 ms.arg_info.ArgInfo.from_prim_func(func))
            if not warm:
                # The first run after a build batch ran at one-thread speed on 2 threads (64
                # channels 32x32: 0.055 against 0.029 ms), so the defaults, measured first, lost
                # to configs no faster: it is run once untimed.
                runner.run([runner_input])[0].result()
                warm = True
            (future,) = runner.run([runner_input])
            run = future.result()
        finally:
            with contextlib.suppress(OSError):
                os.remove(result.artifact_path)
        if run.error_msg is not None or not _valid(run.run_secs):
            outcomes[index] = (None, _last_line(run.error_msg or "no run time"))
        else:
            outcomes[index] = ([float(s) for s in run.run_secs], None)
    return outcomes


class _Runners:
    """MetaSchedule runners (local or RPC): one for the dense functions, one for the sparse kernels.

    The random inputs MetaSchedule allocates are fine for data, bias and residual, but a compact
    sparse kernel also takes its int32 table (offsets into the input), which must hold the layer's
    values: for such a kernel the runner's ``f_alloc_argument`` copies the table in. MetaSchedule
    hands ``f_alloc_argument`` to its worker with every run, so the sparse runner is one runner
    whose ``f_alloc_argument`` is set per kernel: its worker process stays up (a runner per
    kernel started a worker each time, ~15 s a measurement on this 2-core machine).
    """

    def __init__(self, rpc, evaluator, timeout, threads):
        self.rpc, self.evaluator, self.timeout, self.threads = rpc, evaluator, timeout, threads
        self.default = self._make()
        self.sparse = None
        self.random_arguments = host_random_arguments if rpc is not None else local_runner.default_alloc_argument

    def _make(self):
        if self.rpc is not None:
            return self.rpc.runner(self.evaluator)
        # The workers' TVM runs with the threads asked for. Left to TVM's default (one thread on this
        # 2-core machine) it ranked candidates by their speed at one thread: MobileNetV2 tuned so
        # ran 0.59 ms at 2 threads against 0.58 untuned; tuned at 2 threads, 0.57 (and 0.96
        # against 1.00 ms at 1 thread).
        return ms.runner.LocalRunner(timeout_sec=self.timeout, evaluator_config=self.evaluator,
                                     initializer=functools.partial(use_threads, self.threads))

    def for_kernel(self, func):
        """The sparse runner, set to pass the kernel's table argument (when it has one)."""
        if self.sparse is None:
            self.sparse = self._make()
        table = table_argument(func)
        if table is None:
            self.sparse.f_alloc_argument = self.random_arguments
        else:
            index = [param.name for param in func.params].index("table")
            self.sparse.f_alloc_argument = functools.partial(alloc_with_table, self.random_arguments, index, table)
        return self.sparse


def alloc_with_table(default_alloc, index, table, *args):
    """MetaSchedule ``f_alloc_argument``: the default random arguments, with argument ``index`` set to ``table``."""
    repeated = default_alloc(*args)
    for arguments in repeated:
        arguments[index].copyfrom(table)
    return repeated


def _last_line(message):
    lines = [line for line in str(message).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "unknown error"


def _tune_sparse(tasks, target, records, trials_per_layer, builder, runners, device_type, advance):
    """Measure up to ``trials_per_layer`` candidates of each layer; returns the measurements made."""
    made = 0
    seen = set()
    for task in tasks:
        if task.key in seen:
            continue
        seen.add(task.key)
        candidates = sparse_candidates(task, target)[:trials_per_layer]
        todo = [config for config in candidates if not records.measured(task.key, config)]
        if len(todo) < len(candidates):
            advance(len(candidates) - len(todo), 0, resumed=True)
        if not todo:
            continue
        for config, (seconds, error) in zip(todo, _measure_sparse(task, todo, target, builder, runners, device_type)):
            if error:
                logger.warning("sparse %s %s config %s: %s", task.kernel, task.data_shape, config, error)
            records.add(task.key, task.kernel, config, seconds, error)
            made += 1
            advance(1, int(error is not None))
    return made


# ---------------------------------------------------------------------------------------------
# The public entry point


def tune(mod, params, target="llvm", *, log_dir, trials=64, sparse_trials=3, rpc=None, plan=None, rules=None,
         sparse=True, threads=None, num_trials_per_iter=16, builder_timeout=600.0, runner_timeout=60.0,
         progress=True):
    """Tune a model's dense functions and sparse kernels; write the logs that ``compile`` applies.

    Parameters
    ----------
    mod : tvm.IRModule
        A Relax module with ``main`` (from :func:`tvm_sparse.from_torch`).
    params : dict[str, array-like]
        Weights to bind, as for :func:`tvm_sparse.compile`.
    target : str or dict or tvm.target.Target
        A CPU target (``"llvm"``, ``"llvm -mtriple=aarch64-linux-gnu -mattr=+neon"``, ...).
    log_dir : str or os.PathLike
        Folder of the logs (``tuning_logs/<model>/<target>/``); created if needed. A folder with
        logs from an earlier run is resumed: valid measurements count and are not repeated.
    trials : int
        Budget of MetaSchedule trials over all dense functions (including resumed ones).
    sparse_trials : int
        Candidate configurations measured per sparse layer (the kernel's default first).
    rpc : RPCDevice, optional
        Measure on the device behind a tracker; default: this machine.
    plan, rules, sparse
        As for :func:`tvm_sparse.compile` (they decide which layers are sparse).
    threads : int, optional
        Threads of TVM's runtime while measuring on this machine: tune for the thread count the
        model will run with. Default: the count compiled models run with in this process
        (:func:`tvm_sparse.runtime_threads.default_thread_count`: ``TVM_NUM_THREADS``, else the
        physical cores). Not with ``rpc``: a device's RPC server runs with its own ``TVM_NUM_THREADS``.
    num_trials_per_iter : int
        MetaSchedule candidates per search round.
    builder_timeout, runner_timeout : float
        Seconds per build (sparse kernels take up to minutes) and per local run.
    progress : bool
        Show a progress bar (rich).

    Returns
    -------
    TuningResult
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    start = time.monotonic()
    target = parse_target(target)
    if target.kind.name != "llvm":
        raise ValueError(f"tuning supports CPU (llvm) targets; got {target.kind.name}")
    if threads is not None and rpc is not None:
        raise ValueError("threads sets local measurements; a device's RPC server runs with its own TVM_NUM_THREADS")
    threads = default_thread_count() if threads is None else threads
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer; got {threads!r}")
    log_dir = os.fspath(log_dir)
    os.makedirs(log_dir, exist_ok=True)
    database = open_database(log_dir)
    records = SparseRecords(os.path.join(log_dir, SPARSE_FILE))
    dense_tasks, sparse_tasks = extract_tasks(mod, params, target, plan=plan, rules=rules, sparse=sparse)
    logger.info("tuning %d dense functions and %d sparse layers for %s", len(dense_tasks), len(sparse_tasks), target)

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=20, enable_cpu_cache_flush=False)
    compiler = default_cross_compiler(target)
    export = functools.partial(export_with, compiler) if compiler else None
    runners = _Runners(rpc, evaluator, runner_timeout, threads)
    builder = ms.builder.LocalBuilder(max_workers=1, timeout_sec=builder_timeout, f_build=build_function,
                                      f_export=export)
    device_type = "cpu"
    n_sparse = len({t.key for t in sparse_tasks})
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        dense_bar = bar.add_task("dense (MetaSchedule)", total=trials if dense_tasks else 0, errors=0)
        sparse_bar = bar.add_task("sparse kernel knobs", total=n_sparse * sparse_trials, errors=0)

        def advancer(task_id):
            def advance(n, errors, resumed=False):
                fields = bar.tasks[[t.id for t in bar.tasks].index(task_id)].fields
                bar.update(task_id, advance=n, errors=fields["errors"] + errors)
                if resumed:
                    logger.info("resumed %d measurements from the log", n)
            return advance

        dense_made, dense_failed = _tune_dense(dense_tasks, target, database, log_dir, trials, num_trials_per_iter,
                                               builder, runners.default, advancer(dense_bar))
        if dense_made and dense_failed:
            logger.warning("dense: %d trials failed; their finalists are not measured again", dense_failed)
        elif dense_made:
            confirm_bar = bar.add_task("dense finalists, again", total=None, errors=0)
            confirmed = _confirm_dense(dense_tasks, target, database, log_dir, builder, runners.default, device_type)
            bar.update(confirm_bar, total=confirmed, completed=confirmed)
            database = open_database(log_dir)
        sparse_made = _tune_sparse(sparse_tasks, target, records, sparse_trials, builder, runners, device_type,
                                   advancer(sparse_bar))
    dense_errors = sum(not _valid(r.run_secs) for r in database.get_all_tuning_records())
    return TuningResult(log_dir, len(dense_tasks), n_sparse, dense_made, sparse_made, dense_errors, records.errors,
                        time.monotonic() - start)


# ---------------------------------------------------------------------------------------------
# Applying logs at compile time


@dataclass
class TuningLogs:
    """Logs loaded for :func:`tvm_sparse.compile`: the MetaSchedule database and the sparse knobs.

    Attributes
    ----------
    database : tvm.s_tir.meta_schedule.database.Database or None
    sparse_configs : dict[str, SpecializedConvConfig or None]
        Best knobs per layer key.
    """

    database: object = None
    sparse_configs: dict = dataclasses.field(default_factory=dict)

    def kernel_config(self, kernel, weight, data_shape, epilogue, options):
        """The ``kernel_configs`` hook of ``RouteSparseLayers``: tuned knobs or None."""
        return self.sparse_configs.get(layer_key(kernel, weight, data_shape, epilogue, options))

    def context(self):
        """``with logs.context():`` puts the database in MetaSchedule's context (or does nothing)."""
        return self.database if self.database is not None else contextlib.nullcontext()


def load_tuning_logs(path):
    """Read a log folder for ``compile``; never raises for bad logs.

    A missing folder or files, or unreadable ones, are logged as a warning naming the problem and
    give empty logs (untuned schedules); a readable part is still used.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    TuningLogs
    """
    path = os.fspath(path)
    logs = TuningLogs()
    if not os.path.isdir(path):
        logger.warning("tuning logs %s: no such folder; compiling with untuned schedules", path)
        return logs
    has_database = any(os.path.exists(os.path.join(path, name)) for name in (WORKLOAD_FILE, RECORD_FILE))
    if has_database:
        try:
            logs.database = open_database(path, allow_missing=False)
        except TuningLogError as error:
            logger.warning("tuning logs: %s; dense functions get untuned schedules", error)
    sparse_path = os.path.join(path, SPARSE_FILE)
    if os.path.exists(sparse_path):
        try:
            logs.sparse_configs = SparseRecords(sparse_path).best()
        except TuningLogError as error:
            logger.warning("tuning logs: %s; sparse kernels get their default knobs", error)
    if logs.database is None and not logs.sparse_configs:
        logger.warning("tuning logs %s: nothing usable (no %s/%s or %s); compiling with untuned schedules",
                       path, WORKLOAD_FILE, RECORD_FILE, SPARSE_FILE)
    return logs
