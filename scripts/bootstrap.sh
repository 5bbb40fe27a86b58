#!/usr/bin/env bash
# Creates .venv with every Python dependency of the project (operator, functions,
# event store, dev tools). Idempotent: a second run only checks.
#
# torch comes from PyPI, whose Linux x86_64 wheel is the CUDA build: with its nvidia-*
# packages the .venv takes about 6 GB. TORCH_INDEX_URL, when set, is the index torch is
# installed from instead, e.g. PyTorch's CPU wheels:
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/bootstrap.sh
# It picks the build of a new .venv only: an installed torch already meets the pin.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip setuptools wheel
# torch first, pinned (as in pyproject.toml), from $TORCH_INDEX_URL when set; the rest of
# the dependencies always from PyPI.
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  python -m pip install --quiet --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
else
  python -m pip install --quiet "torch==2.13.0"
fi
python -m pip install --quiet -e ".[operator,functions,eventstore,parquet,s3,images,train,dev]"
