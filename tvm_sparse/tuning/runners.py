"""Where measurements run: MetaSchedule's builder and runners, on this machine or on a device over RPC.

The sparse kernels are measured with the same builder and runners as the dense functions, so RPC,
timeouts and errors behave alike for both.
"""

import functools
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.runner import local_runner
from tvm.support.popen_pool import PopenPoolExecutor

from schedules.dense.prefetch import prefetched_module
from schedules.kernel_table import table_argument
from schedules.sparse_cpu.direct_conv import BUILD_CONFIG
from tvm_sparse.rpc.session import parse_address
from tvm_sparse.runtime_threads import use_threads


@dataclass(frozen=True)
class RPCDevice:
    """A device behind a TVM RPC tracker.

    Attributes
    ----------
    tracker : str
        ``"host:port"`` of the tracker.
    key : str
        The device key its RPC server registered with.
    session_timeout : float
        Seconds one measurement session may take on the device.
    """

    tracker: str
    key: str
    session_timeout: float = 120.0

    def runner(self, evaluator):
        """A MetaSchedule ``RPCRunner`` for this device (arguments from :func:`host_random_arguments`)."""
        host, port = parse_address(self.tracker)
        config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=self.key,
                                     session_timeout_sec=self.session_timeout)
        return DeadlineRPCRunner(config, evaluator_config=evaluator, max_workers=1,
                                 f_create_session=session_on_a_registered_device,
                                 f_alloc_argument=host_random_arguments)


def session_on_a_registered_device(rpc_config):
    """MetaSchedule ``f_create_session``: a session, or an error at once when no device is registered.

    A tracker queues a request for a key that no server has registered forever, so each measurement
    after the device is lost would wait its whole session timeout; a busy device stays registered
    and is waited for as usual.
    """
    if rpc_config.count_num_servers(allow_missing=True) == 0:
        raise RuntimeError(f"no device with key {rpc_config.tracker_key!r} is registered with the tracker at "
                           f"{rpc_config.tracker_host}:{rpc_config.tracker_port} (lost?)")
    return rpc_config.connect_server()


def host_random_arguments(session, device, args_info, alloc_repeat):
    """MetaSchedule ``f_alloc_argument`` for a remote device: random tensors made here and copied there.

    MetaSchedule's default fills them on the device with ``tvm.contrib.random``, which a device
    running only TVM's runtime (the emulated phone, a runtime-only install) does not have.
    Floating-point arguments are uniform in [-1, 1); integer ones are zero.
    """
    del session
    rng = np.random.default_rng(0)
    repeated = []
    for _ in range(alloc_repeat):
        arguments = []
        for kind, dtype, shape in args_info:
            if kind != "TENSOR":
                raise NotImplementedError(f"cannot allocate a {kind} argument")
            value = rng.uniform(-1.0, 1.0, size=shape) if "float" in dtype else np.zeros(shape)
            arguments.append(tvm.runtime.tensor(value.astype(dtype), device))
        repeated.append(arguments)
    return repeated


@derived_object
class DeadlineRPCRunner(ms.runner.RPCRunner._cls):  # pylint: disable=protected-access
    """MetaSchedule's ``RPCRunner`` whose measurements end after ``session_timeout_sec``.

    MetaSchedule's own runner waits for its worker without a limit (its timeout only appears in
    the error message), and a tracker queues a request for a device that has gone away forever:
    a tuning run would hang when the phone disappears. Here the worker pool kills a measurement
    after the session timeout, which MetaSchedule then records as an error.
    """

    def __init__(self, rpc_config, **kwargs):
        super().__init__(rpc_config, **kwargs)
        self.pool.shutdown()
        self.pool = PopenPoolExecutor(max_workers=1, timeout=rpc_config.session_timeout_sec)


def build_function(mod, target, _params):
    """MetaSchedule ``f_build``: ``tvm.tirx.build`` with the sparse kernels' build config.

    MetaSchedule's default build first imports ``tvm.s_tir.tensor_intrin`` in every (new) builder
    worker, which takes minutes on a loaded machine; none of our spaces tensorizes, so this build
    skips it. TIR's CSE is off as in ``tvm_sparse.compile``, and the dense schedules' weight
    prefetches are inserted as ``tvm_sparse.compile`` inserts them, so a candidate is measured as
    it will run.
    """
    with tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG):
        return tvm.tirx.build(prefetched_module(mod), target=target)


def export_with(compiler, rt_mod):
    """MetaSchedule ``f_export`` that links a shared library with ``compiler`` (a cross compiler)."""
    path = os.path.join(tempfile.mkdtemp(), "tvm_sparse_tuning.so")
    rt_mod.export_library(path, fcompile=tvm.support.cc.cross_compiler(compiler))
    return path


def alloc_with_table(default_alloc, index, table, *args):
    """MetaSchedule ``f_alloc_argument``: the default random arguments, with argument ``index`` set to ``table``."""
    repeated = default_alloc(*args)
    for arguments in repeated:
        arguments[index].copyfrom(table)
    return repeated


class MeasureRunners:
    """MetaSchedule runners (local or RPC): one for the dense functions, one for the sparse kernels.

    The random inputs MetaSchedule allocates are fine for data, bias and residual, but a compact
    sparse kernel also takes its int32 table (offsets into the input), which must hold the layer's
    values: for such a kernel the runner's ``f_alloc_argument`` copies the table in. MetaSchedule
    hands ``f_alloc_argument`` to its worker with every run, so the sparse runner is one runner
    whose ``f_alloc_argument`` is set per kernel and whose worker process stays up (starting a
    worker per kernel costs seconds each).

    Parameters
    ----------
    rpc : RPCDevice or None
        The device; None measures on this machine.
    evaluator : tvm.s_tir.meta_schedule.runner.EvaluatorConfig
    timeout : float
        Seconds per local run.
    threads : int
        Threads of TVM's runtime in the local workers (the count the model will run with).
    """

    def __init__(self, rpc, evaluator, timeout, threads):
        self.rpc, self.evaluator, self.timeout, self.threads = rpc, evaluator, timeout, threads
        self.default = self._make()
        self.sparse = None
        self.random_arguments = host_random_arguments if rpc is not None else local_runner.default_alloc_argument

    def _make(self):
        if self.rpc is not None:
            return self.rpc.runner(self.evaluator)
        # Left to TVM's default thread count, the workers would rank candidates by their speed at
        # another thread count than the model runs with.
        return ms.runner.LocalRunner(timeout_sec=self.timeout, evaluator_config=self.evaluator,
                                     initializer=functools.partial(use_threads, self.threads))

    def for_kernel(self, func):
        """The sparse runner, set to pass the kernel's table argument (when it has one)."""
        if self.sparse is None:
            self.sparse = self._make()
        table = table_argument(func)
        if table is None:
            self.sparse.f_alloc_argument = self.random_arguments
        else:
            index = [param.name for param in func.params].index("table")
            self.sparse.f_alloc_argument = functools.partial(alloc_with_table, self.random_arguments, index, table)
        return self.sparse
