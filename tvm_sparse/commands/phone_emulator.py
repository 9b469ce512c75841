"""``tvm-sparse phone-emulator``: prepare the emulated aarch64 phone and serve it to a tracker."""

import sys

from tvm_sparse.rpc import local_tracker, parse_address
from tvm_sparse.rpc.phone import DEFAULT_KEY, EmulatedPhone, PhoneEmulatorError, default_directory, prepare


def register(subparsers):
    """Add the ``phone-emulator`` sub-command."""
    parser = subparsers.add_parser(
        "phone-emulator",
        help="run a TVM RPC server on an emulated aarch64 phone (qemu-user)",
        description="Prepare (once, cached outside the repository) an aarch64 Python with TVM's runtime "
                    "under qemu-user, and run a real tvm.exec.rpc_server registered with an RPC tracker. "
                    "Without --tracker, a tracker is started on 127.0.0.1.",
    )
    parser.add_argument("--tracker", metavar="HOST:PORT", help="the RPC tracker to register with")
    parser.add_argument("--key", default=DEFAULT_KEY, help=f"device key (default {DEFAULT_KEY})")
    parser.add_argument("--port", type=int, default=9300, help="first port the server tries (default 9300)")
    parser.add_argument("--cache-dir", default=None,
                        help=f"where the phone is prepared (default {default_directory()})")
    parser.add_argument("--prepare-only", action="store_true", help="prepare the phone and exit")
    parser.set_defaults(func=run)


def run(args):
    """Prepare the phone, then serve until interrupted."""
    try:
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
    except (PhoneEmulatorError, TimeoutError, ValueError) as error:
        print(f"tvm-sparse phone-emulator: {error}", file=sys.stderr)
        return 1


def _serve(tracker, args):
    with EmulatedPhone(tracker, key=args.key, port=args.port, directory=args.cache_dir) as phone:
        print(f"serving key {args.key!r} at tracker {tracker[0]}:{tracker[1]}; Ctrl-C stops", flush=True)
        try:
            return phone.wait()
        except KeyboardInterrupt:
            return 0
