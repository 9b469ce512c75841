"""The benchmarks' timing helpers: interleaved rounds, and each turn starting on idle cores.

Nothing here reads the wall clock: a fake clock stands in for ``time`` and simulated ``/proc/stat``
readings for the machine, so the tests assert the same on 2 cores as on 16.
"""

import pytest

from tvm_sparse.bench import timing
from tvm_sparse.bench.timing import (CALIBRATION_CALLS, UNTIMED_CALLS_PER_TURN, idle_cores, interleaved_medians,
                                     parse_cpu_times, wait_until_idle)

#: A tick is 10 ms (USER_HZ = 100); one window of ``wait_until_idle`` is 2 ticks per CPU.
TICKS_PER_WINDOW = 2

#: A 16-CPU host: 8 cores with two SMT siblings each (CPU n and n + 8 share a core).
SIXTEEN_CPUS = [(core, core + 8) for core in range(8)]


class FakeClock:
    """``time.perf_counter`` and ``time.sleep`` of a clock that moves only when slept on."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class SimulatedMachine:
    """``cpu_times`` of a machine whose CPUs ``busy`` spin for the first ``busy_windows`` readings."""

    def __init__(self, cores, busy, busy_windows):
        self.cpus = [cpu for core in cores for cpu in core]
        self.busy = set(busy)
        self.busy_windows = busy_windows
        self.readings = 0
        self.ticks = {cpu: (0, 0) for cpu in self.cpus}

    def cpu_times(self):
        if self.readings > 0:  # a window passed since the last reading
            spinning = self.busy if self.readings <= self.busy_windows else set()
            self.ticks = {cpu: (busy + (TICKS_PER_WINDOW if cpu in spinning else 0), total + TICKS_PER_WINDOW)
                          for cpu, (busy, total) in self.ticks.items()}
        self.readings += 1
        return dict(self.ticks)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", fake)
    return fake


def _machine(monkeypatch, cores, busy=(), busy_windows=0):
    machine = SimulatedMachine(cores, busy, busy_windows)
    monkeypatch.setattr(timing, "core_groups", lambda: cores)
    monkeypatch.setattr(timing, "cpu_times", machine.cpu_times)
    return machine


def test_parses_the_per_cpu_lines_of_proc_stat():
    text = ("cpu  300 0 60 700 40 0 0 0 0 0\n"
            "cpu0 100 0 20 400 30 0 0 0 0 0\n"
            "cpu1 200 0 40 300 10 0 0 0 0 0\n"
            "intr 1234 0 0\nctxt 99\n")
    # busy = all ticks but idle (4th) and iowait (5th)
    assert parse_cpu_times(text) == {0: (120, 550), 1: (240, 550)}


def test_one_spinning_cpu_of_sixteen_makes_its_core_busy():
    """Summed over 16 CPUs one spinner is 1/16 of the ticks, below 10%; per core it is not idle."""
    before = {cpu: (0, 0) for core in SIXTEEN_CPUS for cpu in core}
    after = {cpu: (TICKS_PER_WINDOW if cpu == 3 else 0, TICKS_PER_WINDOW) for cpu in before}
    assert sum(b for b, _ in after.values()) < 0.1 * sum(t for _, t in after.values())
    assert idle_cores(before, after, SIXTEEN_CPUS, busy_fraction=0.1) == 7
    # a busy SMT sibling takes its core too
    after[11] = (TICKS_PER_WINDOW, TICKS_PER_WINDOW)
    assert idle_cores(before, after, SIXTEEN_CPUS, busy_fraction=0.1) == 7


def test_waits_on_a_sixteen_cpu_host_until_every_core_the_benchmark_uses_is_idle(monkeypatch, clock):
    machine = _machine(monkeypatch, SIXTEEN_CPUS, busy=[3], busy_windows=4)
    assert wait_until_idle(threads=8, timeout_s=5.0) is True
    assert machine.readings == 1 + 4 + 1  # the first reading, 4 busy windows, the idle one


def test_returns_at_once_when_the_benchmark_finds_enough_idle_cores(monkeypatch, clock):
    machine = _machine(monkeypatch, SIXTEEN_CPUS, busy=[3], busy_windows=100)
    assert wait_until_idle(threads=2, timeout_s=5.0) is True
    assert machine.readings == 2


def test_a_two_core_host_waits_out_one_spinning_cpu(monkeypatch, clock):
    machine = _machine(monkeypatch, [(0,), (1,)], busy=[1], busy_windows=3)
    assert wait_until_idle(threads=2, timeout_s=5.0) is True
    assert machine.readings == 1 + 3 + 1


def test_the_default_thread_count_is_tvms(monkeypatch, clock):
    machine = _machine(monkeypatch, SIXTEEN_CPUS, busy=[3], busy_windows=2)
    monkeypatch.setenv("TVM_NUM_THREADS", "8")
    assert wait_until_idle(timeout_s=5.0) is True
    assert machine.readings == 1 + 2 + 1


def test_more_threads_than_cores_wait_for_all_cores(monkeypatch, clock):
    machine = _machine(monkeypatch, [(0,), (1,)], busy=[0], busy_windows=2)
    assert wait_until_idle(threads=16, timeout_s=5.0) is True
    assert machine.readings == 1 + 2 + 1


def test_gives_up_after_the_timeout(monkeypatch, clock):
    machine = _machine(monkeypatch, SIXTEEN_CPUS, busy=[cpu for core in SIXTEEN_CPUS for cpu in core],
                       busy_windows=10_000)
    assert wait_until_idle(threads=1, window_s=0.02, timeout_s=0.3) is False
    assert clock.now == pytest.approx(0.3, abs=0.02)
    assert machine.readings == 1 + round(0.3 / 0.02)


def test_without_proc_stat_waits_the_timeout(monkeypatch, clock):
    monkeypatch.setattr(timing, "PROC_STAT", "/nonexistent/stat")
    assert wait_until_idle(threads=1, timeout_s=0.3) is False
    assert clock.now == pytest.approx(0.3, abs=0.02)


@pytest.fixture
def idle_machine(monkeypatch):
    """Every turn of ``interleaved_medians`` starts at once (the idle wait reads one window)."""
    return _machine(monkeypatch, [(0,), (1,)])


def test_interleaved_medians_times_every_candidate_every_round(idle_machine, clock):
    calls = {"fast": 0, "slow": 0}

    def candidate(name, seconds):
        def run():
            calls[name] += 1
            clock.sleep(seconds)
        return run

    timings = interleaved_medians({"fast": candidate("fast", 0.001), "slow": candidate("slow", 0.004)},
                                  rounds=3, calls_per_round=2, warmup=1)
    assert {name: t.rounds for name, t in timings.items()} == {"fast": 3, "slow": 3}
    per_candidate = 1 + CALIBRATION_CALLS + 3 * (UNTIMED_CALLS_PER_TURN + 2)
    assert calls == {"fast": per_candidate, "slow": per_candidate}
    assert timings["fast"].median_ms == pytest.approx(1.0) and timings["slow"].median_ms == pytest.approx(4.0)


def test_each_candidate_starts_some_rounds(idle_machine, clock):
    """The first run after the machine was idle can be slow: no candidate may take that every round."""
    order = []
    names = ["a", "b", "c"]
    interleaved_medians({name: (lambda name=name: order.append(name)) for name in names},
                        rounds=6, calls_per_round=1, warmup=0)
    turns = order[len(names) * CALIBRATION_CALLS:]
    per_turn = UNTIMED_CALLS_PER_TURN + 1
    rounds = [turns[i:i + per_turn * len(names):per_turn] for i in range(0, len(turns), per_turn * len(names))]
    assert all(sorted(r) == names for r in rounds)
    assert [r[0] for r in rounds] == ["a", "b", "c", "a", "b", "c"]


def test_one_slow_call_does_not_set_the_calls_per_round(idle_machine, clock):
    """A candidate whose first timed call is slow (its thread pool waking up) still gets a full round."""
    calls = {"n": 0}

    def wakes_up_slowly():
        calls["n"] += 1
        clock.sleep(0.04 if calls["n"] == 1 else 0.001)

    interleaved_medians({"slow start": wakes_up_slowly}, rounds=1, warmup=0, min_round_s=0.04)
    # the calibration calls, then one round of 0.04 s / 1 ms calls (not 0.04 s / 0.04 s = 1)
    assert calls["n"] - CALIBRATION_CALLS >= 10


def test_the_first_call_of_each_turn_is_not_timed(idle_machine, clock, monkeypatch):
    """A turn starts after the cores went idle, its thread pool asleep: that slow call is not timed."""
    calls_this_turn = {"n": 0}
    wait = timing.wait_until_idle

    def wait_for_the_next_turn(*args, **kwargs):
        calls_this_turn["n"] = 0
        return wait(*args, **kwargs)

    def slow_after_idle():
        calls_this_turn["n"] += 1
        clock.sleep(0.05 if calls_this_turn["n"] == 1 else 0.001)

    monkeypatch.setattr(timing, "wait_until_idle", wait_for_the_next_turn)
    timings = interleaved_medians({"pool": slow_after_idle}, rounds=3, calls_per_round=3, warmup=0)
    assert timings["pool"].max_ms == pytest.approx(1.0)
