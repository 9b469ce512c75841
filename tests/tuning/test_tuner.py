"""tvm_sparse.tune: MetaSchedule over a local tracker and server, logs applied by compile, faults.

The model is the pass tests' residual block with ``conv1`` left dense: one dense convolution for
MetaSchedule and three sparse layers (two 3x3 pattern, one block-punched 1x1 and a linear) for
the knob measurements.
"""

import dataclasses
import json
import logging
import os
import sys
import threading
import time

import numpy as np
import pytest
import torch
from tvm_ffi import structural_hash

import tvm
import tvm_sparse
from tvm.s_tir import meta_schedule as ms
from relay_passes.sparse_rules import SparseRules
from schedules.dense.space import dense_schedule
from tests.conftest import relative_error
from tvm_sparse.rpc import local_server
from tvm_sparse.tuning import (FAILED_SECONDS, RECORD_FILE, SPARSE_FILE, WORKLOAD_FILE, RPCDevice, TuningLogError,
                               extract_tasks, load_tuning_logs, open_database, tune)
from tvm_sparse.tuning.finalists import confirm_dense
from tvm_sparse.tuning.runners import build_function, session_on_a_registered_device
from tvm_sparse.tuning.search import TENSOR_INTRIN_MODULE, dense_tune_context, scheduled, space_size
from tvm_sparse.runtime_threads import use_threads

pytestmark = pytest.mark.tuning

RULES = SparseRules(min_macs=0)

#: A measurement planted in a log, about 1 ms (a power of two: the same in float32 and float64).
PLANTED_SECONDS = 2.0 ** -10


def _expected(model, example):
    with torch.no_grad():
        return model(example).numpy()


def _valid_records(log_dir):
    database = open_database(str(log_dir), allow_missing=False)
    return [r for r in database.get_all_tuning_records() if float(np.mean([float(s) for s in r.run_secs])) < 1e9]


def _sparse_records(log_dir):
    with open(os.path.join(log_dir, SPARSE_FILE), encoding="utf-8") as handle:
        return json.load(handle)["records"]


def _trace_hashes(records):
    return [structural_hash(scheduled(record.workload.mod, record.trace)) for record in records]


def _untuned_hash(mod, params):
    """Hash of the dense function's untuned schedule, as :func:`_trace_hashes` hashes a record's."""
    target = tvm_sparse.parse_target("llvm")
    (task,), _ = extract_tasks(mod, params, target, rules=RULES)
    return structural_hash(dense_schedule(task.mod["main"], target, False).mod)


def test_tune_over_a_local_tracker_then_compile_and_resume(tracker, block, tmp_path):
    model, example, mod, params = block
    with local_server(tracker, "tune-x86"):
        device = RPCDevice(f"{tracker[0]}:{tracker[1]}", "tune-x86", session_timeout=60)
        result = tune(mod, params, "llvm", log_dir=tmp_path, trials=4, sparse_trials=2, rpc=device, rules=RULES,
                      num_trials_per_iter=4)
        assert (result.dense_tasks, result.sparse_layers) == (1, 3)
        assert (result.dense_trials, result.sparse_trials) == (4, 6)
        assert (result.dense_errors, result.sparse_errors) == (0, 0)
        valid = _valid_records(tmp_path)
        hashes = _trace_hashes(valid)
        assert len(set(hashes)) == len(valid) and _untuned_hash(mod, params) in hashes and len(valid) in (4, 5)
        # the finalists were measured again: the best record holds the median of those rounds
        database = open_database(str(tmp_path), allow_missing=False)
        (best,) = database.get_top_k(database.commit_workload(valid[0].workload.mod), 1)
        assert len(best.run_secs) == 1

        # The same call again resumes: everything is in the log, nothing is measured again.
        again = tune(mod, params, "llvm", log_dir=tmp_path, trials=4, sparse_trials=2, rpc=device, rules=RULES)
        assert (again.dense_trials, again.sparse_trials) == (0, 0)
        assert len(_valid_records(tmp_path)) == len(valid) and len(_sparse_records(tmp_path)) == 6

    # compile applies both parts of the log: the dense function is found in the database and each
    # sparse layer gets its fastest measured knobs.
    logs = load_tuning_logs(tmp_path)
    dense_tasks, sparse_tasks = extract_tasks(mod, params, tvm_sparse.parse_target("llvm"), rules=RULES)
    assert logs.database.query_schedule(dense_tasks[0].mod, tvm_sparse.parse_target("llvm"), "main") is not None
    fastest = {}
    for record in _sparse_records(tmp_path):
        seconds = float(np.median(record["seconds"]))
        if record["layer"] not in fastest or seconds < fastest[record["layer"]][0]:
            fastest[record["layer"]] = (seconds, record["config"])
    for task in sparse_tasks:
        chosen = logs.kernel_config(task.kernel, task.weight, task.data_shape, task.epilogue, task.options)
        assert (dataclasses.asdict(chosen) if chosen else None) == fastest[task.key][1]
    compiled = tvm_sparse.compile(mod, params, "llvm", rules=RULES, tuning_logs=tmp_path)
    assert [d.decision for d in compiled.report] == ["dense", "sparse", "sparse", "sparse"]
    assert relative_error(compiled.run(example), _expected(model, example)) <= 1e-5


def test_a_device_lost_mid_tuning_leaves_errors_and_a_rerun_measures_only_what_is_missing(tracker, block, tmp_path):
    model, example, mod, params = block
    device = RPCDevice(f"{tracker[0]}:{tracker[1]}", "tune-lost", session_timeout=6)
    records = tmp_path / RECORD_FILE

    with local_server(tracker, "tune-lost") as server:
        def pull_the_plug():  # the device disappears once the first batch is in the database
            while not (records.exists() and records.read_text().count("\n") >= 2):
                time.sleep(0.2)
            server.terminate()

        killer = threading.Thread(target=pull_the_plug, daemon=True)
        killer.start()
        first = tune(mod, params, "llvm", log_dir=tmp_path, trials=6, sparse_trials=1, rpc=device, rules=RULES,
                     num_trials_per_iter=2)
        killer.join(timeout=5)
    assert first.dense_trials == 6
    assert first.dense_errors >= 1 and first.sparse_errors == 3  # every sparse layer came after the loss
    measured = _valid_records(tmp_path)
    assert 2 <= len(measured) < 6

    with local_server(tracker, "tune-lost"):
        second = tune(mod, params, "llvm", log_dir=tmp_path, trials=6, sparse_trials=1, rpc=device, rules=RULES,
                      num_trials_per_iter=2)
    assert second.dense_trials == 6 - len(measured)
    assert second.sparse_trials == 3
    valid = _valid_records(tmp_path)
    hashes = _trace_hashes(valid)
    assert len(set(hashes)) == len(valid)  # nothing measured twice
    # the six trials, and the untuned schedule that confirmed them unless a trial had it
    assert _untuned_hash(mod, params) in hashes and len(valid) in (6, 7)
    assert sum(r["error"] is None for r in _sparse_records(tmp_path)) == 3
    compiled = tvm_sparse.compile(mod, params, "llvm", rules=RULES, tuning_logs=tmp_path)
    assert relative_error(compiled.run(example), _expected(model, example)) <= 1e-5


def test_a_measurement_on_a_device_no_server_registered_fails_instead_of_queueing(tracker):
    """The tracker would queue the request forever; a lost device fails each measurement at once."""
    config = ms.runner.RPCConfig(tracker_host=tracker[0], tracker_port=tracker[1], tracker_key="lost-phone",
                                 session_timeout_sec=600)
    with pytest.raises(RuntimeError, match="no device with key 'lost-phone' is registered"):
        session_on_a_registered_device(config)


@pytest.mark.parametrize("measured_since", [True, False], ids=["failed-then-measured", "failed-only"])
def test_a_failed_record_of_a_schedule_measured_again_leaves_one_valid_record(block, tmp_path, measured_since):
    """A device lost mid-run leaves failed records; a rerun measures their schedules again. The
    finalists' step must not turn the failed record into a second measurement of the schedule."""
    _, _, mod, params = block
    target = tvm_sparse.parse_target("llvm")
    (task,), _ = extract_tasks(mod, params, target, rules=RULES)
    untuned = dense_schedule(task.mod["main"], target, False)
    database = open_database(str(tmp_path))
    workload = database.commit_workload(task.mod)
    args_info = ms.arg_info.ArgInfo.from_prim_func(task.mod["main"])
    for run_secs in [[FAILED_SECONDS]] + ([[PLANTED_SECONDS]] if measured_since else []):
        database.commit_tuning_record(ms.database.TuningRecord(untuned.trace, workload, run_secs, target, args_info))
    builder = ms.builder.LocalBuilder(max_workers=1, f_build=build_function)
    runner = ms.runner.LocalRunner(evaluator_config=ms.runner.EvaluatorConfig(number=1, repeat=1))

    assert confirm_dense([task], target, database, str(tmp_path), builder, runner, "cpu") == 1
    (record,) = open_database(str(tmp_path), allow_missing=False).get_all_tuning_records()
    assert _trace_hashes([record]) == [structural_hash(untuned.mod)]
    # the median of the rounds: neither the failed record nor the planted trial
    assert len(record.run_secs) == 1 and float(record.run_secs[0]) not in (FAILED_SECONDS, PLANTED_SECONDS)


def test_a_budget_beyond_the_space_measures_the_space_once_and_stops(block, tmp_path, monkeypatch):
    """The dense space is a few categorical knobs: a larger budget ends when each schedule is measured,
    with no search round after (VGG-16 once spent 10 minutes in rounds that found nothing new)."""
    rounds = []  # the schedules each round of MetaSchedule's evolutionary search proposed
    search_round = ms.search_strategy.EvolutionarySearch.generate_measure_candidates

    def counted_round(self):
        candidates = search_round(self)
        rounds.append({structural_hash(c.sch.mod) for c in candidates or []})
        return candidates

    monkeypatch.setattr(ms.search_strategy.EvolutionarySearch, "generate_measure_candidates", counted_round)
    model, example, mod, params = block
    target = tvm_sparse.parse_target("llvm")
    (task,), _ = extract_tasks(mod, params, target, rules=RULES)
    imported = TENSOR_INTRIN_MODULE in sys.modules
    size = space_size(dense_tune_context(task, target).space_generator.generate_design_space(task.mod))
    assert (TENSOR_INTRIN_MODULE in sys.modules) == imported  # skipped while the context is made, never left stubbed
    assert 2 <= size <= 32
    result = tune(mod, params, "llvm", log_dir=tmp_path, trials=size + 20, sparse_trials=0, rules=RULES,
                  num_trials_per_iter=16)
    assert result.dense_trials == size and len(set(_trace_hashes(_valid_records(tmp_path)))) == size
    proposed = [len(set().union(*rounds[:i + 1])) for i in range(len(rounds))]
    assert proposed and proposed[-1] == size and proposed.count(size) == 1  # the last round completed the space


@pytest.mark.parametrize("damage", ["missing", "corrupt", "partial", "bad-sparse"])
def test_a_bad_log_warns_and_compiles_untuned(block, tmp_path, caplog, damage):
    model, example, mod, params = block
    log_dir = tmp_path / "log"
    if damage != "missing":
        log_dir.mkdir()
    if damage == "corrupt":
        (log_dir / WORKLOAD_FILE).write_text('["not a workload"\n{{{')
        (log_dir / RECORD_FILE).write_text("garbage\n")
    elif damage == "partial":
        (log_dir / RECORD_FILE).write_text("")
    elif damage == "bad-sparse":
        (log_dir / SPARSE_FILE).write_text('{"records": [{"layer": "x", "config": {"lanes": "wide"}}]}')
    with caplog.at_level(logging.WARNING, logger="tvm_sparse.tuning"):
        compiled = tvm_sparse.compile(mod, params, "llvm", rules=RULES, tuning_logs=log_dir)
    assert relative_error(compiled.run(example), _expected(model, example)) <= 1e-5
    expected = {"missing": "no such folder", "corrupt": "unreadable MetaSchedule database",
                "partial": f"has no {WORKLOAD_FILE}", "bad-sparse": "not a readable sparse-kernel log"}[damage]
    assert expected in caplog.text
    assert "untuned" in caplog.text or "default knobs" in caplog.text


def test_tune_refuses_a_corrupt_log(block, tmp_path):
    _, _, mod, params = block
    (tmp_path / WORKLOAD_FILE).write_text("{{{")
    with pytest.raises(TuningLogError, match="unreadable MetaSchedule database"):
        tune(mod, params, "llvm", log_dir=tmp_path, trials=1, rules=RULES)


@pytest.mark.phone
def test_tune_on_the_emulated_phone_then_run_there(phone, block, tmp_path):
    from tvm_sparse.rpc import RemoteModel, request_device

    model, example, mod, params = block
    target = "llvm -mtriple=aarch64-linux-gnu -mattr=+neon"
    tracker = phone.tracker
    device = RPCDevice(f"{tracker[0]}:{tracker[1]}", phone.key, session_timeout=300)
    result = tune(mod, params, target, log_dir=tmp_path, trials=2, sparse_trials=1, rpc=device, rules=RULES,
                  num_trials_per_iter=2)
    assert (result.dense_trials, result.sparse_trials) == (2, 3)
    assert (result.dense_errors, result.sparse_errors) == (0, 0)
    compiled = tvm_sparse.compile(mod, params, target, rules=RULES, tuning_logs=tmp_path)
    session = request_device(phone.tracker, phone.key, session_timeout=600)
    assert relative_error(RemoteModel(compiled, session).run(example), _expected(model, example)) <= 1e-5


def _runtime_threads():
    return tvm.get_global_func("runtime.NumThreads")()


def test_the_local_runner_worker_runs_tvm_with_the_threads_asked_for():
    """MetaSchedule's ``LocalRunner`` starts its workers with this initializer (a ``PopenPoolExecutor``)."""
    from tvm.support.popen_pool import PopenPoolExecutor

    for count in (2, 1):  # unset, TVM takes one thread here
        pool = PopenPoolExecutor(max_workers=1, initializer=use_threads, initargs=(count,))
        assert pool.submit(_runtime_threads).result() == count


def test_tune_rejects_bad_thread_counts(block, tmp_path):
    _, _, mod, params = block
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        tune(mod, params, "llvm", log_dir=tmp_path, threads=0)
    device = RPCDevice("127.0.0.1:9190", "phone")
    with pytest.raises(ValueError, match="RPC server runs with its own TVM_NUM_THREADS"):
        tune(mod, params, "llvm", log_dir=tmp_path, threads=2, rpc=device)


def test_cli_rejects_a_tracker_without_key(capsys):
    from tvm_sparse.cli import main

    assert main(["tune", "resnet18", "--rpc-tracker", "127.0.0.1:9190"]) == 2
    assert "--rpc-key" in capsys.readouterr().err


def test_cli_rejects_threads_for_a_remote_device(capsys):
    from tvm_sparse.cli import main

    assert main(["tune", "resnet18", "--threads", "2", "--rpc-tracker", "127.0.0.1:9190", "--rpc-key", "k"]) == 2
    assert "--threads" in capsys.readouterr().err
