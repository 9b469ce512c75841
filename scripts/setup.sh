#!/usr/bin/env bash
# Create (or update) the project's virtual environment and install tvm_sparse into it.
#
#   bash scripts/setup.sh          # runtime dependencies
#   bash scripts/setup.sh test     # plus the test dependencies, PoCL and the emulated phone
#
# `test` also installs Fashion-MNIST (scripts/install-fashion-mnist.sh), what the OpenCL tests (PoCL:
# scripts/install-pocl.sh) and the `phone` tests
# (qemu-user, the aarch64 cross compiler, the phone's arm64 root: `tvm-sparse phone-emulator
# --prepare-only`) need; they use apt-get the first time (root, as in CI) and return at once when
# already done. Where they cannot be installed, CI (CI=true) stops here; elsewhere a warning says
# so and those tests skip, naming this command.
#
# The environment lives in $TVM_SPARSE_VENV (default: .venv beside this script's folder).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TVM_SPARSE_VENV:-$root/.venv}"
extras="${1:-}"

if ! command -v python3.11 >/dev/null 2>&1 && ! python3 -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    echo "tvm_sparse needs Python 3.11 (the only Python with TVM 0.27 wheels on PyPI)" >&2
    exit 1
fi
python=$(command -v python3.11 || command -v python3)

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
"$venv/bin/python" -m pip install --quiet -e "$spec"
echo "tvm_sparse installed in $venv"

# Run "$@" for a test tier: in CI a failure stops the setup, elsewhere it is a warning.
tier() {
    if "$@"; then
        return 0
    fi
    if [ "${CI:-}" = true ]; then
        echo "setup.sh: \`$*\` failed; CI runs every test tier" >&2
        exit 1
    fi
    echo "setup.sh: warning: \`$*\` failed; the tests that need it will be skipped" >&2
}

if [ "$extras" = test ]; then
    tier bash "$root/scripts/install-pocl.sh"
    tier bash "$root/scripts/install-fashion-mnist.sh"
    tier "$venv/bin/tvm-sparse" phone-emulator --prepare-only
fi
