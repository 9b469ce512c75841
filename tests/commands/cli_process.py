"""Running ``tvm-sparse`` as a user does: a subprocess whose output goes to a pipe."""

import os
import subprocess
import sys


def run_cli(*arguments, timeout=600):
    """``tvm-sparse ARGUMENTS`` in a new process; output to a pipe with no COLUMNS (rich's 80 columns),
    as ``tvm-sparse ... | tee log`` runs it."""
    env = {name: value for name, value in os.environ.items() if name != "COLUMNS"}
    return subprocess.run([sys.executable, "-m", "tvm_sparse.cli", *arguments], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)
