"""The dense NEON schedules (packed 3x3, depthwise stride 2, wide-row pointwise, linear) on the
emulated aarch64 phone, against PyTorch."""

import pytest
import torch
from torch import nn

import tvm_sparse
from tests.conftest import relative_error
from tvm_sparse.rpc import RemoteModel, request_device

pytestmark = pytest.mark.phone


class _DenseLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.depthwise = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
        self.pointwise = nn.Conv2d(16, 24, 1)
        self.linear = nn.Linear(24, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = torch.clamp(self.depthwise(x), 0, 6)
        x = torch.relu(self.pointwise(x) + x[:, :1])
        return self.linear(x.mean((2, 3)))


def test_dense_layers_on_the_emulated_phone_match_pytorch(phone):
    torch.manual_seed(0)
    model, example = _DenseLayers().eval(), torch.randn(1, 3, 16, 16)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, example),
                                  target="llvm -mtriple=aarch64-linux-gnu -mattr=+neon")
    session = request_device(phone.tracker, phone.key, session_timeout=600)
    with torch.no_grad():
        expected = model(example).numpy()
    assert relative_error(RemoteModel(compiled, session).run(example), expected) <= 1e-4
