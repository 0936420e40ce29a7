#!/usr/bin/env bash
# Create (or reuse) a virtualenv and install dllm-eval into it.
#   VENV=path (default .venv)   EXTRAS=test,lora (default test)
# torch: an existing torch in the venv is kept. On a machine without torch and without an
# NVIDIA GPU, a CPU build is installed first (so no multi-GB CUDA wheels are pulled); set
# DLLM_TORCH_CPU_INDEX to a CPU wheel index if your pip cannot find a CPU build by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "[setup] installing torch (GPU machine)"
    "${PIP[@]}" install "torch>=2.1"
  elif [ -n "${DLLM_TORCH_CPU_INDEX:-}" ]; then
    echo "[setup] installing CPU torch from $DLLM_TORCH_CPU_INDEX"
    "${PIP[@]}" install torch --index-url "$DLLM_TORCH_CPU_INDEX"
  else
    echo "[setup] installing torch==2.13.0 (CPU build where pip's configured sources provide one)"
    "${PIP[@]}" install "torch==2.13.0"
  fi
fi
echo "[setup] installing dllm-eval[$EXTRAS]"
"${PIP[@]}" install -e ".[$EXTRAS]"
