"""The benchmarks' timing helpers: each runtime's turn starts on an idle machine."""

import subprocess
import sys
import time

from tvm_sparse.bench.timing import CALIBRATION_CALLS, interleaved_medians, wait_until_idle

SPIN = "import time\nend = time.perf_counter() + {seconds}\nwhile time.perf_counter() < end:\n    pass\n"


def _spinner(seconds):
    """A process that keeps one CPU busy for ``seconds`` (after its start-up)."""
    spinner = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)])
    time.sleep(0.1)
    return spinner


def _waited(**kwargs):
    start = time.perf_counter()
    wait_until_idle(**kwargs)
    return time.perf_counter() - start


def test_waits_out_a_spinning_process():
    spinner = _spinner(0.5)
    waited = _waited(timeout_s=5.0)
    spinner.wait()
    assert waited > 0.3


def test_gives_up_after_the_timeout():
    spinner = _spinner(5.0)
    try:
        waited = _waited(timeout_s=0.3)
    finally:
        spinner.kill()
    assert 0.3 <= waited < 2.0


def test_interleaved_medians_times_every_candidate_every_round():
    calls = {"fast": 0, "slow": 0}

    def candidate(name, seconds):
        def run():
            calls[name] += 1
            time.sleep(seconds)
        return run

    timings = interleaved_medians({"fast": candidate("fast", 0.001), "slow": candidate("slow", 0.004)},
                                  rounds=3, calls_per_round=2, warmup=1)
    assert {name: t.rounds for name, t in timings.items()} == {"fast": 3, "slow": 3}
    assert calls == {"fast": 1 + CALIBRATION_CALLS + 3 * 2, "slow": 1 + CALIBRATION_CALLS + 3 * 2}
    assert timings["fast"].median_ms < timings["slow"].median_ms


def test_each_candidate_starts_some_rounds():
    """The first run after the machine was idle can be slow: no candidate may take that every round."""
    order = []
    names = ["a", "b", "c"]
    interleaved_medians({name: (lambda name=name: order.append(name)) for name in names},
                        rounds=6, calls_per_round=1, warmup=0)
    timed = order[len(names) * CALIBRATION_CALLS:]
    rounds = [timed[i:i + len(names)] for i in range(0, len(timed), len(names))]
    assert all(sorted(r) == names for r in rounds)
    assert [r[0] for r in rounds] == ["a", "b", "c", "a", "b", "c"]


def test_one_slow_call_does_not_set_the_calls_per_round():
    """A candidate whose first timed call is slow (its thread pool waking up) still gets a full round."""
    calls = {"n": 0}

    def wakes_up_slowly():
        calls["n"] += 1
        time.sleep(0.04 if calls["n"] == 1 else 0.001)

    interleaved_medians({"slow start": wakes_up_slowly}, rounds=1, warmup=0, min_round_s=0.04)
    # the calibration calls, then one round of about 0.04 s / 1 ms calls (not 0.04 s / 0.04 s = 1)
    assert calls["n"] - CALIBRATION_CALLS >= 10
