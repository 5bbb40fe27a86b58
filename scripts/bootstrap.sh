#!/usr/bin/env bash
# Creates .venv with every Python dependency of the project (operator, functions,
# event store, dev tools). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip setuptools wheel
# The CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[operator,functions,eventstore,parquet,s3,images,train,dev]"
