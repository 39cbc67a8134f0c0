#!/usr/bin/env bash
# One command on a fresh machine: set up the environment and run the test suite.
#   ./test.sh [pytest options]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$repo/scripts/setup_env.sh" "$repo/requirements-dev.txt"
venv="${QA_CLIMS_VENV:-$repo/.venv}"
cd "$repo"
exec "$venv/bin/python" -m pytest -q "$@" tests
