#!/usr/bin/env bash
# Execute every notebook in notebooks/ at full size, in place (nbclient's jupyter-execute) (outputs and figures committed with
# them), and copy each notebook's headline figure to docs/img/.
#
#   bash scripts/run-notebooks.sh                    # all notebooks, full size
#   bash scripts/run-notebooks.sh notebooks/03_*.ipynb   # some of them
#   TVM_SPARSE_NOTEBOOK_SIZE=small bash scripts/run-notebooks.sh   # the CI size, quickly
#
# Full size takes long on a small machine (minutes to hours: every layer and model is compiled and
# timed, the phone notebook tunes under qemu). Uses the environment $TVM_SPARSE_VENV (default .venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TVM_SPARSE_VENV:-$root/.venv}"
export TVM_SPARSE_NOTEBOOK_SIZE="${TVM_SPARSE_NOTEBOOK_SIZE:-full}"
figures="$(mktemp -d)"
trap 'rm -rf "$figures"' EXIT
export TVM_SPARSE_FIGURE_DIR="$figures"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

if [ "$#" -eq 0 ]; then
    set -- "$root"/notebooks/*.ipynb
fi
for notebook in "$@"; do
    echo "executing $notebook ($TVM_SPARSE_NOTEBOOK_SIZE size)"
    (cd "$(dirname "$notebook")" && "$venv/bin/jupyter-execute" --inplace --timeout=-1 "$(basename "$notebook")")
done

# Headline figures of a full-size run: the one named after its notebook (03_where_sparse_pays.png, ...).
[ "$TVM_SPARSE_NOTEBOOK_SIZE" = full ] || exit 0
mkdir -p "$root/docs/img"
for notebook in "$@"; do
    headline="$figures/$(basename "$notebook" .ipynb).png"
    if [ -f "$headline" ]; then
        cp "$headline" "$root/docs/img/"
        echo "wrote docs/img/$(basename "$headline")"
    fi
done
