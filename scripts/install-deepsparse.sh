#!/usr/bin/env bash
# Install DeepSparse 1.8.0 (Neural Magic's sparse CPU engine), the baseline of
# `tvm-sparse bench model`, into its own virtual environment: its pins (numpy < 2, its own
# onnx range) clash with the project's, so it never shares the project's .venv.
#
#   bash scripts/install-deepsparse.sh
#
# The environment lives in $TVM_SPARSE_DEEPSPARSE_VENV (default: ~/.cache/tvm_sparse/deepsparse-venv).
# 1.8.0 is the newest release that installs here (1.9.0 does not build).
set -euo pipefail
venv="${TVM_SPARSE_DEEPSPARSE_VENV:-$HOME/.cache/tvm_sparse/deepsparse-venv}"
python=$(command -v python3.11 || command -v python3)
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import deepsparse' 2>/dev/null; then
    echo "DeepSparse is already installed in $venv"
    exit 0
fi
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "deepsparse==1.8.0"
"$venv/bin/python" -c 'import deepsparse; print("DeepSparse", deepsparse.__version__, "installed in '"$venv"'")'
