#!/usr/bin/env bash
# One command on a fresh machine: set up the environment and run the test suite.
#   ./test.sh [pytest options]
# The suite runs in QA_CLIMS_TEST_WORKERS processes (default 2, pytest-xdist; 0 runs it in
# this process), each test file in one process, each process with one torch thread.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$repo/scripts/setup_env.sh" "$repo/requirements-dev.txt"
venv="${QA_CLIMS_VENV:-$repo/.venv}"
workers="${QA_CLIMS_TEST_WORKERS:-2}"
cd "$repo"
if [ "$workers" -gt 0 ]; then
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
    exec "$venv/bin/python" -m pytest -q -n "$workers" --dist loadfile "$@" tests
fi
exec "$venv/bin/python" -m pytest -q "$@" tests
