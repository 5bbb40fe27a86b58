"""The batching peer of the serving benchmark: Seldon MLServer 1.7 with adaptive batching.

Runs in ``benchmarks/.venv-mlserver`` with the repo's ``functions/`` on ``PYTHONPATH``
and serves the very same model objects as the functions runtime and KServe (see
``bench_models``). MLServer speaks the V2 inference protocol, not CloudEvents, so each
request carries one event's JSON data as a one-element BYTES input; MLServer's adaptive
batching joins concurrent requests into one ``predict`` call (at most
``--max-batch-size`` requests, waiting at most ``--max-batch-time`` seconds), which
runs one forward pass over all of them, as the functions runtime's micro-batcher does.

Configuration, stated so the comparison can be judged: adaptive batching at 32 requests
and 5 ms (the functions runtime's defaults for MiniLM); ``--workers`` inference worker
processes (MLServer's ``parallel_workers``; its default is 1, besides the HTTP process),
one torch thread each; debug logging (per-request lines) and the metrics server off;
gRPC on a port of its own (MLServer always starts it; unused).

Usage (what ``serving.py`` runs)::

    PYTHONPATH=functions:benchmarks benchmarks/.venv-mlserver/bin/python \
        benchmarks/mlserver_runtime.py --model sentiment --http_port 18083 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models
from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse


class BenchRuntime(MLModel):  # type: ignore[misc]
    """One of :mod:`bench_models`' predictors behind MLServer's runtime API."""

    async def load(self) -> bool:
        import torch

        torch.set_num_threads(1)
        self.predictor = bench_models.load(self.settings.parameters.extra["model"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """A batch of events' JSON data in (one per request), one JSON result out each."""
        texts = StringCodec.decode_input(payload.inputs[0])
        try:
            items = [self.predictor.decode(json.loads(text)) for text in texts]
        except ValueError as exc:
            raise MLServerError(str(exc), status_code=400) from exc
        outputs = self.predictor.infer(items)
        return InferenceResponse(
            model_name=self.name,
            outputs=[StringCodec.encode_output("output", [json.dumps(o) for o in outputs])],
        )


def request_body(data: Any) -> dict[str, Any]:
    """The V2 request carrying one event's data (what the load generator posts)."""
    return {
        "inputs": [
            {"name": "payload", "shape": [1], "datatype": "BYTES", "data": [json.dumps(data)]}
        ]
    }


def reply_data(body: Any) -> Any:
    """The one result in a V2 response."""
    return json.loads(body["outputs"][0]["data"][0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, choices=sorted(bench_models.NAMES))
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-time", type=float, default=0.005)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlserver-bench-"))
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": args.http_port,
        "grpc_port": args.http_port + 1000,
        "metrics_endpoint": None,
        "parallel_workers": args.workers,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model = root / args.model
    model.mkdir()
    model_settings = {
        "name": args.model,
        "implementation": "mlserver_runtime.BenchRuntime",
        "max_batch_size": args.max_batch_size,
        "max_batch_time": args.max_batch_time,
        "parameters": {"extra": {"model": args.model}},
    }
    (model / "model-settings.json").write_text(json.dumps(model_settings))
    mlserver = Path(sys.executable).with_name("mlserver")
    os.execv(str(mlserver), [str(mlserver), "start", str(root)])


if __name__ == "__main__":
    main()
