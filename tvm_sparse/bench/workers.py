"""One worker process per thread count, for benchmarks that compare thread counts.

TVM's thread pool is sized once per process (see :func:`tvm_sparse.bench.timing.configure_threads`),
so a benchmark prepares its artifacts once in a work directory, then runs a worker module
(``python -m <module> --workdir DIR --threads N --rounds R NAME...``) per thread count; the
worker prints its results as one JSON line (a list of rows). Every runtime in a worker keeps its
default threading (see :mod:`tvm_sparse.bench.timing` for how their turns are kept apart).
"""

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict


def run_workers(module, workdir, thread_counts, rounds, names):
    """Run ``module`` as a worker once per thread count and return all rows, in order.

    Raises
    ------
    RuntimeError
        If a worker fails; the message carries the end of its standard error.
    """
    rows = []
    for threads in thread_counts:
        command = [sys.executable, "-m", module, "--workdir", workdir, "--threads", str(threads),
                   "--rounds", str(rounds), *names]
        env = dict(os.environ, TVM_NUM_THREADS=str(threads))
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"benchmark worker {module} ({threads} threads) failed:\n{done.stderr[-4000:]}")
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def worker_main(measure, description, choices=None, argv=None, name_type=str):
    """The body of a worker's ``__main__``: parse the arguments, call
    ``measure(names, threads, rounds, workdir)`` and print its dataclass results as one JSON line.

    ``name_type`` turns each name into what ``measure`` takes (argparse's ``type``; a ValueError
    it raises is a usage error).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("names", nargs="+", choices=choices, type=name_type)
    args = parser.parse_args(argv)
    results = measure(args.names, args.threads, args.rounds, args.workdir)
    print(json.dumps([asdict(r) for r in results]))


def onnxruntime_session(path, threads):
    """An ONNX Runtime CPU session of the model at ``path`` using ``threads`` intra-op threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
