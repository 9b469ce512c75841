"""Dense functions: MetaSchedule's search over the dense rules' spaces, resumed from the database.

The spaces are ``schedules.dense.space.dense_search_space`` (the dense rules with their
``sample_categorical`` knobs), searched by MetaSchedule's evolutionary search with the xgboost
cost model; :class:`ResumingSearch` makes a rerun skip what the database already measured.
"""

import contextlib
import logging
import os
import sys
import types

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm_ffi import get_global_func, register_global_func, structural_equal, structural_hash

from schedules.dense.space import dense_search_space
from tvm_sparse.tuning.logs import is_valid, records_of

logger = logging.getLogger(__name__)

#: Search rounds without a fresh candidate after which :class:`ResumingSearch` ends a task whose
#: space size is unknown.
EMPTY_ROUNDS = 8

#: Evolutionary search of the dense spaces: a random population scored by the cost model, one
#: round of mutation. The spaces are a few dozen register tiles picked by ``sample_categorical``,
#: which no MetaSchedule mutator changes, so more rounds of mutation find nothing new.
POPULATION = 128
GENETIC_ITERATIONS = 1

#: The module of TVM's tensor intrinsics, which ``ms.TuneContext`` imports on creation.
TENSOR_INTRIN_MODULE = "tvm.s_tir.tensor_intrin"


def scheduled(workload_mod, trace):
    """``workload_mod`` scheduled by ``trace``."""
    sch = tvm.s_tir.Schedule(workload_mod)
    trace.apply_to_schedule(sch, remove_postproc=False)
    return sch.mod


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
                if not structural_equal(record.workload.mod, workload.mod) or not is_valid(record.run_secs):
                    continue
                self.measured[structural_hash(scheduled(self.context.mod, record.trace))] = list(record.run_secs)
        self.remaining = max_trials
        self.space_size = space_size(design_spaces)
        # The inner search counts the candidates dropped here as trials: give it room for them.
        self.inner.pre_tuning(max_trials + len(self.measured), num_trials_per_iter, design_spaces, database,
                              cost_model)

    def post_tuning(self):
        self.inner.post_tuning()

    def generate_measure_candidates(self):
        # Every round is a whole evolutionary search: once each schedule of a space of known size
        # is measured, the task ends at once instead of searching empty rounds.
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
            if result.error_msg is None and is_valid(result.run_secs):
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


@contextlib.contextmanager
def tensor_intrinsics_skipped():
    """Within the block, importing :data:`TENSOR_INTRIN_MODULE` gives an empty module.

    ``ms.TuneContext`` imports it on creation, which registers every intrinsic of every target
    (CUDA's included) by parsing TVMScript, most of a small tuning run's time. The dense spaces
    never tensorize, so they need none. A real import made before or after the block is unaffected.
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
    task : tvm_sparse.tuning.tasks.DenseTask
    target : tvm.target.Target

    Returns
    -------
    tvm.s_tir.meta_schedule.TuneContext
        Initialised (its space can generate design spaces).
    """
    with tensor_intrinsics_skipped():
        context = ms.TuneContext(mod=task.mod, target=with_num_cores(target),
                                 space_generator=dense_search_space(target), search_strategy=ResumingSearch(),
                                 task_name=task.name, num_threads=1)
    return context.clone()


def with_num_cores(target):
    """``target`` with ``num-cores`` (MetaSchedule's postprocessors need it; a device's count is unknown here)."""
    if target.attrs.get("num-cores"):
        return target
    config = dict(target.export())
    config["num-cores"] = os.cpu_count() or 1
    return tvm.target.Target(config)


@derived_object
class CountMeasurements(ms.measure_callback.PyMeasureCallback):
    """MetaSchedule measure callback that passes each batch's size and failures to ``advance(n, errors)``."""

    def __init__(self, advance):
        self.advance = advance

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        errors = sum(r.error_msg is not None or not is_valid(r.run_secs) for r in runner_results)
        self.advance(len(runner_results), errors)


@contextlib.contextmanager
def plain_text_tables():
    """MetaSchedule's progress table as text, also in Jupyter.

    In a Jupyter kernel MetaSchedule shows its table as a pandas DataFrame, and pandas is no
    dependency of tvm_sparse: tuning from a notebook failed with "No module named 'pandas'".
    """
    name = "s_tir.meta_schedule.using_ipython"
    previous = get_global_func(name)
    register_global_func(name, lambda: False, override=True)
    try:
        yield
    finally:
        register_global_func(name, previous, override=True)


def tune_dense(tasks, target, database, log_dir, trials, num_trials_per_iter, builder, runner, advance):
    """Run MetaSchedule on ``tasks`` for what is left of ``trials``.

    ``advance(n, errors, resumed=False)`` is told of every batch (and of the valid trials already
    in the database, as resumed). Returns the trials run and how many failed.
    """
    done = sum(is_valid(r.run_secs) for task in tasks for r in records_of(database, task.mod))
    if done:
        advance(min(done, trials), 0, resumed=True)
    remaining = trials - done
    if remaining <= 0 or not tasks:
        logger.info("dense: %d valid trials already in the database, nothing left of %d", done, trials)
        return 0, 0
    contexts = [dense_tune_context(task, target) for task in tasks]
    counted, failed = [], []

    def count(n, errors):
        counted.append(n)
        failed.append(errors)
        advance(n, errors)

    with plain_text_tables():
        ms.tune_tasks(tasks=contexts, task_weights=[float(t.weight) for t in tasks], work_dir=log_dir,
                      max_trials_global=remaining, num_trials_per_iter=min(num_trials_per_iter, remaining),
                      builder=builder, runner=runner, database=database, cost_model="xgb",
                      measure_callbacks=ms.measure_callback.MeasureCallback.create("default") + [CountMeasurements(count)],
                      task_scheduler="gradient")
    return sum(counted), sum(failed)
