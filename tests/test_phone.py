"""The mission's proof: a PyTorch model compiled for aarch64 runs on the emulated phone through a tracker.

The phone (qemu-user + an arm64 Python with TVM's runtime) is prepared by ``scripts/setup.sh test``
and cached in ``$TVM_SPARSE_CACHE`` (default ``~/.cache/tvm_sparse``); preparing it takes a few minutes once.
"""

import pytest
import torch

import tvm_sparse
from tvm_sparse.rpc import RemoteModel, request_device
from tvm_sparse.rpc.phone import EmulatedPhone
from tests.conftest import relative_error

pytestmark = pytest.mark.phone


@pytest.fixture(scope="module")
def phone(tracker):
    with EmulatedPhone(tracker, key="emu-aarch64-test") as running:
        yield running


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
