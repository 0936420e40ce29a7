#!/usr/bin/env bash
# The test command: set up the virtualenv, lint, run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k parity).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest "$@"
