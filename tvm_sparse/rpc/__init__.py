"""Run compiled models on remote devices through TVM RPC.

A tracker keeps a queue of devices by key; each device runs an RPC server registered under its
key (a phone, a board, the emulated phone of :mod:`tvm_sparse.rpc.phone`, or a local server).
``local_tracker`` and ``local_server`` start them on this machine (as context managers, for tests
and tuning); ``request_device`` asks a tracker for a session; ``run_remote`` and ``time_remote``
upload a :class:`tvm_sparse.CompiledModel` and run or time it there.
"""

from tvm_sparse.rpc.session import (
    RemoteModel,
    local_server,
    local_tracker,
    parse_address,
    request_device,
    run_remote,
    time_remote,
    wait_for_device,
)

__all__ = [
    "RemoteModel",
    "local_server",
    "local_tracker",
    "parse_address",
    "request_device",
    "run_remote",
    "time_remote",
    "wait_for_device",
]
