#!/usr/bin/env bash
# The main job on the embedded default: set up the virtualenv, then run the offline demo.
# Extra arguments go to `dllm-eval demo` (e.g. --output DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-test} bash scripts/setup.sh
VENV=${VENV:-.venv}
"$VENV/bin/dllm-eval" demo "$@"
