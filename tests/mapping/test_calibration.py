"""The line from a sum of latency-table entries to a whole model's latency."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tvm_sparse
from tvm_sparse.mapping.calibration import MIN_SPREAD, ModelCalibration
from tvm_sparse.mapping.latency import TABLE_FORMAT, LatencyTable

times = st.floats(0.01, 100.0)


@given(times, times, times, times)
def test_the_line_passes_through_both_models_or_keeps_the_ranking(dense_ms, dense_sum, reference_ms, reference_sum):
    line = ModelCalibration.fit(dense_ms, dense_sum, reference_ms, reference_sum)
    assert line.scale > 0
    assert line.entries_budget_ms(line.predict_ms(3.0)) == pytest.approx(3.0)
    spread = abs(dense_sum - reference_sum) > MIN_SPREAD * max(dense_sum, reference_sum)
    if spread and (dense_ms - reference_ms) / (dense_sum - reference_sum) > 0:
        assert line.predict_ms(dense_sum) == pytest.approx(dense_ms, rel=1e-6, abs=1e-9)
        assert line.predict_ms(reference_sum) == pytest.approx(reference_ms, rel=1e-6, abs=1e-9)
    else:  # no usable slope: the entries count as they are, shifted by the mean miss
        assert line.scale == 1.0
        assert line.offset_ms == pytest.approx(((dense_ms - dense_sum) + (reference_ms - reference_sum)) / 2)


def test_a_pruned_model_cheaper_in_place_than_its_entries_is_predicted_on_the_line():
    # dense: entries 10 ms, model 11 ms; pruned reference: entries 2 ms, model 1.7 ms
    line = ModelCalibration.fit(11.0, 10.0, 1.7, 2.0)
    assert line.predict_ms(2.0) == pytest.approx(1.7)
    assert line.predict_ms(6.0) == pytest.approx((11.0 + 1.7) / 2)


def test_a_table_of_the_older_format_keeps_its_entries_and_is_calibrated_again(tmp_path):
    target = tvm_sparse.parse_target("llvm")
    table = LatencyTable.open(tmp_path, target)
    table.entries = {"row": {"dense": 1.5}}
    table.calibration = ModelCalibration.fit(11.0, 10.0, 1.7, 2.0)
    table.save()
    assert LatencyTable.open(tmp_path, target).calibration == table.calibration
    saved = json.loads((tmp_path / "latency_table.json").read_text())
    saved.update({"format": TABLE_FORMAT - 1, "remainder_ms": 3.3})
    (tmp_path / "latency_table.json").write_text(json.dumps(saved))
    older = LatencyTable.open(tmp_path, target)
    assert older.entries == {"row": {"dense": 1.5}} and older.calibration is None
