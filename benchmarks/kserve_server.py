"""The baseline server of the serving benchmark: a KServe 0.21 ModelServer.

Runs in ``benchmarks/.venv-kserve`` (KServe needs ``cloudevents<2``) with the repo's
``functions/`` on ``PYTHONPATH``, and serves the very same model objects as the
functions runtime (see ``bench_models``): the comparison is between servers, not models.
Requests are binary-mode CloudEvents to ``/v1/models/<name>:predict``; KServe decodes
the JSON data, calls ``predict`` and answers with a binary-mode CloudEvent.

Configuration, stated so the comparison can be judged: KServe's own defaults except
gRPC off (not used), the per-request latency log line and the uvicorn access log off
(the functions runtime logs neither per request), one torch thread per process (as the
functions runtime), ``--workers`` as given (KServe's default is 1).

Usage (what ``serving.py`` runs)::

    PYTHONPATH=functions benchmarks/.venv-kserve/bin/python benchmarks/kserve_server.py \
        --model sentiment --http_port 18081 --workers 1
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

# Set before torch is imported; spawned KServe workers re-import this module.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models
import kserve
import torch
from kserve.errors import InvalidInput
from kserve.logging import KSERVE_LOG_CONFIG

torch.set_num_threads(1)
# Spawned workers unpickle the model, which imports the function modules again.
bench_models.install_event_placeholder()


def quiet_log_config() -> str:
    """KServe's log config with its two per-request log lines (access, timing) off."""
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    config["loggers"]["kserve.trace"]["level"] = "WARNING"
    handle, path = tempfile.mkstemp(prefix="kserve-log-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump(config, out)
    return path


class BenchModel(kserve.Model):  # type: ignore[misc]
    """One of :mod:`bench_models`' predictors behind KServe's Model API."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.predictor: bench_models.Predictor | None = None

    def load(self) -> bool:
        """Load in the parent, as KServe documents (workers load their own copy)."""
        self.predictor = bench_models.load(self.name)
        self.ready = True
        return True

    def __getstate__(self) -> dict[str, Any]:
        # KServe pickles registered models into its spawned workers; a TorchScript
        # module cannot be pickled, so every worker loads the model from its file.
        state = dict(self.__dict__)
        state["predictor"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.ready:
            self.predictor = bench_models.load(self.name)

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """One event's data in, one result out; a refused payload is KServe's 400."""
        assert self.predictor is not None
        try:
            return self.predictor.predict_one(payload)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model", required=True, choices=sorted(bench_models.NAMES))
    args, _ = parser.parse_known_args()
    # KServe parsed sys.argv on import; its workers read the log config from there.
    if kserve.model_server.args.log_config_file is None:
        kserve.model_server.args.log_config_file = quiet_log_config()
    model = BenchModel(args.model)
    model.load()
    kserve.ModelServer(enable_grpc=False, enable_latency_logging=False).start([model])


if __name__ == "__main__":
    main()
