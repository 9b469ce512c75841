"""``tvm_sparse.tune``: the entry point that finds a model's tasks and runs each kind of tuning."""

import functools
import logging
import os
import time
from dataclasses import dataclass

from tvm.s_tir import meta_schedule as ms

from tvm_sparse.runtime_threads import default_thread_count
from tvm_sparse.target import default_cross_compiler, parse_target, target_slug
from tvm_sparse.tuning.finalists import confirm_dense
from tvm_sparse.tuning.logs import SPARSE_FILE, SparseRecords, TuningLogError, is_valid, open_database, records_for_target
from tvm_sparse.tuning.progress import TuningProgress
from tvm_sparse.tuning.runners import MeasureRunners, build_function, export_with
from tvm_sparse.tuning.search import tune_dense
from tvm_sparse.tuning.sparse_candidates import tune_sparse
from tvm_sparse.tuning.tasks import check_tunable, extract_tasks

logger = logging.getLogger(__name__)


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


def _checked_threads(threads, rpc):
    if threads is not None and rpc is not None:
        raise ValueError("threads sets local measurements; a device's RPC server runs with its own TVM_NUM_THREADS")
    threads = default_thread_count() if threads is None else threads
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive integer; got {threads!r}")
    return threads


def tune(mod, params, target="llvm", *, log_dir, trials=64, sparse_trials=3, rpc=None, plan=None, rules=None,
         sparse=True, threads=None, num_trials_per_iter=16, builder_timeout=600.0, runner_timeout=60.0,
         progress=None):
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
    rpc : tvm_sparse.tuning.RPCDevice, optional
        Measure on the device behind a tracker; default: this machine.
    plan, rules, sparse
        As for :func:`tvm_sparse.compile` (they decide which layers are sparse).
    threads : int, optional
        Threads of TVM's runtime while measuring on this machine: tune for the thread count the
        model will run with. Default: the count compiled models run with in this process
        (:func:`tvm_sparse.runtime_threads.default_thread_count`). Not with ``rpc``: a device's
        RPC server runs with its own ``TVM_NUM_THREADS``.
    num_trials_per_iter : int
        MetaSchedule candidates per search round.
    builder_timeout, runner_timeout : float
        Seconds per build (sparse kernels take up to minutes) and per local run.
    progress : tvm_sparse.tuning.TuningProgress, optional
        Told of every measurement (the ``tune`` command passes rich progress bars); default: silent.

    Returns
    -------
    TuningResult
    """
    start = time.monotonic()
    target = parse_target(target)
    check_tunable(target)
    threads = _checked_threads(threads, rpc)
    progress = progress or TuningProgress()
    log_dir = os.fspath(log_dir)
    os.makedirs(log_dir, exist_ok=True)
    database = open_database(log_dir)
    _, foreign = records_for_target(database, target)
    if foreign:
        raise TuningLogError(f"{log_dir} holds records tuned for {', '.join(foreign)}; tune for "
                             f"{target_slug(target)} into another folder")
    records = SparseRecords(os.path.join(log_dir, SPARSE_FILE), target_slug(target))
    dense_tasks, sparse_tasks = extract_tasks(mod, params, target, plan=plan, rules=rules, sparse=sparse)
    logger.info("tuning %d dense functions and %d sparse layers for %s", len(dense_tasks), len(sparse_tasks), target)

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=20, enable_cpu_cache_flush=False)
    compiler = default_cross_compiler(target)
    export = functools.partial(export_with, compiler) if compiler else None
    runners = MeasureRunners(rpc, evaluator, runner_timeout, threads)
    builder = ms.builder.LocalBuilder(max_workers=1, timeout_sec=builder_timeout, f_build=build_function,
                                      f_export=export)
    device_type = "cpu"
    n_sparse = len({t.key for t in sparse_tasks})

    def advancer(phase):
        def advance(n, errors, resumed=False):
            if resumed:
                logger.info("%s: resumed %d measurements from the log", phase, n)
            progress.advance(phase, n, errors, resumed)
        return advance

    with progress:
        progress.start("dense", trials if dense_tasks else 0)
        progress.start("sparse", n_sparse * sparse_trials)
        dense_made, dense_failed = tune_dense(dense_tasks, target, database, log_dir, trials, num_trials_per_iter,
                                              builder, runners.default, advancer("dense"))
        if dense_made and dense_failed:
            logger.warning("dense: %d trials failed; their finalists are not measured again", dense_failed)
        elif dense_made:
            progress.start("finalists", None)
            confirmed = confirm_dense(dense_tasks, target, database, log_dir, builder, runners.default, device_type)
            progress.finish("finalists", confirmed)
            database = open_database(log_dir)
        sparse_made = tune_sparse(sparse_tasks, target, records, sparse_trials, builder, runners, device_type,
                                  advancer("sparse"))
    dense_errors = sum(not is_valid(r.run_secs) for r in database.get_all_tuning_records())
    return TuningResult(log_dir, len(dense_tasks), n_sparse, dense_made, sparse_made, dense_errors, records.errors,
                        time.monotonic() - start)
