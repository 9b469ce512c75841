"""TVM's thread pool gets the physical cores unless the user chose its size."""

import os
import subprocess
import sys

import pytest

from tvm_sparse.runtime_threads import THREAD_VARIABLES, default_thread_count, physical_cores

PROBE = "import tvm_sparse, tvm; print(tvm.get_global_func('runtime.NumThreads')())"


def _threads_in_fresh_process(**variables):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(variables)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_physical_cores_counts_usable_cpus_once():
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.skipif(physical_cores() < 2, reason="TVM's own default and ours agree on one core")
def test_importing_tvm_sparse_gives_tvm_every_physical_core():
    # TVM alone takes half the hardware threads on x86: one on this 2-core machine
    assert _threads_in_fresh_process() == physical_cores()


@pytest.mark.parametrize("variable", THREAD_VARIABLES)
def test_a_thread_count_the_user_set_is_kept(variable):
    assert _threads_in_fresh_process(**{variable: "1"}) == 1


def test_default_thread_count_reads_the_variables(monkeypatch):
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert default_thread_count() == physical_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_thread_count() == 3
    monkeypatch.setenv("TVM_NUM_THREADS", "5")
    assert default_thread_count() == 5
