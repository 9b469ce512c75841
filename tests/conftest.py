"""Fixtures shared by the test suite."""

import subprocess
from pathlib import Path

import pytest
import torch

from tvm_sparse.models import build_model


@pytest.fixture(scope="session")
def resnet18():
    """Dense ResNet-18 (CIFAR shapes, random weights and BatchNorm statistics) and an example input."""
    return build_model("resnet18"), torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def resnet18_relax(resnet18):
    """ResNet-18 imported with ``tvm_sparse.from_torch``: ``(mod, params)``."""
    import tvm_sparse

    model, example = resnet18
    return tvm_sparse.from_torch(model, example)


@pytest.fixture(scope="session")
def tracker():
    """An RPC tracker on loopback for the whole session: ``(host, port)``."""
    from tvm_sparse.rpc import local_tracker

    with local_tracker() as address:
        yield address


INSTALL_POCL = Path(__file__).resolve().parents[1] / "scripts" / "install-pocl.sh"


@pytest.fixture(scope="session")
def opencl_context():
    """``(pyopencl, context, queue)`` on the first OpenCL platform (PoCL, installed if missing).

    The install comes before the first platform query: the OpenCL loader reads its list of
    drivers once per process, so a driver installed after a query stays invisible to the tests.
    """
    cl = pytest.importorskip("pyopencl", reason="pyopencl is in the project's test extra")
    subprocess.run(["bash", str(INSTALL_POCL)], check=True)
    platforms = cl.get_platforms()
    context = cl.Context(devices=platforms[0].get_devices())
    return cl, context, cl.CommandQueue(context)


def _config_for(codegen, kernel, fmt, data_shape, stride, padding):
    """None (the entry point's default) for ``"default"``, else the first candidate config with that codegen."""
    from schedules import registry

    if codegen == "default":
        return None
    candidates = registry.kernel(kernel).candidates(fmt, data_shape, stride=stride, padding=padding)
    return next(c for c in candidates if c.codegen == codegen)


@pytest.fixture(scope="session")
def config_for():
    """``config_for(codegen, kernel_name, fmt, data_shape, stride, padding) -> SpecializedConvConfig or None``."""
    return _config_for


def relative_error(actual, expected):
    """max |actual - expected| / max |expected|."""
    return float(abs(actual - expected).max() / abs(expected).max())
