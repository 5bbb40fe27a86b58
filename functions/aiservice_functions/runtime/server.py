"""Serve a function with gunicorn: one worker process, gthread threads.

One process per container, on purpose: Knative scales by pods, the model is held
once in memory, micro-batching needs all concurrent events in the same process to
form batches, and the Prometheus registry stays exact without multiprocess mode.
Threads follow Knative's ``containerConcurrency`` (``AISVC_CONCURRENCY``) so every
event Knative may send at once has a thread; torch itself runs single-threaded
(see ``models.torch_setup``).
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication

from aiservice_functions import contract
from aiservice_functions.models.uri import as_uri, check_uri
from aiservice_functions.runtime.config import RuntimeConfig
from aiservice_functions.runtime.function import Function, load_entrypoint
from aiservice_functions.runtime.logs import configure_logging, logging_dict

GRACEFUL_TIMEOUT_S = 20


def default_host() -> str:
    """``AISVC_HOST``, else loopback: only the container image opens all interfaces."""
    return os.environ.get(contract.ENV_HOST) or "127.0.0.1"


def default_port() -> int:
    raw = os.environ.get(contract.ENV_PORT, "")
    return int(raw) if raw.isdigit() else contract.DEFAULT_PORT


class _GunicornApp(BaseApplication):
    def __init__(self, function: Function, config: RuntimeConfig, options: dict[str, Any]):
        self._function = function
        self._config = config
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in the worker, after the fork: the model-loading thread starts there.
        from aiservice_functions.runtime.app import create_app

        return create_app(self._function, self._config)


def gunicorn_options(config: RuntimeConfig, host: str, port: int) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": config.threads,
        # gthread heartbeats from its main loop, so a long forward pass does not trip
        # this; it only catches a wedged worker.
        "timeout": int(max(30, config.timeout_seconds * 2)),
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": 5,
        "backlog": 256,
        "accesslog": None,
        "logconfig_dict": logging_dict(),
        "control_socket_disable": True,
        "proc_name": f"aisvc-{config.service}",
    }
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def serve(
    entrypoint: str,
    model_uri: str | None = None,
    port: int | None = None,
    host: str | None = None,
    *,
    model_sha256: str | None = None,
    model_version: str | None = None,
    reply_type: str | None = None,
) -> None:
    """Serve ``entrypoint`` until stopped (SIGTERM/SIGINT); arguments override the env.

    ``model_uri`` may also be a local path. Call it from the main thread (gunicorn
    installs signal handlers). It blocks, and ends by raising ``SystemExit`` with
    gunicorn's exit status; a bad entrypoint or setting raises ``ValueError`` first.
    """
    overrides = {
        contract.ENV_MODEL_URI: as_uri(model_uri) if model_uri else None,
        contract.ENV_MODEL_SHA256: model_sha256,
        contract.ENV_MODEL_VERSION: model_version,
        contract.ENV_REPLY_TYPE: reply_type,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = value
    # A model is named by URI and verified; libraries must not fetch one from a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    configure_logging()
    if os.environ.get(contract.ENV_MODEL_URI):
        check_uri(os.environ[contract.ENV_MODEL_URI], os.environ.get(contract.ENV_MODEL_SHA256))
    function = load_entrypoint(entrypoint)
    config = RuntimeConfig.from_env(function.batching)
    options = gunicorn_options(config, host or default_host(), port or default_port())
    _GunicornApp(function, config, options).run()
