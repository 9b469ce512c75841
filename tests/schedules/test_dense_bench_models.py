"""``tvm-sparse bench models`` end to end on one model: workers per thread count, agreeing outputs."""

import pytest

from tvm_sparse.bench.models import AGREEMENT, RUNTIMES, run_benchmark


@pytest.mark.slow
def test_model_benchmark_runs_each_thread_count_and_outputs_agree():
    compile_seconds, timings = run_benchmark(["resnet18"], [1, 2], rounds=2, target="llvm")
    assert list(compile_seconds) == ["resnet18"]
    assert [(t.model, t.threads) for t in timings] == [("resnet18", 1), ("resnet18", 2)]
    for timing in timings:
        assert set(timing.median_ms) == set(RUNTIMES) and all(ms > 0 for ms in timing.median_ms.values())
        assert timing.max_rel_err <= AGREEMENT
