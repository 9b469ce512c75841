"""Whole dense models through the tvm_sparse pipeline for this CPU: every convolution and linear
layer is scheduled by a register-tile rule (none is left to the fallback) and the output matches
PyTorch (max relative error <= 1e-4)."""

import pytest
import torch
import tvm

import tvm_sparse
from schedules.dense.winograd import GEMM
from tests.conftest import relative_error
from tests.schedules.dense.harness import build_scheduled, host_target, primfuncs, scheduled_module
from tvm_sparse.bench.models import benchmark_model, example_input
from tvm_sparse.relax_utils import bind_params

#: Blocks that only the register-tile rules produce (the reduction split into init and update;
#: Winograd's products are register-tiled alike).
REGISTER_TILED = ('T.sblock("conv2d_nchw_update")', 'T.sblock("group_conv2d_nchw_update")',
                  'T.sblock("matmul_update")', f'T.sblock("{GEMM}_update")')


def _check_model(name):
    model, example = benchmark_model(name), example_input()
    mod, params = tvm_sparse.from_torch(model, example)
    target = host_target()

    scheduled = scheduled_module(bind_params(mod, params), target)
    funcs = primfuncs(scheduled)
    assert all(f.attrs.get("tirx.is_scheduled", False) for f in funcs.values())
    layers = {n: f for n, f in funcs.items() if "conv2d" in n or "matmul" in n}
    naive = [n for n, f in layers.items() if not any(block in f.script() for block in REGISTER_TILED)]
    assert layers and not naive, f"layers left to the fallback schedule: {naive}"

    vm = build_scheduled(scheduled, target)
    for x in (example, torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))):
        with torch.no_grad():
            expected = model(x).numpy()
        assert relative_error(vm["main"](tvm.runtime.tensor(x.numpy()))[0].numpy(), expected) <= 1e-4


def test_dense_resnet18_is_scheduled_and_matches_pytorch():
    _check_model("resnet18")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2"])
def test_dense_model_is_scheduled_and_matches_pytorch(name):
    _check_model(name)
