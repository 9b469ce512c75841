"""``tvm-sparse phone-emulator``: prepare the emulated aarch64 phone and serve it to a tracker."""

import signal
import sys
from contextlib import contextmanager

from tvm_sparse.rpc import local_tracker, parse_address
from tvm_sparse.rpc.phone import DEFAULT_KEY, EmulatedPhone, PhoneEmulatorError, default_directory, prepare

#: Signals that stop the server: Ctrl-C, `kill` (systemd, CI runners, container stops), a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignal(BaseException):
    """One of :data:`STOP_SIGNALS` arrived; raised so that every ``with`` block stops what it started."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def register(subparsers):
    """Add the ``phone-emulator`` sub-command."""
    parser = subparsers.add_parser(
        "phone-emulator",
        help="run a TVM RPC server on an emulated aarch64 phone (qemu-user)",
        description="Prepare (once, cached outside the repository) an aarch64 Python with TVM's runtime "
                    "under qemu-user, and run a real tvm.exec.rpc_server registered with an RPC tracker. "
                    "Without --tracker, a tracker is started on 127.0.0.1. SIGINT, SIGTERM and SIGHUP stop "
                    "the server and every process it started.",
    )
    parser.add_argument("--tracker", metavar="HOST:PORT", help="the RPC tracker to register with")
    parser.add_argument("--key", default=DEFAULT_KEY, help=f"device key (default {DEFAULT_KEY})")
    parser.add_argument("--port", type=int, default=9300, help="first port the server tries (default 9300)")
    parser.add_argument("--cache-dir", default=None,
                        help=f"where the phone is prepared (default {default_directory()})")
    parser.add_argument("--prepare-only", action="store_true", help="prepare the phone and exit")
    parser.set_defaults(func=run)


def run(args):
    """Prepare the phone, then serve until a stop signal; 0 when stopped by one."""
    try:
        with stop_signals_raised():
            tracker = parse_address(args.tracker) if args.tracker else None
            wrapper = prepare(args.cache_dir)
            print(f"emulated phone ready: {wrapper}", flush=True)
            if args.prepare_only:
                return 0
            if tracker:
                return _serve(tracker, args)
            with local_tracker() as tracker:
                print(f"started an RPC tracker at {tracker[0]}:{tracker[1]}", flush=True)
                return _serve(tracker, args)
    except StopSignal as stop:
        print(f"stopped by {signal.Signals(stop.signum).name}", flush=True)
        return 0
    except (PhoneEmulatorError, TimeoutError, ValueError) as error:
        print(f"tvm-sparse phone-emulator: {error}", file=sys.stderr)
        return 1


@contextmanager
def stop_signals_raised():
    """Turn the first of :data:`STOP_SIGNALS` into :class:`StopSignal` for the duration of the block.

    Python's default SIGTERM and SIGHUP end the process at once, skipping the ``with`` blocks that
    stop the server (it runs in its own session, so it would keep running, orphaned). Later stop
    signals are ignored so that they cannot cut the cleanup short.
    """
    def raise_stop(signum, _frame):
        for stop in STOP_SIGNALS:
            signal.signal(stop, signal.SIG_IGN)
        raise StopSignal(signum)

    previous = {stop: signal.signal(stop, raise_stop) for stop in STOP_SIGNALS}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def _serve(tracker, args):
    with EmulatedPhone(tracker, key=args.key, port=args.port, directory=args.cache_dir) as phone:
        print(f"serving key {args.key!r} at tracker {tracker[0]}:{tracker[1]}; Ctrl-C stops", flush=True)
        return phone.wait()
