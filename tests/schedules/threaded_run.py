"""Run a compiled kernel with 1, 2 and 3 TVM threads in a fresh process.

TVM's thread pool takes its size from ``TVM_NUM_THREADS`` when its first parallel kernel runs, so
a test process that already ran kernels cannot grow it; this module runs in its own process:
``TVM_NUM_THREADS=3 python -m tests.schedules.threaded_run LIB ARGS.npz OUT.npz``. ``ARGS.npz``
holds the kernel's arguments in order (``arg0``, ``arg1``, ..., the output buffer last) and the
function name (``name``); ``OUT.npz`` gets the output of each thread count (``threads1`` ...), each
run right after a run on the negated first argument (the input). Tests call
:func:`outputs_at_thread_counts`, which builds a PrimFunc and runs this module on it.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import tvm
import tvm_ffi

from tests.conftest import skip_unless_this_cpu_runs

THREAD_COUNTS = (1, 2, 3)


def outputs_at_thread_counts(func, target, arrays, folder):
    """Build the PrimFunc ``func`` and run it at each of :data:`THREAD_COUNTS` in a fresh process.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
    target : tvm.target.Target
    arrays : list of numpy.ndarray
        The function's arguments in order, the output buffer last (its shape and dtype are used).
    folder : pathlib.Path
        Where the library and the arrays are written (a test's ``tmp_path``).

    Returns
    -------
    dict[int, numpy.ndarray]
        The output at each thread count.
    """
    skip_unless_this_cpu_runs(target)
    library = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    library.export_library(folder / "kernel.so")
    np.savez(folder / "args.npz", name="main", **{f"arg{i}": a for i, a in enumerate(arrays)})
    subprocess.run([sys.executable, "-m", "tests.schedules.threaded_run", folder / "kernel.so", folder / "args.npz",
                    folder / "out.npz"],
                   check=True, cwd=Path(__file__).resolve().parents[2],
                   env=dict(os.environ, TVM_NUM_THREADS=str(max(THREAD_COUNTS))))
    outputs = np.load(folder / "out.npz")
    return {threads: outputs[f"threads{threads}"] for threads in THREAD_COUNTS}


def main(library, arguments, outputs):
    module = tvm.runtime.load_module(library)
    stored = np.load(arguments)
    function = module[str(stored["name"])]
    arrays = [stored[f"arg{i}"] for i in range(len(stored.files) - 1)]
    results = {}
    for threads in THREAD_COUNTS:
        tvm_ffi.get_global_func("runtime.config_threadpool")(1, threads)
        if tvm_ffi.get_global_func("runtime.NumThreads")() != threads:
            raise RuntimeError(f"TVM's thread pool did not take {threads} threads (set TVM_NUM_THREADS)")
        # A run on the negated input first: a kernel that reads a buffer of its own (padding, an
        # input copy) before all threads filled it would find this run's values there.
        negated = [tvm.runtime.tensor(-arrays[0])] + [tvm.runtime.tensor(a) for a in arrays[1:-1]]
        function(*negated, tvm.runtime.tensor(np.empty_like(arrays[-1])))
        args = [tvm.runtime.tensor(a) for a in arrays[:-1]]
        out = tvm.runtime.tensor(np.full_like(arrays[-1], np.nan))
        function(*args, out)
        results[f"threads{threads}"] = out.numpy()
    np.savez(outputs, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
