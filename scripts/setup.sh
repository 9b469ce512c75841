#!/usr/bin/env bash
# Create (or update) the project's virtual environment and install tvm_sparse into it.
#
#   bash scripts/setup.sh          # runtime dependencies
#   bash scripts/setup.sh test     # plus the test dependencies
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
