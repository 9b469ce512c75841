"""tvm_sparse.rpc with a local tracker and an x86 server: request, upload, run, time; failures named."""

import pytest
import torch

import tvm_sparse
from tvm_sparse.rpc import (RemoteModel, local_server, parse_address, request_device, run_remote,
                            wait_for_device)
from tests.conftest import hand_back, relative_error


@pytest.fixture(scope="module")
def small_model():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 5)).eval()
    example = torch.randn(2, 3, 8, 8)
    return model, example, tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target="llvm")


def test_run_and_time_through_a_tracker(tracker, small_model):
    model, example, compiled = small_model
    with local_server(tracker, key="local-x86"):
        session = request_device(f"{tracker[0]}:{tracker[1]}", "local-x86")
        remote = RemoteModel(compiled, session)
        with torch.no_grad():
            assert relative_error(remote.run(example), model(example).numpy()) <= 1e-5
        latencies = remote.time(example, number=2, repeat=3)
        assert len(latencies) == 3 and all(ms > 0 for ms in latencies)
        other = torch.randn(2, 3, 8, 8)
        with torch.no_grad():
            assert relative_error(run_remote(compiled, session, other), model(other).numpy()) <= 1e-5


def test_remote_inputs_are_checked(tracker, small_model):
    _, _, compiled = small_model
    with local_server(tracker, key="local-x86-check"):
        remote = RemoteModel(compiled, request_device(tracker, "local-x86-check"))
        with pytest.raises(ValueError, match="must have shape"):
            remote.run(torch.randn(1, 3, 8, 8))


def test_missing_device_times_out_with_its_key(tracker):
    with pytest.raises(TimeoutError, match="'no-such-phone'"):
        wait_for_device(tracker, "no-such-phone", timeout=1)


@pytest.mark.parametrize("bad", ["localhost", "localhost:port", ":9190", ""])
def test_tracker_address_must_be_host_and_port(bad):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(bad)


class _LocalDevice:
    """What ``tests.conftest.hand_back`` uses of an ``EmulatedPhone``, served by a local x86 server."""

    def __init__(self, tracker, key):
        self.tracker, self.key, self.process, self.starts = tracker, key, None, 0
        self._server = None

    def start(self):
        self._server = local_server(self.tracker, self.key)
        self._server.__enter__()
        self.starts += 1
        return self

    def stop(self):
        self._server.__exit__(None, None, None)


def test_hand_back_frees_a_shared_device_whose_session_a_test_still_holds(tracker):
    device = _LocalDevice(tracker, "shared-x86").start()
    try:
        session = request_device(tracker, device.key)
        assert session.cpu().exist
        del session  # released: the device is free again, no restart
        hand_back(device, timeout=10)
        assert device.starts == 1
        held = request_device(tracker, device.key)  # what a failed test's traceback keeps alive
        hand_back(device, timeout=2)
        assert device.starts == 2
        wait_for_device(tracker, device.key, timeout=10)  # the next test is not queued behind ``held``
        assert request_device(tracker, device.key).cpu().exist
        del held
    finally:
        device.stop()
