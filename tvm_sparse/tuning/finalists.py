"""The finalists' step: each dense function's best schedules measured again in interleaved rounds.

A MetaSchedule trial is measured once, in one window of time; on a noisy machine the fastest of a
function's trials is then often a lucky one. Here the :data:`FINALISTS` best records of every
function and its untuned schedule run in :data:`CONFIRMATION_ROUNDS` rounds, every function in
each round, and the record file is rewritten with each finalist's median over the rounds.
"""

import logging
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms
from tvm_ffi import structural_hash

from schedules.dense.space import dense_schedule
from tvm_sparse.tuning.logs import FAILED_SECONDS, RECORD_FILE, WORKLOAD_FILE, is_valid, mean_seconds
from tvm_sparse.tuning.search import scheduled

logger = logging.getLogger(__name__)

#: Best records of each dense function that :func:`confirm_dense` measures again.
FINALISTS = 3
#: Interleaved rounds of that measurement; each finalist keeps the median of its rounds.
CONFIRMATION_ROUNDS = 5


class ScheduleKey(NamedTuple):
    """A schedule of a function: structural hashes of the workload and of the scheduled module."""

    workload: int
    schedule: int


@dataclass(frozen=True)
class Schedule:
    """A schedule that can be built and run: its workload, trace, arguments and scheduled module."""

    workload: object
    trace: object
    args_info: list
    mod: tvm.IRModule


def confirm_dense(tasks, target, database, log_dir, builder, runner, device_type):
    """Measure each dense function's finalists again in interleaved rounds; rewrite their records.

    Each finalist's single measurement is replaced by its median over the rounds (the untuned
    schedule joins as a record when no trial measured it; the failed records of a schedule measured
    again are dropped, so the log holds each schedule once). A finalist's median can exceed the
    single measurement of a trial that was not a finalist; the new best records are then measured
    in rounds of their own, until every function's :data:`FINALISTS` best records hold medians. A
    finalist whose build or run fails keeps its record; when a round measures nothing (the device
    is gone) the rest are skipped.

    Returns
    -------
    int
        Functions whose finalists were measured.
    """
    keyed = []  # every record once: (its key, the record)
    for record in database.get_all_tuning_records():
        scheduled_mod = scheduled(record.workload.mod, record.trace)
        keyed.append((ScheduleKey(structural_hash(record.workload.mod), structural_hash(scheduled_mod)), record,
                      scheduled_mod))
    schedules = {}  # ScheduleKey -> Schedule: each function's candidates
    single = {}  # ScheduleKey -> the trial's own mean seconds; none for an untuned schedule no trial measured
    untuned_keys = set()
    for task in tasks:
        if not database.has_workload(task.mod):
            continue
        workload = database.commit_workload(task.mod)
        workload_hash = structural_hash(workload.mod)
        args_info = ms.arg_info.ArgInfo.from_prim_func(task.mod["main"])
        for key, record, scheduled_mod in keyed:
            if key.workload == workload_hash and is_valid(record.run_secs):
                schedules.setdefault(key, Schedule(workload, record.trace, args_info, scheduled_mod))
                single[key] = min(single.get(key, FAILED_SECONDS), mean_seconds(record.run_secs))
        untuned = dense_schedule(task.mod["main"], target, False)  # the schedule compile gives it without logs
        if untuned is not None:
            key = ScheduleKey(workload_hash, structural_hash(untuned.mod))
            schedules.setdefault(key, Schedule(workload, untuned.trace, args_info, untuned.mod))
            untuned_keys.add(key)

    confirmed, unmeasurable = {}, set()

    def finalists():
        """The :data:`FINALISTS` best schedules of each function, by median where they have one."""
        by_function = {}
        for key in schedules.keys() - unmeasurable:
            by_function.setdefault(key.workload, []).append(key)
        return {key for keys in by_function.values()
                for key in sorted(keys, key=lambda k: confirmed.get(k, single.get(k, FAILED_SECONDS)))[:FINALISTS]}

    pending = finalists() | untuned_keys
    while pending:
        medians = median_of_rounds(pending, schedules, target, builder, runner, device_type)
        if medians is None:
            logger.warning("dense finalists: a round measured nothing; the records keep their single measurements")
            break
        confirmed.update(medians)
        unmeasurable |= pending - medians.keys()
        pending = finalists() - confirmed.keys()
    functions = len({key.workload for key in confirmed})
    if functions:
        _rewrite_records(log_dir, target, keyed, schedules, confirmed, single)
    return functions


def _rewrite_records(log_dir, target, keyed, schedules, confirmed, single):
    """Write the record file again with the confirmed medians (staged beside it, then moved over it)."""
    # Every valid record of a schedule measured again takes its median (not only the first, should the
    # log hold a schedule twice). Its failed records go: a device lost mid-run leaves them, and the
    # rerun measures their schedules again (given the median, a failed record became a second one).
    record_path = os.path.join(log_dir, RECORD_FILE)
    staged = record_path + ".new"
    if os.path.exists(staged):
        os.remove(staged)
    rewritten = ms.database.JSONDatabase(os.path.join(log_dir, WORKLOAD_FILE), staged, allow_missing=True)

    def commit(mod, trace, args_info, record_target, run_secs):
        rewritten.commit_tuning_record(ms.database.TuningRecord(
            trace, rewritten.commit_workload(mod), None if run_secs is None else [float(t) for t in run_secs],
            record_target, args_info))

    for key, record, _ in keyed:
        if key in confirmed:
            if is_valid(record.run_secs):
                commit(record.workload.mod, record.trace, record.args_info, record.target, [confirmed[key]])
        else:
            commit(record.workload.mod, record.trace, record.args_info, record.target, record.run_secs)
    for key in sorted(confirmed.keys() - single.keys()):  # untuned schedules that no trial measured
        schedule = schedules[key]
        commit(schedule.workload.mod, schedule.trace, schedule.args_info, target, [confirmed[key]])
    os.replace(staged, record_path)


def median_of_rounds(keys, schedules, target, builder, runner, device_type):
    """Build ``keys``' schedules and run them all in each of :data:`CONFIRMATION_ROUNDS` rounds.

    Returns
    -------
    dict or None
        ``{key: median over the rounds of its mean seconds}`` for the schedules that built and ran
        in every round; None when a round measured nothing (the device is gone).
    """
    keys = sorted(keys)
    built = builder.build([ms.builder.BuilderInput(schedules[k].mod, target) for k in keys])
    artifacts = {k: b.artifact_path for k, b in zip(keys, built) if b.error_msg is None}
    means = {k: [] for k in artifacts}
    for _ in range(CONFIRMATION_ROUNDS):
        futures = runner.run([ms.runner.RunnerInput(path, device_type, schedules[k].args_info)
                              for k, path in artifacts.items()])
        measured = 0
        for key, future in zip(artifacts, futures):
            result = future.result()
            if result.error_msg is None and is_valid(result.run_secs):
                means[key].append(mean_seconds(result.run_secs))
                measured += 1
        if artifacts and not measured:
            return None
    return {k: float(np.median(v)) for k, v in means.items() if len(v) == CONFIRMATION_ROUNDS}
