"""Timing helpers for side-by-side benchmarks on a noisy machine.

Candidates are run in interleaved rounds (A, B, C, A, B, C, ...) so that a burst of load from
another process hits all of them alike; each candidate's median over the rounds is reported.

Each runtime keeps its own default threading, and each turn starts on an idle machine: with more
than one thread, a runtime's idle workers spin for a while after a call (measured here at 2
threads: TVM's pool about 120 ms of CPU, PyTorch's OpenMP about 10 ms, ONNX Runtime none), and
that spinning would take a core from whichever runtime comes next. So before each turn
:func:`wait_until_idle` waits until the CPUs are idle.
"""

import statistics
import time
from dataclasses import dataclass

from tvm_sparse.runtime_threads import use_threads

#: The kernel's CPU time counters (Linux): the first line sums all CPUs.
PROC_STAT = "/proc/stat"


@dataclass(frozen=True)
class Timing:
    """Median and spread of one candidate's per-call latency, in milliseconds."""

    median_ms: float
    min_ms: float
    max_ms: float
    rounds: int


#: Timed calls whose median sets a candidate's calls per round.
CALIBRATION_CALLS = 5


def interleaved_medians(candidates, rounds=15, calls_per_round=None, warmup=2, min_round_s=0.05):
    """Time several callables in interleaved rounds (each round starting with the next one) and return each one's median latency.

    Parameters
    ----------
    candidates : dict[str, callable]
        Name -> zero-argument callable that runs one inference (and waits for its result).
    rounds : int
        Number of interleaved rounds; the median is taken over them.
    calls_per_round : int or None
        Calls per candidate per round; by default chosen per candidate so that one round
        lasts at least ``min_round_s`` seconds.
    warmup : int
        Untimed calls per candidate before the first round.
    min_round_s : float
        Target duration of one round when ``calls_per_round`` is None.

    Returns
    -------
    dict[str, Timing]
        Per candidate, the per-call latency statistics over the rounds.
    """
    calls = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            fn()
        # The median of a few calls: one slow call (a thread pool waking up) would give the
        # candidate few calls per round, and every round's slow start would weigh more in them
        # (untuned MobileNetV2, the first candidate, showed 0.66-0.77 ms at 2 threads against
        # 0.53-0.57 when timed in one process with the others).
        once = []
        for _ in range(CALIBRATION_CALLS):
            start = time.perf_counter()
            fn()
            once.append(time.perf_counter() - start)
        calls[name] = calls_per_round or max(1, int(min_round_s / max(statistics.median(once), 1e-6)))
    samples = {name: [] for name in candidates}
    names = list(candidates)
    for round_index in range(rounds):
        # Each round starts with the next candidate, so that no candidate is always the one
        # that follows a given other (whose threads may still be winding down).
        start_at = round_index % len(names)
        for name in names[start_at:] + names[:start_at]:
            fn = candidates[name]
            wait_until_idle()
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) * 1e3 / calls[name])
    return {
        name: Timing(statistics.median(values), min(values), max(values), len(values))
        for name, values in samples.items()
    }


def _cpu_times():
    """(busy, total) CPU time of the whole machine so far, in clock ticks, or None without ``/proc/stat``."""
    try:
        with open(PROC_STAT, encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_until_idle(window_s=0.02, busy_fraction=0.1, timeout_s=0.5):
    """Wait until the machine's CPUs were busy less than ``busy_fraction`` of one ``window_s``.

    Gives up after ``timeout_s`` (a machine busy with other work never gets idle); without
    ``/proc/stat`` (not Linux) it waits ``timeout_s``.
    """
    deadline = time.perf_counter() + timeout_s
    before = _cpu_times()
    while time.perf_counter() < deadline:
        time.sleep(window_s)
        after = _cpu_times()
        if before is not None and after[1] > before[1] and \
                (after[0] - before[0]) < busy_fraction * (after[1] - before[1]):
            return
        before = after


def configure_threads(count):
    """Use ``count`` threads in PyTorch and in TVM's runtime for the rest of this process.

    TVM's thread pool reads ``TVM_NUM_THREADS`` once, when its first parallel kernel runs, and
    ``runtime.config_threadpool`` does not resize it afterwards in TVM 0.27. So a benchmark that
    compares thread counts runs each count in its own process and calls this first.

    Parameters
    ----------
    count : int
        Number of worker threads.

    Raises
    ------
    RuntimeError
        If TVM's pool was already configured in this process with another count.
    """
    global _configured_threads  # pylint: disable=global-statement
    if _configured_threads is not None and _configured_threads != count:
        raise RuntimeError(
            f"TVM's thread pool already runs with TVM_NUM_THREADS={_configured_threads}; "
            f"start a new process to use {count} threads"
        )
    import torch

    use_threads(count)
    torch.set_num_threads(count)
    _configured_threads = count


# The thread count this process was configured with (None: not yet).
_configured_threads = None
