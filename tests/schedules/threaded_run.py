"""Run a compiled kernel with 1, 2 and 3 TVM threads in a fresh process.

TVM's thread pool takes its size from ``TVM_NUM_THREADS`` when its first parallel kernel runs, so
a test process that already ran kernels cannot grow it; this module runs in its own process:
``TVM_NUM_THREADS=3 python -m tests.schedules.threaded_run LIB ARGS.npz OUT.npz``. ``ARGS.npz``
holds the kernel's arguments in order (``arg0``, ``arg1``, ..., the output buffer last) and the
function name (``name``); ``OUT.npz`` gets the output of each thread count (``threads1`` ...), each
run right after a run on the negated first argument (the input).
"""

import sys

import numpy as np

import tvm
import tvm_ffi

THREAD_COUNTS = (1, 2, 3)


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
