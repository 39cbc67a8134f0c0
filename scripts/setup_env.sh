#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install the requirements.
#   scripts/setup_env.sh [requirements file]      (default: requirements.txt)
# The venv lives in $QA_CLIMS_VENV (default: .venv in the repository). Pip is
# only run when the requirements changed since the last successful install.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="${1:-$repo/requirements.txt}"
venv="${QA_CLIMS_VENV:-$repo/.venv}"
python_bin="${PYTHON:-$(command -v python3.11 || command -v python3)}"

if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment $venv with $python_bin"
    "$python_bin" -m venv "$venv"
fi
stamp="$venv/.installed-$(basename "$req").sha256"
current="$(cat "$req" "$repo"/requirements*.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$current" ]; then
    echo "[setup] installing $(basename "$req") into $venv (first run: a few minutes)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    (cd "$repo" && "$venv/bin/python" -m pip install --quiet -r "$req")
    echo "$current" > "$stamp"
fi
