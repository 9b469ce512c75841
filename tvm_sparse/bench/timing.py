"""Timing helpers for side-by-side benchmarks on a noisy machine.

Candidates are run in interleaved rounds (A, B, C, A, B, C, ...) so that a burst of load from
another process hits all of them alike; each candidate's median over the rounds is reported.

Each runtime keeps its own default threading, and each turn starts on an idle machine: with more
than one thread, a runtime's idle workers spin for a while after a call (measured here at 2
threads: TVM's pool about 120 ms of CPU, PyTorch's OpenMP about 10 ms, ONNX Runtime none), and
that spinning would take a core from whichever runtime comes next. So before each turn
:func:`wait_until_idle` waits until the cores the benchmark runs on are idle. That wait lets the
turn's own runtime's workers fall asleep too, and the other runtimes' turns evict its weights
from the caches; so each turn's first call is untimed (:data:`UNTIMED_CALLS_PER_TURN`), and the
turn times the steady state that a model serving requests runs in.
"""

import statistics
import time
from dataclasses import dataclass

from tvm_sparse.runtime_threads import core_groups, default_thread_count, use_threads

#: The kernel's CPU time counters (Linux): a line for all CPUs, then one per CPU.
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

#: Calls at the start of each turn that are not timed (they wake the runtime's thread pool and
#: bring its weights back into the caches).
UNTIMED_CALLS_PER_TURN = 1


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
            for _ in range(UNTIMED_CALLS_PER_TURN):
                fn()
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) * 1e3 / calls[name])
    return {
        name: Timing(statistics.median(values), min(values), max(values), len(values))
        for name, values in samples.items()
    }


def parse_cpu_times(text):
    """Per-CPU ``(busy, total)`` clock ticks from the text of ``/proc/stat``.

    Parameters
    ----------
    text : str
        The file's content: the ``cpu`` line (all CPUs) and one ``cpuN`` line per CPU, each
        ``user nice system idle iowait irq softirq steal ...`` in ticks since boot.

    Returns
    -------
    dict[int, tuple[int, int]]
        CPU id -> (busy ticks, all ticks); idle and iowait are not busy.
    """
    times = {}
    for line in text.splitlines():
        name, _, values = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        fields = [int(value) for value in values.split()]
        total = sum(fields)
        times[int(name[3:])] = (total - fields[3] - fields[4], total)
    return times


def cpu_times():
    """Per-CPU ``(busy, total)`` ticks so far (:func:`parse_cpu_times`), or None without ``/proc/stat``."""
    try:
        with open(PROC_STAT, encoding="ascii") as stat:
            return parse_cpu_times(stat.read())
    except OSError:
        return None


def idle_cores(before, after, cores, busy_fraction):
    """How many cores were idle between two :func:`cpu_times` readings.

    A core is idle when each of its CPUs (SMT siblings share the core's units) was busy less
    than ``busy_fraction`` of the ticks that passed on it.

    Parameters
    ----------
    before, after : dict[int, tuple[int, int]]
        Two readings of :func:`cpu_times`.
    cores : sequence of tuple[int, ...]
        The CPUs of each core (:func:`tvm_sparse.runtime_threads.core_groups`).
    busy_fraction : float

    Returns
    -------
    int
    """
    def idle(cpu):
        busy = after[cpu][0] - before[cpu][0]
        total = after[cpu][1] - before[cpu][1]
        return total > 0 and busy < busy_fraction * total

    return sum(all(cpu in before and cpu in after and idle(cpu) for cpu in core) for core in cores)


def wait_until_idle(threads=None, window_s=0.02, busy_fraction=0.1, timeout_s=0.5):
    """Wait until as many cores as the benchmark runs threads were idle for one ``window_s``.

    Idle enough to benchmark means that each of the benchmark's threads finds a core of its own
    that nothing else uses (:func:`idle_cores`), whatever the number of cores: on a many-core
    machine a process spinning on one core leaves the others free, while on a 2-core machine it
    takes the core that a 2-thread benchmark needs.

    Parameters
    ----------
    threads : int, optional
        Threads the benchmark runs (default: TVM's, :func:`tvm_sparse.runtime_threads.default_thread_count`);
        more than the usable cores means all of them.
    window_s : float
        Length of one observation.
    busy_fraction : float
        Largest busy share of a CPU that still counts as idle.
    timeout_s : float
        Give up after this long (a machine busy with other work never gets idle).

    Returns
    -------
    bool
        True when enough cores were idle; False after ``timeout_s`` (always so without
        ``/proc/stat``, i.e. not on Linux).
    """
    cores = core_groups()
    needed = min(threads or default_thread_count(), len(cores))
    deadline = time.perf_counter() + timeout_s
    before = cpu_times()
    while time.perf_counter() < deadline:
        time.sleep(window_s)
        after = cpu_times()
        if before is not None and after is not None and idle_cores(before, after, cores, busy_fraction) >= needed:
            return True
        before = after
    return False


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
