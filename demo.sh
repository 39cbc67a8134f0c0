#!/usr/bin/env bash
# One command on a fresh machine: set up the environment and run the demo
# (a synthetic world, a pretrained backbone, a tiny CLIP, baseline CAMs, QA-CLIMS CAMs,
# IRNet pseudo masks, DeepLab; demo_out/report.html and demo_out/results.json).
#   ./demo.sh [run_demo.py options, e.g. --out demo_out --device cuda]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$repo/scripts/setup_env.sh" "$repo/requirements-demo.txt"
venv="${QA_CLIMS_VENV:-$repo/.venv}"
cd "$repo"
exec "$venv/bin/python" run_demo.py "$@"
