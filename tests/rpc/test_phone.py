"""The mission's proof: a PyTorch model compiled for aarch64 runs on the emulated phone through a tracker.

The phone (qemu-user + an arm64 Python with TVM's runtime) is prepared by ``scripts/setup.sh test``
and cached in ``$TVM_SPARSE_CACHE`` (default ``~/.cache/tvm_sparse``); preparing it takes a few minutes once.
"""

import signal
import subprocess
import sys

import psutil
import pytest
import torch

import tvm_sparse
from tvm_sparse.rpc import RemoteModel, request_device, wait_for_device
from tests.conftest import relative_error

pytestmark = pytest.mark.phone


@pytest.mark.slow  # in CI, the pruned ResNet-18 (tests/relay_passes/test_whole_models.py) runs there, its dense layers too
def test_resnet18_on_the_emulated_phone_matches_pytorch(phone, resnet18, resnet18_relax):
    model, example = resnet18
    compiled = tvm_sparse.compile(*resnet18_relax, target="llvm -mtriple=aarch64-linux-gnu -mattr=+neon")
    session = request_device(phone.tracker, phone.key, session_timeout=600)
    with torch.no_grad():
        expected = model(example).numpy()
    assert relative_error(RemoteModel(compiled, session).run(example), expected) <= 1e-4


def test_sparse_kernels_on_the_emulated_phone_match_pytorch(phone):
    from relay_passes.sparse_rules import SparseRules
    from tests.relay_passes.sparse_models import sparse_residual_block

    model, example = sparse_residual_block(seed=3)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example), target="llvm -mtriple=aarch64",
                                  rules=SparseRules(min_macs=0))
    assert [d.decision for d in compiled.report] == ["sparse"] * 4
    session = request_device(phone.tracker, phone.key, session_timeout=600)
    with torch.no_grad():
        expected = model(example).numpy()
    assert relative_error(RemoteModel(compiled, session).run(example), expected) <= 1e-5


def _still_running(process):
    """True unless ``process`` has ended (a zombie waiting for its reaper has ended)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=lambda signum: signum.name)
def test_a_stop_signal_ends_the_phone_emulators_whole_process_tree(tracker, tmp_path, signum):
    # What `kill`, systemd, a CI runner or a container stop send, and Ctrl-C. Each signal here costs
    # a phone of its own (about 30 s to start under qemu): CI sends SIGTERM; SIGINT and SIGHUP take
    # the same path (one handler turns each into StopSignal, tests/commands/test_cli.py).
    key = f"emu-aarch64-{signum.name.lower()}"
    log = tmp_path / "phone-emulator.log"
    with open(log, "w", encoding="utf-8") as output:
        command = subprocess.Popen([sys.executable, "-m", "tvm_sparse.cli", "phone-emulator",
                                    "--tracker", f"{tracker[0]}:{tracker[1]}", "--key", key],
                                   stdout=output, stderr=subprocess.STDOUT)
    tree = []
    try:
        wait_for_device(tracker, key, timeout=300, process=command)
        tree = psutil.Process(command.pid).children(recursive=True)
        command_lines = [" ".join(process.cmdline()) for process in tree]
        assert sum("qemu-aarch64" in line for line in command_lines) >= 2, command_lines
        assert any("tvm.exec.popen_worker" in line for line in command_lines), command_lines
        command.send_signal(signum)
        command.wait(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
        survivors = [process for process in tree if _still_running(process)]
        survivor_lines = [" ".join(process.cmdline()) for process in survivors]
        for process in survivors:
            process.kill()
    assert not survivors, survivor_lines
    assert command.returncode == 0, log.read_text()
