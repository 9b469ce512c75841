"""Helpers to compile a kernel PrimFunc for this host and compare it with PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tvm
from schedules import registry
from schedules.kernel_table import table_argument
from schedules.sparse_cpu.direct_conv import compile_kernel
from schedules.target_info import as_target
from tests.schedules.dense.harness import torch_conv2d


def _run(prim_func, arrays, out_shape, target=None):
    executable = compile_kernel(prim_func, as_target(target))
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a, dtype="float32"), dev) for a in arrays]
    table = table_argument(prim_func)
    if table is not None:
        args.append(tvm.runtime.tensor(table, dev))
    out = tvm.runtime.tensor(np.full(out_shape, np.nan, dtype="float32"), dev)
    executable[prim_func.attrs["global_symbol"]](*args, out)
    return out.numpy()


def _torch_conv(x, weight, bias=None, residual=None, stride=1, padding=0, activation=None):
    """PyTorch's conv2d + bias + residual + activation; padding as in schedules (int, pair or 4-tuple)."""
    if not isinstance(padding, int) and len(padding) == 4:
        top, left, bottom, right = padding
        x, padding = F.pad(torch.from_numpy(x), (left, right, top, bottom)).numpy(), 0
    return torch_conv2d(x, weight, bias, stride, padding, 1, 1, residual, activation)


@pytest.fixture(scope="session")
def run_kernel():
    """``run_kernel(prim_func, [inputs...], out_shape) -> numpy output`` on this host's CPU.

    The inputs are ``data`` and the epilogue's arrays; a compact kernel's table is added.
    """
    return _run


def _epilogue_case(rng, x, weight, stride, padding, epilogue):
    """Random ``bias``/``residual`` as ``epilogue`` needs them and PyTorch's output.

    Returns
    -------
    extras : dict
        ``{"bias": ..., "residual": ...}`` with only what the epilogue uses, in parameter order.
    expected : numpy.ndarray
    """
    extras = {}
    if epilogue.bias:
        extras["bias"] = rng.standard_normal(weight.shape[0]).astype("float32")
    if epilogue.residual:
        shape = _torch_conv(x, weight, None, None, stride, padding).shape
        extras["residual"] = rng.standard_normal(shape).astype("float32")
    expected = _torch_conv(x, weight, extras.get("bias"), extras.get("residual"), stride, padding, epilogue.activation)
    return extras, expected


@pytest.fixture(scope="session")
def epilogue_case():
    """``epilogue_case(rng, x, weight, stride, padding, epilogue) -> (extras, expected)``."""
    return _epilogue_case


def _config_for(codegen, kernel, fmt, data_shape, stride, padding):
    """None (the entry point's default) for ``"default"``, else the first candidate config with that codegen."""
    if codegen == "default":
        return None
    candidates = registry.kernel(kernel).candidates(fmt, data_shape, stride=stride, padding=padding)
    return next(c for c in candidates if c.codegen == codegen)


def _kernel_matches_torch(kernel, fmt, weight, x, rng, stride, padding, epilogue, codegen):
    """Build ``kernel`` (an entry point of ``schedules.registry``, such as ``bsr_conv2d``) for ``fmt``
    with the first candidate config of ``codegen`` (or none for ``"default"``), run it on ``x`` and
    the epilogue's random inputs, and assert that it gives PyTorch's output for the dense ``weight``."""
    extras, expected = _epilogue_case(rng, x, weight, stride, padding, epilogue)
    config = _config_for(codegen, kernel.__name__, fmt, x.shape, stride, padding)
    func = kernel(fmt, x.shape, stride=stride, padding=padding, epilogue=epilogue, config=config)
    np.testing.assert_allclose(_run(func, [x, *extras.values()], expected.shape), expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="session")
def kernel_matches_torch():
    """``kernel_matches_torch(kernel, fmt, weight, x, rng, stride, padding, epilogue, codegen)``: assert it."""
    return _kernel_matches_torch
