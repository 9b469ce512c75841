"""tvm_sparse: pattern and block pruning for PyTorch CNNs, compiled by Apache TVM into sparse kernels.

The heavy entry points import TVM and PyTorch lazily, so that ``tvm_sparse.formats`` (numpy only)
and ``tvm_sparse.pruning`` (torch only) stay cheap to import. Importing the package sizes TVM's
thread pool to the physical cores unless the user did (:mod:`tvm_sparse.runtime_threads`).
"""

from importlib import import_module

from tvm_sparse.runtime_threads import use_physical_cores_by_default

__version__ = "0.1.0"

use_physical_cores_by_default()

_LAZY = {
    "compile": "tvm_sparse.compiler",
    "CompiledModel": "tvm_sparse.compiler",
    "from_torch": "tvm_sparse.frontend",
    "map_schemes": "tvm_sparse.mapping.mapper",
    "parse_target": "tvm_sparse.target",
    "tune": "tvm_sparse.tuning",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tvm_sparse' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
