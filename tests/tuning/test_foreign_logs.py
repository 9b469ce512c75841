"""Tuning logs that do not belong to the compile (another target, another model, truncated, another
TVM's format) are left out with a warning that names why; the model still compiles and matches."""

import json
import logging

import pytest
import torch
from tvm.s_tir import meta_schedule as ms

import tvm_sparse
from relay_passes.sparse_rules import SparseRules
from schedules.dense.space import dense_schedule
from tests.conftest import relative_error
from tvm_sparse.tuning import RECORD_FILE, SPARSE_FILE, TuningLogError, extract_tasks, open_database, tune
from tvm_sparse.tuning.logs import records_for_target

RULES = SparseRules(min_macs=0)
PHONE = "llvm -mtriple=aarch64-linux-gnu -mattr=+neon"


def _plant(log_dir, mod, params, record_target):
    """A log whose one record is the untuned schedule of ``mod``'s dense function, filed under ``record_target``."""
    target = tvm_sparse.parse_target("llvm")
    (task,), _ = extract_tasks(mod, params, target, rules=RULES)
    database = open_database(str(log_dir))
    workload = database.commit_workload(task.mod)
    untuned = dense_schedule(task.mod["main"], target, False)
    args_info = ms.arg_info.ArgInfo.from_prim_func(task.mod["main"])
    database.commit_tuning_record(ms.database.TuningRecord(untuned.trace, workload, [2.0 ** -10],
                                                           tvm_sparse.parse_target(record_target), args_info))
    return database


def _compiles_and_warns(block, log_dir, caplog, message):
    model, example, mod, params = block
    with caplog.at_level(logging.WARNING):
        compiled = tvm_sparse.compile(mod, params, "llvm", rules=RULES, tuning_logs=log_dir)
    with torch.no_grad():
        assert relative_error(compiled(example), model(example).numpy()) <= 1e-5
    assert message in caplog.text


def test_records_of_another_target_are_left_out(block, tmp_path, caplog):
    _, _, mod, params = block
    database = _plant(tmp_path, mod, params, PHONE)
    kept, foreign = records_for_target(database, tvm_sparse.parse_target("llvm"))
    assert foreign == ["llvm-aarch64-linux-gnu"] and len(kept.get_all_tuning_records()) == 0
    same, none = records_for_target(database, tvm_sparse.parse_target(PHONE))
    assert none == [] and len(same.get_all_tuning_records()) == 1
    _compiles_and_warns(block, tmp_path, caplog, "records tuned for llvm-aarch64-linux-gnu are ignored")


def test_tune_refuses_a_folder_of_another_target(block, tmp_path):
    _, _, mod, params = block
    _plant(tmp_path, mod, params, PHONE)
    with pytest.raises(TuningLogError, match="holds records tuned for llvm-aarch64-linux-gnu"):
        tune(mod, params, "llvm", log_dir=tmp_path, trials=1, rules=RULES)


def test_sparse_knobs_of_another_target_are_left_out(block, tmp_path, caplog):
    (tmp_path / SPARSE_FILE).write_text(json.dumps({"format": 1, "target": "llvm-aarch64-linux-gnu", "records": []}))
    _compiles_and_warns(block, tmp_path, caplog, "was tuned for llvm-aarch64-linux-gnu")


def test_logs_of_another_model_say_so(block, tmp_path, caplog):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3)).eval()
    _plant(tmp_path, *tvm_sparse.from_torch(other, torch.randn(1, 3, 9, 9)), "llvm")
    _compiles_and_warns(block, tmp_path, caplog, "hold none of this model's dense functions")


@pytest.mark.parametrize("damage", ["truncated", "unknown instruction"])
def test_a_truncated_log_or_one_of_another_tvm_is_left_out(block, tmp_path, caplog, damage):
    _, _, mod, params = block
    _plant(tmp_path, mod, params, "llvm")
    path = tmp_path / RECORD_FILE
    text = path.read_text()
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    else:
        path.write_text(text.replace('"GetSBlock"', '"GetBlockOfAnotherVersion"'))
    _compiles_and_warns(block, tmp_path, caplog, "unreadable MetaSchedule database")
