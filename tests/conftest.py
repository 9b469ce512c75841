"""Fixtures shared by the test suite."""

import os

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


#: The command that installs what the ``phone`` and OpenCL tiers need (apt-get: run it as root).
SETUP_COMMAND = "bash scripts/setup.sh test"


def require(what, install=SETUP_COMMAND):
    """Stop a test whose environment lacks ``what``: fail in CI (``CI=true``), skip elsewhere.

    CI runs ``scripts/setup.sh test``, which installs every tier, so a missing tier there is a
    broken setup, not a reason to pass; elsewhere the skip reason names the install command.
    """
    message = f"{what} is missing: install it with `{install}`"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI runs every test tier)", pytrace=False)
    pytest.skip(message)


def pytest_runtest_setup(item):
    """Tests marked ``phone`` need the emulated phone prepared (``tvm_sparse.rpc.phone.prepare``)."""
    if item.get_closest_marker("phone") is None:
        return
    from tvm_sparse.rpc.phone import is_prepared

    if not is_prepared():
        require("the emulated aarch64 phone (qemu-user, the aarch64 cross compiler, the phone's root)")


@pytest.fixture(scope="session")
def opencl_context():
    """``(pyopencl, context, queue)`` on the first OpenCL platform (PoCL on this CPU)."""
    try:
        import pyopencl as cl
    except ImportError:
        require("pyopencl (the project's test extra)")
    try:
        platforms = cl.get_platforms()
    except cl.Error:
        platforms = []
    if not platforms:
        require("PoCL, OpenCL on this CPU (scripts/install-pocl.sh)")
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
