"""DeepSparse, timed from the project's process although it lives in its own virtual environment.

DeepSparse 1.8.0 pins numpy < 2 and an old onnx, so ``scripts/install-deepsparse.sh`` installs it
in a separate environment. :class:`DeepSparseEngine` starts this file there as a small server
(standard library + numpy + deepsparse only: it must not import tvm_sparse) and drives it over
its standard input and output, one line per request. Each call of the engine runs one inference
in the server and waits for it, so DeepSparse takes its turn in the interleaved rounds of
:func:`tvm_sparse.bench.timing.interleaved_medians` like the runtimes of the calling process;
the pipe adds some tens of microseconds to each call (under 1% of a ResNet-18 inference).

Requests: ``run`` (one inference on the loaded input), ``save PATH`` (write the output with
``numpy.save``), ``quit``. The server answers ``ok`` or ``error: MESSAGE``.
"""

import os
import subprocess
import sys

#: Where ``scripts/install-deepsparse.sh`` puts DeepSparse's environment.
DEFAULT_VENV = os.path.join(os.path.expanduser("~"), ".cache", "tvm_sparse", "deepsparse-venv")


def deepsparse_python():
    """The Python of DeepSparse's environment (``$TVM_SPARSE_DEEPSPARSE_VENV``), or None if absent."""
    venv = os.environ.get("TVM_SPARSE_DEEPSPARSE_VENV", DEFAULT_VENV)
    python = os.path.join(venv, "bin", "python")
    return python if os.access(python, os.X_OK) else None


class DeepSparseEngine:
    """A DeepSparse engine for one ONNX model and one input, running in DeepSparse's environment.

    Parameters
    ----------
    onnx_path : str
        The model (one input, one output, batch 1).
    input_path : str
        The input, a ``.npy`` file.
    threads : int
        DeepSparse's ``num_cores``.
    python : str, optional
        The Python with DeepSparse installed (default: :func:`deepsparse_python`).

    Raises
    ------
    RuntimeError
        If DeepSparse is not installed (naming the script that installs it) or the engine fails
        to compile the model.
    """

    def __init__(self, onnx_path, input_path, threads, python=None):
        python = python or deepsparse_python()
        if python is None:
            raise RuntimeError("DeepSparse is not installed: run `bash scripts/install-deepsparse.sh` "
                               "(or point TVM_SPARSE_DEEPSPARSE_VENV at its environment)")
        self._server = subprocess.Popen(
            [python, os.path.abspath(__file__), onnx_path, input_path, str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._request(None)  # the server says ok once its engine is compiled

    def _request(self, line):
        if line is not None:
            self._server.stdin.write(line + "\n")
            self._server.stdin.flush()
        answer = self._server.stdout.readline().strip()
        if answer != "ok":
            self.close()
            raise RuntimeError(f"DeepSparse server: {answer or 'exited'}")

    def __call__(self):
        """Run one inference and wait for it."""
        self._request("run")

    def save_output(self, path):
        """Write the output of the last inference to ``path`` (``.npy``)."""
        self._request(f"save {path}")

    def close(self):
        """Stop the server."""
        if self._server.poll() is None:
            try:
                self._server.stdin.write("quit\n")
                self._server.stdin.flush()
            except BrokenPipeError:
                pass
            self._server.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()


def serve(onnx_path, input_path, threads):
    """The server loop (runs in DeepSparse's environment)."""
    import numpy as np
    from deepsparse import compile_model

    try:
        engine = compile_model(onnx_path, batch_size=1, num_cores=threads)
        inputs = [np.ascontiguousarray(np.load(input_path))]
        outputs = engine.run(inputs)
    except Exception as error:  # pylint: disable=broad-except
        print(f"error: {type(error).__name__}: {error}", flush=True)
        return
    print("ok", flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "run":
            outputs = engine.run(inputs)
        elif command == "save":
            np.save(argument, outputs[0])
        elif command == "quit":
            return
        else:
            print(f"error: unknown request {command!r}", flush=True)
            continue
        print("ok", flush=True)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
