"""Trackers, servers and remote execution of compiled models over TVM RPC."""

import os
import tempfile
import time
import uuid
from contextlib import contextmanager

import tvm
from tvm import relax, rpc
from tvm.rpc.server import Server
from tvm.rpc.tracker import Tracker

from tvm_sparse.relax_utils import unpack_outputs


def parse_address(address):
    """Split ``"host:port"`` into ``(host, port)``.

    Raises
    ------
    ValueError
        If the port is missing or not a number.
    """
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"an RPC tracker address is HOST:PORT (such as 127.0.0.1:9190), not {address!r}")
    return host, int(port)


@contextmanager
def local_tracker(host="127.0.0.1", port=9190, port_end=9290):
    """Start an RPC tracker on this machine for the duration of the block.

    Parameters
    ----------
    host : str
        Address to bind (loopback by default).
    port, port_end : int
        The tracker takes the first free port in ``[port, port_end)``.

    Yields
    ------
    tuple[str, int]
        The tracker's address.
    """
    tracker = Tracker(host, port=port, port_end=port_end, silent=True)
    try:
        yield (tracker.host, tracker.port)
    finally:
        tracker.terminate()


@contextmanager
def local_server(tracker, key, host="127.0.0.1", port=9090, port_end=9190, timeout=60):
    """Start an RPC server on this machine, registered with ``tracker`` under ``key``.

    Parameters
    ----------
    tracker : tuple[str, int]
        The tracker's address.
    key : str
        The device key clients request.
    timeout : float
        Seconds to wait for the server to appear in the tracker.

    Yields
    ------
    tvm.rpc.server.Server
    """
    server = Server(host, port=port, port_end=port_end, tracker_addr=tracker, key=key, silent=True)
    try:
        wait_for_device(tracker, key, timeout)
        yield server
    finally:
        server.terminate()


def wait_for_device(tracker, key, timeout=60, process=None):
    """Wait until the tracker has a free device under ``key``.

    Parameters
    ----------
    tracker : tuple[str, int]
    key : str
    timeout : float
        Seconds to wait.
    process : subprocess.Popen, optional
        The server process; if it exits while we wait, fail at once.

    Raises
    ------
    TimeoutError
        When no such device registers in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            queue = rpc.connect_tracker(*tracker).summary()["queue_info"].get(key, {})
            if queue.get("free", 0) > 0:
                return
        except (OSError, RuntimeError):
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the RPC server for {key!r} exited with code {process.returncode} before registering")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no device with key {key!r} registered with the tracker at "
                               f"{tracker[0]}:{tracker[1]} within {timeout} s")
        time.sleep(0.5)


def request_device(tracker, key, priority=1, session_timeout=0):
    """Ask a tracker for a session on a device with ``key``.

    Parameters
    ----------
    tracker : tuple[str, int] or str
        The tracker's address, as ``(host, port)`` or ``"host:port"``.
    key : str
    priority : int
    session_timeout : float
        Seconds after which the device ends the session (0: never).

    Returns
    -------
    tvm.rpc.RPCSession
    """
    if isinstance(tracker, str):
        tracker = parse_address(tracker)
    return rpc.connect_tracker(*tracker).request(key, priority=priority, session_timeout=session_timeout)


class RemoteModel:
    """A compiled model uploaded to a remote device, ready to run.

    Parameters
    ----------
    compiled : tvm_sparse.CompiledModel
    session : tvm.rpc.RPCSession
    """

    def __init__(self, compiled, session):
        self.compiled = compiled
        self.session = session
        self.device = session.cl() if compiled.target.kind.name == "opencl" else session.cpu()
        name = f"tvm_sparse_{uuid.uuid4().hex[:12]}.so"
        with tempfile.TemporaryDirectory() as folder:
            path = compiled.export_library(os.path.join(folder, name))
            session.upload(path)
        self.vm = relax.VirtualMachine(session.load_module(name), self.device)

    def set_inputs(self, inputs):
        """Check and copy the inputs to the device."""
        arrays = self.compiled.check_inputs(inputs)
        self.vm.set_input("main", *(tvm.runtime.tensor(array, self.device) for array in arrays))

    def run(self, *inputs):
        """Run once on the device and return the outputs as numpy arrays."""
        self.set_inputs(inputs)
        self.vm.invoke_stateful("main")
        return unpack_outputs(self.vm.get_outputs("main"))

    def time(self, *inputs, number=10, repeat=5):
        """Per-run latencies in milliseconds measured on the device by ``time_evaluator``.

        Returns
        -------
        list[float]
            One mean per repeat (each over ``number`` runs).
        """
        self.set_inputs(inputs)
        evaluator = self.vm.time_evaluator("invoke_stateful", self.device, number=number, repeat=repeat)
        return [seconds * 1e3 for seconds in evaluator("main").results]


def run_remote(compiled, session, *inputs):
    """Upload ``compiled`` to the device behind ``session``, run it once and return its outputs."""
    return RemoteModel(compiled, session).run(*inputs)


def time_remote(compiled, session, *inputs, number=10, repeat=5):
    """Upload ``compiled`` and return its per-run latencies in milliseconds (see :meth:`RemoteModel.time`)."""
    return RemoteModel(compiled, session).time(*inputs, number=number, repeat=repeat)
