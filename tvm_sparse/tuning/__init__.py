"""``tvm_sparse.tune``: tune a model's kernels with MetaSchedule, locally or over TVM RPC.

Two kinds of kernel come out of ``tvm_sparse.compile``, and they are tuned differently:

* **Dense functions** (the layers the sparse passes left to TVM) are ordinary MetaSchedule tasks
  (:mod:`~tvm_sparse.tuning.search`); each function's best schedules are then measured again in
  interleaved rounds (:mod:`~tvm_sparse.tuning.finalists`).
* **Sparse kernels** are code generated from the weights; their knobs are code-generation
  parameters, measured candidate by candidate (:mod:`~tvm_sparse.tuning.sparse_candidates`).

Both run on MetaSchedule's builder and runners, here or on a device over RPC
(:mod:`~tvm_sparse.tuning.runners`), and land in a log folder that ``compile`` applies
(:mod:`~tvm_sparse.tuning.logs`). A run that fails is stored as an error and the run goes on; a
rerun with the same folder never measures a valid measurement again.
"""

from tvm_sparse.tuning.logs import (
    COMMAND_FILE,
    FAILED_SECONDS,
    RECORD_FILE,
    SPARSE_FILE,
    WORKLOAD_FILE,
    TuningLogError,
    TuningLogs,
    load_tuning_logs,
    open_database,
)
from tvm_sparse.tuning.progress import TuningProgress
from tvm_sparse.tuning.runners import RPCDevice
from tvm_sparse.tuning.tasks import DenseTask, SparseTask, extract_tasks
from tvm_sparse.tuning.tuner import TuningResult, tune

__all__ = [
    "COMMAND_FILE",
    "FAILED_SECONDS",
    "RECORD_FILE",
    "SPARSE_FILE",
    "WORKLOAD_FILE",
    "DenseTask",
    "RPCDevice",
    "SparseTask",
    "TuningLogError",
    "TuningLogs",
    "TuningProgress",
    "TuningResult",
    "extract_tasks",
    "load_tuning_logs",
    "open_database",
    "tune",
]
