"""An emulated aarch64 phone: a real ``tvm.exec.rpc_server`` running under qemu-user.

``prepare`` builds, once, a folder (cached outside the repository, in ``$TVM_SPARSE_CACHE`` or
``~/.cache/tvm_sparse``) with an arm64 Debian Python 3.11 (``apt-get download`` + ``dpkg -x``) and
the aarch64 wheels of TVM's runtime and the RPC server's dependencies (``pip install --target
--platform manylinux_2_28_aarch64``). ``EmulatedPhone`` starts the server through a wrapper script
that runs ``qemu-aarch64 -L ROOT -0 WRAPPER python3.11``: ``-0`` makes the wrapper the program's
``sys.executable``, so the worker processes the server forks for each session run under qemu too.

Timings under qemu are not phone timings: the emulated phone proves correctness of aarch64 code and
the RPC and tuning flow; speed is measured on this CPU or on a real phone.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from tvm_sparse.rpc.session import wait_for_device

logger = logging.getLogger(__name__)

#: Commands this machine needs, and the Debian packages that provide them.
HOST_TOOLS = {"qemu-aarch64": "qemu-user", "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu"}

#: arm64 Debian packages whose dependency closure makes the phone's root filesystem.
ROOT_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")

#: aarch64 wheels installed for the phone's Python: TVM's runtime and the RPC server's needs.
PHONE_WHEELS = ("apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1",
                "psutil==7.2.2", "cloudpickle==3.1.2", "tornado==6.6.1")

#: Default tracker key of the emulated phone.
DEFAULT_KEY = "emu-aarch64"


class PhoneEmulatorError(RuntimeError):
    """The emulated phone could not be prepared or started; the message says what to do."""


def default_directory():
    """Where the phone is prepared: ``$TVM_SPARSE_CACHE/phone-aarch64`` (default ``~/.cache/tvm_sparse``)."""
    cache = os.environ.get("TVM_SPARSE_CACHE") or os.path.join(Path.home(), ".cache", "tvm_sparse")
    return Path(cache) / "phone-aarch64"


def _fingerprint():
    return "\n".join(ROOT_PACKAGES + PHONE_WHEELS) + "\n"


def _run(command, what, **kwargs):
    logger.info("%s: %s", what, " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise PhoneEmulatorError(f"{what} failed ({' '.join(command[:4])} ...):\n{result.stderr[-2000:]}")
    return result.stdout


def _apt_get(*arguments):
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PhoneEmulatorError(
            f"the emulated phone needs Debian packages ({' '.join(arguments)}); run as root on a "
            "Debian/Ubuntu machine, or install them: apt-get " + " ".join(arguments))
    _run(["apt-get", *arguments], "apt-get " + arguments[0],
         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def ensure_host_tools():
    """Install qemu-user and the aarch64 cross compiler with apt-get when they are missing."""
    missing = sorted({package for command, package in HOST_TOOLS.items() if shutil.which(command) is None})
    if missing:
        _apt_get("update", "-q")
        _apt_get("install", "-y", "-q", *missing)


def _ensure_arm64_architecture():
    foreign = _run(["dpkg", "--print-foreign-architectures"], "dpkg").split()
    if "arm64" not in foreign:
        if os.geteuid() != 0:
            raise PhoneEmulatorError("the phone's root filesystem comes from Debian's arm64 packages: "
                                     "run `dpkg --add-architecture arm64 && apt-get update` as root")
        _run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
        _apt_get("update", "-q")


def _root_package_closure():
    output = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                   "--no-breaks", "--no-replaces", "--no-enhances", "--no-pre-depends",
                   *(f"{name}:arm64" for name in ROOT_PACKAGES)], "apt-cache depends")
    return sorted({line for line in output.splitlines() if line.endswith(":arm64") and not line[0].isspace()})


def _write_wrapper(directory):
    wrapper = directory / "python3"
    root, site = directory / "root", directory / "site"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Python 3.11 for aarch64 under qemu-user, with TVM's runtime (written by tvm_sparse).\n"
        f"export PYTHONPATH='{site}' TVM_USE_RUNTIME_LIB=1\n"
        f"exec qemu-aarch64 -L '{root}' -0 '{wrapper}' '{root}/usr/bin/python3.11' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return wrapper


def is_prepared(directory=None):
    """Whether the phone is prepared in ``directory`` (default :func:`default_directory`) and
    this machine has the tools that run it and link for it (:data:`HOST_TOOLS`)."""
    ready = Path(directory or default_directory()) / "READY"
    return (all(shutil.which(command) for command in HOST_TOOLS)
            and ready.exists() and ready.read_text() == _fingerprint())


def prepare(directory=None):
    """Prepare the emulated phone once (and the host tools, when missing); later calls return at once.

    Parameters
    ----------
    directory : path-like, optional
        Where to build it (default :func:`default_directory`).

    Returns
    -------
    pathlib.Path
        The phone's Python wrapper script.

    Raises
    ------
    PhoneEmulatorError
        When a package cannot be installed or downloaded, or the phone's Python does not start.
    """
    directory = Path(directory or default_directory())
    ensure_host_tools()
    if is_prepared(directory):
        return directory / "python3"
    _ensure_arm64_architecture()
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="phone-", dir=directory.parent))
    try:
        debs = staging / "debs"
        debs.mkdir()
        _run(["apt-get", "download", *_root_package_closure()], "apt-get download (arm64)", cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(staging / "root")], f"dpkg -x {deb.name}")
        shutil.rmtree(debs)
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(staging / "site"),
              "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
              "--python-version", "3.11", "--only-binary=:all:", *PHONE_WHEELS], "pip install (aarch64 wheels)")
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    wrapper = _write_wrapper(directory)
    _run([str(wrapper), "-c", "import tvm, tornado, psutil, cloudpickle"], "starting the phone's Python")
    (directory / "READY").write_text(_fingerprint())
    return wrapper


def _descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_tree(leader, descendants, signum):
    """Send ``signum`` to the process group ``leader`` leads and to each of ``descendants`` still running."""
    try:
        os.killpg(leader, signum)
    except ProcessLookupError:
        pass
    for process in descendants:
        try:
            process.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


class EmulatedPhone:
    """An RPC server on the emulated phone, registered with a tracker (a context manager).

    Parameters
    ----------
    tracker : tuple[str, int]
        The tracker's address.
    key : str
        The device key to register under.
    host : str
        Address the server binds (loopback by default).
    port : int
        First port to try for the server.
    directory : path-like, optional
        The prepared phone (see :func:`prepare`); prepared on first use.
    startup_timeout : float
        Seconds to wait for the server to register (importing TVM under qemu takes a while).
    log : file object, optional
        Where the server's output goes (its log of every session); default: this process's output.
    """

    def __init__(self, tracker, key=DEFAULT_KEY, host="127.0.0.1", port=9300, directory=None,
                 startup_timeout=300, log=None):
        self.tracker = tracker
        self.key = key
        self.host = host
        self.port = port
        self.directory = directory
        self.startup_timeout = startup_timeout
        self.log = log
        self.process = None

    def start(self):
        """Prepare the phone if needed, start the server and wait until the tracker lists it."""
        wrapper = prepare(self.directory)
        command = [str(wrapper), "-m", "tvm.exec.rpc_server", "--host", self.host, "--port", str(self.port),
                   "--port-end", str(self.port + 100), "--tracker", f"{self.tracker[0]}:{self.tracker[1]}",
                   "--key", self.key]
        logger.info("starting the emulated phone: %s", " ".join(command))
        self.process = subprocess.Popen(command, start_new_session=True, stdout=self.log,
                                        stderr=None if self.log is None else subprocess.STDOUT)
        try:
            wait_for_device(self.tracker, self.key, self.startup_timeout, process=self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self):
        """Block until the server exits; returns its exit code."""
        return self.process.wait()

    def stop(self, timeout=10):
        """Stop the server and every process it started, and wait until they have ended.

        The server leads its own process group, which is signalled first (SIGTERM, SIGKILL after
        ``timeout`` seconds); its descendants are also signalled one by one, for any that left the group.
        """
        if self.process is None:
            return
        # A server that has exited has no descendants left to find (they moved to init).
        descendants = _descendants(self.process.pid) if self.process.poll() is None else []
        _signal_tree(self.process.pid, descendants, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        _, alive = psutil.wait_procs(descendants, timeout=timeout)
        if self.process.poll() is None or alive:
            _signal_tree(self.process.pid, alive, signal.SIGKILL)
            self.process.wait()
            psutil.wait_procs(alive, timeout=timeout)
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
