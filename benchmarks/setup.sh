#!/usr/bin/env bash
# Set-up of the serving benchmark (benchmarks/serving.py); not needed by the test suite.
# - wrk, the load generator (Debian package);
# - benchmarks/.venv-kserve: KServe's ModelServer in a venv of its own, because kserve
#   0.21 needs cloudevents<2 while the functions runtime uses cloudevents 2.x;
# - benchmarks/.venv-mlserver: Seldon MLServer 1.7.
# Both use the main venv's torch/transformers, so every server runs the same model code
# on the same kernels.
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
# The main venv's site-packages go last on each peer venv's path (a .pth file): the peers
# run the very same torch and transformers builds (same kernels) without a second
# multi-GB torch download, while their own pins (cloudevents<2 for KServe, uvloop) win.
MAIN_SITE=$(../.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
make_venv() {
  local venv=$1
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  local site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$MAIN_SITE" > "$site/zz-main-venv.pth"
  "$venv/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
}
# KServe 0.21 ModelServer (needs cloudevents<2, hence a venv of its own).
make_venv .venv-kserve
.venv-kserve/bin/python -m pip install --quiet "kserve==0.21.0" "uvloop==0.21.0" "uvicorn==0.38.0"
.venv-kserve/bin/python -c 'import kserve, torch, cloudevents; print("kserve venv ready:", torch.__version__)'
# Seldon MLServer 1.7 with adaptive batching (benchmarks/mlserver_runtime.py); its worker
# pool needs a uvloop older than the main venv's. SKIP_MLSERVER=1 leaves it out (gpu.sh).
if [ "${SKIP_MLSERVER:-0}" != 1 ]; then
  make_venv .venv-mlserver
  .venv-mlserver/bin/python -m pip install --quiet "mlserver==1.7.1" "uvloop==0.21.0"
  .venv-mlserver/bin/python -c 'import mlserver, torch; print("mlserver venv ready:", mlserver.__version__, torch.__version__)'
fi
