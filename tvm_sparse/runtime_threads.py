"""How many threads TVM's runtime runs compiled models with when the user does not say.

Left alone, TVM 0.27 on x86 takes half the hardware threads, assuming every core runs two
(``threading::MaxConcurrency``). On a machine without SMT that is half the cores: one thread on
this 2-core machine, and each parallel kernel then also cost about 6 µs more than with
``TVM_NUM_THREADS=1`` set (a 1 µs copy: 7.1 µs unset, 1.4 µs with 1 set). A compiled model ran
2.5x slower than it could: MobileNetV2-CIFAR 1.45 ms unset, 0.95 ms with 1 thread, 0.575 ms with
2; pruned ResNet-18 1.65, 1.48 and 0.85 ms. PyTorch and ONNX Runtime use every physical core by
default, and so does tvm_sparse: importing it sets ``TVM_NUM_THREADS`` to the physical cores this
process may run on, unless ``TVM_NUM_THREADS`` or ``OMP_NUM_THREADS`` (which TVM also reads) is set.
TVM reads the variable when it runs its first parallel kernel, so the import comes first.
"""

import logging
import os

logger = logging.getLogger(__name__)

#: Variables TVM sizes its thread pool from, in the order it reads them.
THREAD_VARIABLES = ("TVM_NUM_THREADS", "OMP_NUM_THREADS")


def core_groups():
    """The CPUs this process may run on, grouped by physical core (SMT siblings in one group).

    Linux ``/sys/devices/system/cpu/cpuN/topology/thread_siblings_list`` groups the siblings; where
    it cannot be read, every usable CPU is a core of its own.

    Returns
    -------
    list[tuple[int, ...]]
        One tuple of CPU ids per core, in order of their first CPU.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = {}
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list", encoding="ascii") as handle:
                siblings = handle.read().strip()
        except OSError:
            siblings = str(cpu)
        cores.setdefault(siblings, []).append(cpu)
    return [tuple(group) for group in cores.values()]


def physical_cores():
    """Physical cores among the CPUs this process may run on (SMT siblings counted once)."""
    return max(1, len(core_groups()))


def default_thread_count():
    """The threads TVM's runtime runs with in this process: the variables' value, else :func:`physical_cores`."""
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    return physical_cores()


def use_threads(count):
    """Size TVM's thread pool in this process to ``count`` threads (effective before its first parallel kernel)."""
    os.environ["TVM_NUM_THREADS"] = str(count)


def use_physical_cores_by_default():
    """Set ``TVM_NUM_THREADS`` to :func:`physical_cores` unless a variable of :data:`THREAD_VARIABLES` is set."""
    if any(name in os.environ for name in THREAD_VARIABLES):
        return
    use_threads(physical_cores())
    logger.debug("TVM_NUM_THREADS unset: TVM's runtime will use %s threads", os.environ["TVM_NUM_THREADS"])
