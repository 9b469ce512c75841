"""Helpers to compile a kernel PrimFunc for this host and compare it with PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tvm
from schedules.specialized_conv import compile_kernel
from schedules.target_info import as_target


def _run(prim_func, arrays, out_shape, target=None):
    executable = compile_kernel(prim_func, as_target(target))
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a, dtype="float32"), dev) for a in arrays]
    out = tvm.runtime.tensor(np.full(out_shape, np.nan, dtype="float32"), dev)
    executable[prim_func.attrs["global_symbol"]](*args, out)
    return out.numpy()


def _torch_conv(x, weight, bias=None, residual=None, stride=1, padding=0, activation=None):
    """PyTorch's conv2d + bias + residual + activation; padding as in schedules (int, pair or 4-tuple)."""
    xt = torch.from_numpy(x)
    if not isinstance(padding, int) and len(padding) == 4:
        top, left, bottom, right = padding
        xt, padding = F.pad(xt, (left, right, top, bottom)), 0
    y = F.conv2d(xt, torch.from_numpy(weight), None if bias is None else torch.from_numpy(bias), stride, padding)
    if residual is not None:
        y = y + torch.from_numpy(residual)
    if activation == "relu":
        y = torch.relu(y)
    elif activation == "relu6":
        y = torch.clamp(y, 0, 6)
    return y.numpy()


@pytest.fixture(scope="session")
def run_kernel():
    """``run_kernel(prim_func, [inputs...], out_shape) -> numpy output`` on this host's CPU."""
    return _run


@pytest.fixture(scope="session")
def torch_conv():
    """``torch_conv(x, weight, bias, residual, stride, padding, activation) -> numpy output``."""
    return _torch_conv
