"""Fixtures shared by the test suite, and how the suite is spread over pytest-xdist workers."""

import gc
import os
import shutil

#: Most workers ``-n auto`` starts: the suite's longest tests (the emulated phone's, one worker)
#: set its wall time well before more workers would help, and each worker holds its own TVM and PyTorch.
MAX_AUTO_WORKERS = 4


def _share_the_cpus_between_workers():
    """In a pytest-xdist worker, give TVM's and PyTorch's thread pools this worker's share of the CPUs.

    Each runtime otherwise sizes its pool for the whole machine, and two workers' pools on the same
    cores wait for each other's descheduled threads at every parallel loop. It runs before the
    first import of torch or tvm_sparse (which read the variables once); a thread count that the
    user set is kept.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "TVM_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
        threads = str(max(1, len(os.sched_getaffinity(0)) // workers))
        os.environ["TVM_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = threads


_share_the_cpus_between_workers()

import pytest  # noqa: E402
import torch  # noqa: E402

from tvm_sparse.models import build_model  # noqa: E402


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which -p no:xdist leaves out
def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (the default in pyproject.toml): one worker per CPU, at most :data:`MAX_AUTO_WORKERS`."""
    return max(1, min(len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS))


#: The pytest-xdist group of every test that uses the emulated phone, so that one worker starts it.
PHONE_GROUP = "phone"


def _uses_a_module_fixture(item):
    """Whether ``item`` uses a fixture of module scope (directly or through another fixture)."""
    fixture_info = getattr(item, "_fixtureinfo", None)
    if fixture_info is None:
        return False
    return any(definitions[-1].scope == "module" for definitions in fixture_info.name2fixturedefs.values())


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Keep the tests that share an expensive fixture on one pytest-xdist worker (``--dist loadgroup``).

    The tests that use the emulated phone form one ``xdist_group``: the phone is a session fixture,
    so each worker that ran one of them would start its own (half a minute under qemu, and a second
    qemu competing for the cores). The tests of a module that use one of its module fixtures (a
    compiled model, most often) form a group per module, so that it is built once. Every other test
    goes to whichever worker is free.

    The workers hand out the groups in the order of the items (``--no-loadscope-reorder``): the
    phone's group, the longest, comes first, then the module groups, then the single tests, so
    that the short tests at the end fill the gaps instead of a long group running on one worker
    while the others wait. The groups are marked before pytest-xdist's own hook reads them (this
    hook wraps it), and :func:`_name_the_groups` makes sure that they reach the scheduler.
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return (yield)
    order = {}
    for item in items:
        if "emulated_phone" in getattr(item, "fixturenames", ()) or item.get_closest_marker("phone") is not None:
            item.add_marker(pytest.mark.xdist_group(PHONE_GROUP))
            order[item] = 0
        elif _uses_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
            order[item] = 1
        else:
            order[item] = 2
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=order.__getitem__)  # stable: collection order inside each kind
    result = yield
    if getattr(config.option, "loadgroup", False):
        _name_the_groups(items)
    return result


def _name_the_groups(items):
    """Append ``@GROUP`` to the node id of each item in an ``xdist_group``, where pytest-xdist did not.

    The scheduler of ``--dist loadgroup`` reads an item's group from that suffix of its node id.
    pytest-xdist 3.8 writes it to ``item._nodeid``, which pytest 9.2 no longer reads (its node ids
    are structured, ``item._id``), so every group would be split over the workers
    (pytest-dev/pytest-xdist#1386). Where the suffix is already there this does nothing.
    """
    for item in items:
        groups = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                         for mark in item.iter_markers("xdist_group")})
        if groups and "@" not in item.nodeid.rpartition("]")[2] and hasattr(item, "_id"):
            item._id = type(item._id).parse(f"{item.nodeid}@{'_'.join(groups)}")


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


@pytest.fixture(scope="session")
def emulated_phone(tracker):
    """One emulated aarch64 phone (``tvm_sparse.rpc.phone.EmulatedPhone``) for every test that runs code on it.

    Starting one takes about half a minute under qemu, so the tests share it; a test that stops or
    kills its device starts its own. Tests take it through :func:`phone` (or, for a module of
    hypothesis examples, hand it back like :func:`phone` does), which makes sure that each test
    finds it free.
    """
    from tvm_sparse.rpc.phone import EmulatedPhone, is_prepared

    if not is_prepared():
        require(PHONE_TIER)
    with EmulatedPhone(tracker, key="emu-aarch64-shared") as running:
        yield running


#: Seconds a released session may take until its device is free in the tracker again.
RELEASE_TIMEOUT_S = 30


def hand_back(phone, timeout=RELEASE_TIMEOUT_S):
    """Make sure the shared ``phone`` is free for the next test: restart it if a session still holds it.

    The server serves one session at a time and the tracker hands it out again only once the client
    has dropped every reference to its ``RPCSession`` (remote modules and tensors hold one too). A
    test that failed keeps its locals, and so its session, alive in the traceback; the next request
    would wait for it forever. So: collect garbage, wait ``timeout`` seconds for the device to be
    free again, and otherwise restart the server, which ends every session it holds.
    """
    from tvm_sparse.rpc import wait_for_device

    gc.collect()
    try:
        wait_for_device(phone.tracker, phone.key, timeout, process=phone.process)
    except (TimeoutError, RuntimeError):
        phone.stop()
        phone.start()


@pytest.fixture
def phone(emulated_phone):
    """The shared emulated phone, free at the start of the test and handed back free after it."""
    hand_back(emulated_phone)
    yield emulated_phone
    hand_back(emulated_phone)


#: The command that installs what the ``phone`` and OpenCL tiers need (apt-get: run it as root).
SETUP_COMMAND = "bash scripts/setup.sh test"


#: What the ``phone`` tier needs.
PHONE_TIER = "the emulated aarch64 phone (qemu-user, the aarch64 cross compiler, the phone's root)"


def require(what, install=SETUP_COMMAND):
    """Stop a test whose environment lacks ``what``: fail in CI (``CI=true``), skip elsewhere.

    CI runs ``scripts/setup.sh test``, which installs every tier, so a missing tier there is a
    broken setup, not a reason to pass; elsewhere the skip reason names the install command.
    """
    message = f"{what} is missing: install it with `{install}`"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI runs every test tier)", pytrace=False)
    pytest.skip(message)


def require_aarch64_linker():
    """Stop a test that links an aarch64 library without the cross compiler (see :func:`require`)."""
    if shutil.which("aarch64-linux-gnu-g++") is None:
        require("the aarch64 cross compiler (aarch64-linux-gnu-g++)")


def pytest_runtest_setup(item):
    """Tests marked ``phone`` need the emulated phone prepared (``tvm_sparse.rpc.phone.prepare``)."""
    if item.get_closest_marker("phone") is None:
        return
    from tvm_sparse.rpc.phone import is_prepared

    if not is_prepared():
        require(PHONE_TIER)


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


def relative_error(actual, expected):
    """max |actual - expected| / max |expected|."""
    return float(abs(actual - expected).max() / abs(expected).max())


#: The x86 vector features whose instructions a test's kernels may hold.
X86_VECTOR_FEATURES = ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma")


def skip_unless_this_cpu_runs(target):
    """Skip the calling test where this CPU cannot execute code built for ``target``.

    Some tests run kernels built for an AVX-512 CPU (its profile's schedules); on an AVX2 CPU that
    code stops at its first AVX-512 instruction. The schedules' decisions for such targets are
    also checked by tests that do not run them.
    """
    import tvm  # pylint: disable=import-outside-toplevel
    from tvm.target import codegen  # pylint: disable=import-outside-toplevel

    target = tvm.target.Target(target)
    host = tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})
    missing = [f for f in X86_VECTOR_FEATURES
               if codegen.target_has_features(f, target) and not codegen.target_has_features(f, host)]
    if missing:
        pytest.skip(f"this CPU ({codegen.llvm_get_system_cpu()}) lacks {', '.join(missing)}: code built for "
                    f"{target.attrs.get('mcpu', target)} cannot run here")
