"""The tuning log folder: MetaSchedule's JSON database for dense functions, ``sparse_kernels.json``
for the sparse kernels' knobs, and loading both for ``compile``.

A folder (``tuning_logs/<model>/<target>/``) holds :data:`WORKLOAD_FILE` and :data:`RECORD_FILE`
(MetaSchedule's database), :data:`SPARSE_FILE` (one record per measured knob setting of a sparse
layer, keyed by :func:`layer_key`) and :data:`COMMAND_FILE` (the command that wrote it).
"""

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np
from tvm.s_tir import meta_schedule as ms
from tvm_ffi import structural_equal

from schedules.sparse_cpu.config import SpecializedConvConfig

logger = logging.getLogger(__name__)

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
SPARSE_FILE = "sparse_kernels.json"
COMMAND_FILE = "COMMAND"

#: Run times at or above this are failures (MetaSchedule records a failed run as 1e10 s).
FAILED_SECONDS = 1e9


class TuningLogError(ValueError):
    """A tuning log folder that cannot be read (missing, partial or corrupt files)."""


def mean_seconds(run_secs):
    """The mean of a measurement's run times, in seconds."""
    return float(np.mean([float(s) for s in run_secs]))


def is_valid(run_secs):
    """Whether ``run_secs`` is a successful measurement (present, and below :data:`FAILED_SECONDS`)."""
    return run_secs is not None and len(run_secs) > 0 and mean_seconds(run_secs) < FAILED_SECONDS


def open_database(log_dir, allow_missing=True):
    """The MetaSchedule JSON database of a log folder.

    Raises
    ------
    TuningLogError
        If a file is missing (unless ``allow_missing``), unreadable or not a database.
    """
    paths = [os.path.join(log_dir, name) for name in (WORKLOAD_FILE, RECORD_FILE)]
    if not allow_missing:
        missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
        if missing:
            raise TuningLogError(f"{log_dir} has no {' or '.join(missing)}")
    try:
        return ms.database.JSONDatabase(*paths, allow_missing=allow_missing)
    except Exception as error:  # noqa: BLE001 - TVM raises its own error types for bad JSON
        raise TuningLogError(f"{log_dir} holds an unreadable MetaSchedule database: "
                             f"{str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__}") from error


def records_of(database, mod):
    """The database's tuning records of the workload ``mod`` (none when it is not in the database)."""
    if not database.has_workload(mod):
        return []
    workload = database.commit_workload(mod)
    return [r for r in database.get_all_tuning_records() if structural_equal(r.workload.mod, workload.mod)]


def layer_key(kernel, weight, data_shape, epilogue, options):
    """The key of a sparse layer in ``sparse_kernels.json``: a hash of kernel, weight values, shapes, epilogue."""
    dense = np.ascontiguousarray(weight.to_dense(), dtype="float32")
    digest = hashlib.sha256()
    digest.update(repr((kernel, dense.shape, tuple(data_shape), sorted(options.items()), epilogue)).encode())
    digest.update(dense.tobytes())
    return digest.hexdigest()[:32]


def _config_to_json(config):
    return None if config is None else dataclasses.asdict(config)


def _config_from_json(data):
    return None if data is None else SpecializedConvConfig(**data)


class SparseRecords:
    """The measurements of sparse-kernel knobs in ``sparse_kernels.json`` (rewritten after each one).

    Parameters
    ----------
    path : str
    target : str, optional
        The slug of the target measured on (:func:`tvm_sparse.target.target_slug`), stored in the
        file; a file of another target raises :class:`TuningLogError`.
    """

    def __init__(self, path, target=None):
        self.path = path
        self.target = target
        self.records = []
        if os.path.exists(path):
            self.target, self.records = _load_sparse_records(path)
            if target is not None and self.target not in (None, target):
                raise TuningLogError(f"{path} was tuned for {self.target}, not {target}")
            self.target = self.target or target

    def measured(self, key, config):
        """Whether a valid measurement of ``config`` for layer ``key`` is recorded."""
        data = _config_to_json(config)
        return any(r["layer"] == key and r["config"] == data and r["error"] is None for r in self.records)

    def add(self, key, kernel, config, seconds, error):
        """Record one measurement (``seconds`` a list) or failure (``error`` a message) and save."""
        self.records.append({"layer": key, "kernel": kernel, "config": _config_to_json(config),
                             "seconds": seconds, "error": error})
        folder = os.path.dirname(self.path) or "."
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as handle:
            json.dump({"format": 1, "target": self.target, "records": self.records}, handle, indent=1)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, self.path)

    @property
    def errors(self):
        """Failed measurements in the file."""
        return sum(r["error"] is not None for r in self.records)

    def best(self):
        """``{layer key: fastest config}`` over the valid measurements (None: the kernel's default)."""
        best = {}
        for record in self.records:
            if record["error"] is not None:
                continue
            seconds = float(np.median(record["seconds"]))
            if record["layer"] not in best or seconds < best[record["layer"]][0]:
                best[record["layer"]] = (seconds, record["config"])
        return {key: _config_from_json(config) for key, (_, config) in best.items()}


def _load_sparse_records(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        records = data["records"]
        target = data.get("target")  # absent in files written before it was recorded
        for record in records:
            _config_from_json(record["config"])
            if record["error"] is None:
                [float(s) for s in record["seconds"]]  # pylint: disable=expression-not-assigned
            str(record["layer"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TuningLogError(f"{path} is not a readable sparse-kernel log: {type(error).__name__}: {error}") from error
    return target, records


@dataclass
class TuningLogs:
    """Logs loaded for :func:`tvm_sparse.compile`: the MetaSchedule database and the sparse knobs.

    Attributes
    ----------
    database : tvm.s_tir.meta_schedule.database.Database or None
    sparse_configs : dict[str, SpecializedConvConfig or None]
        Best knobs per layer key.
    """

    database: object = None
    sparse_configs: dict = dataclasses.field(default_factory=dict)

    def kernel_config(self, kernel, weight, data_shape, epilogue, options):
        """The ``kernel_configs`` hook of ``RouteSparseLayers``: tuned knobs or None."""
        return self.sparse_configs.get(layer_key(kernel, weight, data_shape, epilogue, options))

    def context(self):
        """``with logs.context():`` puts the database in MetaSchedule's context (or does nothing)."""
        return self.database if self.database is not None else contextlib.nullcontext()


def records_for_target(database, target):
    """``database`` restricted to the records tuned for ``target`` (a MemoryDatabase), and the other targets' slugs.

    MetaSchedule looks a function up by workload alone, so a folder holding records of another
    target would hand that target's schedules to this one.
    """
    from tvm_sparse.target import target_slug  # noqa: PLC0415

    wanted = target_slug(target)
    records = database.get_all_tuning_records()
    foreign = sorted({target_slug(r.target) for r in records} - {wanted})
    if not foreign:
        return database, []
    kept = ms.database.MemoryDatabase()
    for record in records:
        if target_slug(record.target) == wanted:
            workload = kept.commit_workload(record.workload.mod)
            kept.commit_tuning_record(ms.database.TuningRecord(record.trace, workload, record.run_secs, record.target,
                                                               record.args_info))
    return kept, foreign


def load_tuning_logs(path, target=None):
    """Read a log folder for ``compile``; never raises for bad logs.

    A missing folder or files, unreadable ones, or records tuned for another target than
    ``target`` are logged as a warning naming the problem and left out (untuned schedules); a
    readable part is still used.

    Parameters
    ----------
    path : str or os.PathLike
    target : tvm.target.Target, optional
        The target compiled for; records of other targets are ignored.

    Returns
    -------
    TuningLogs
    """
    from tvm_sparse.target import target_slug  # noqa: PLC0415

    path = os.fspath(path)
    logs = TuningLogs()
    if not os.path.isdir(path):
        logger.warning("tuning logs %s: no such folder; compiling with untuned schedules", path)
        return logs
    has_database = any(os.path.exists(os.path.join(path, name)) for name in (WORKLOAD_FILE, RECORD_FILE))
    if has_database:
        try:
            logs.database = open_database(path, allow_missing=False)
        except TuningLogError as error:
            logger.warning("tuning logs: %s; dense functions get untuned schedules", error)
    if logs.database is not None and target is not None:
        logs.database, foreign = records_for_target(logs.database, target)
        if foreign:
            logger.warning("tuning logs %s: records tuned for %s are ignored when compiling for %s",
                           path, ", ".join(foreign), target_slug(target))
    sparse_path = os.path.join(path, SPARSE_FILE)
    if os.path.exists(sparse_path):
        try:
            logs.sparse_configs = SparseRecords(sparse_path, target_slug(target) if target is not None else None).best()
        except TuningLogError as error:
            logger.warning("tuning logs: %s; sparse kernels get their default knobs", error)
    if logs.database is None and not logs.sparse_configs:
        logger.warning("tuning logs %s: nothing usable (no %s/%s or %s); compiling with untuned schedules",
                       path, WORKLOAD_FILE, RECORD_FILE, SPARSE_FILE)
    return logs
