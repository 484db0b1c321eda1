#!/usr/bin/env bash
# Sets up warpbench in the current Python environment.
# torch==2.13.0 is installed first when torch is absent: on CPU-only machines it is the local CPU
# wheel, and any looser request would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install "torch==2.13.0"
fi
"$PY" -m pip install -e ".[dev]"
