#!/usr/bin/env bash
# Create .venv and install oremap with its dependencies (CPU build of PyTorch).
# A user with a GPU: install your own torch build into .venv first, e.g.
#   python3 -m venv .venv && .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu124
# then run this script; it keeps an installed torch that satisfies the requirement.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # torch==2.13.0 is pinned: on the project's machines pip takes the CPU wheel that lies on
  # disk (/opt/wheels). Elsewhere set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to
  # get the CPU build instead of PyPI's default (CUDA) build.
  .venv/bin/python -m pip install --quiet "torch==2.13.0" \
    ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
.venv/bin/python -m pip install --quiet -e ".[dev,scale]"
.venv/bin/python -c "import oremap, torch; print('oremap', oremap.__version__, '| torch', torch.__version__)"
