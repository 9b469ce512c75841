"""``tvm-sparse bench models`` end to end on one model: workers per thread count, agreeing outputs."""

from pathlib import Path

import pytest

from tvm_sparse.bench.models import AGREEMENT, RUNTIMES, run_benchmark, tuning_logs_of

TUNING_ROOT = Path(__file__).resolve().parents[3] / "tuning_logs"


@pytest.mark.slow
def test_model_benchmark_runs_each_thread_count_and_outputs_agree():
    """With the committed logs (where they match this CPU) the tuned model is timed and checked too."""
    compile_seconds, timings = run_benchmark(["resnet18"], [1, 2], rounds=2, target="llvm", tuning_root=TUNING_ROOT)
    assert list(compile_seconds) == ["resnet18"]
    assert [(t.model, t.threads) for t in timings] == [("resnet18", 1), ("resnet18", 2)]
    expected = set(RUNTIMES) - (set() if tuning_logs_of("resnet18", "llvm", TUNING_ROOT) else {"tvm_sparse tuned"})
    for timing in timings:
        assert set(timing.median_ms) == expected and all(ms > 0 for ms in timing.median_ms.values())
        assert timing.max_rel_err <= AGREEMENT
