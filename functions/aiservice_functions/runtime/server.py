"""Serve a function with gunicorn: ``AISVC_WORKERS`` worker processes, gthread threads.

A function that micro-batches runs one worker by default: a batch only forms from the
events of one process, and Knative scales by pods. A function that does not batch is
bound by the HTTP stack, which a single Python process runs on one core at most, so it
runs two workers by default (``config.UNBATCHED_WORKERS``); each loads its own model.
Threads follow Knative's ``containerConcurrency`` (``AISVC_CONCURRENCY``), a per-pod
bound, split across the workers so every event Knative may send at once has a thread;
torch itself runs single-threaded (see ``models.torch_setup``).

With several workers, Prometheus multiprocess mode sums the workers' metrics and ready
markers gate readiness on every worker's model (see ``workers``); the directory for both
is made here before the workers start and removed when the server exits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from aiservice_functions import contract
from aiservice_functions.models.uri import as_uri, check_uri
from aiservice_functions.runtime import workers
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


def _child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the master: a worker is gone, forget its metrics and ready marker."""
    shared = workers.shared_dir()
    if shared is not None:
        workers.mark_dead(shared, worker.pid)


def gunicorn_options(config: RuntimeConfig, host: str, port: int) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": config.workers,
        "worker_class": "gthread",
        "threads": config.threads_per_worker,
        "child_exit": _child_exit,
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
    made: Path | None = None
    if config.workers > 1:
        made = workers.prepare_shared_dir()
    else:
        workers.drop_inherited_dir()
    master = os.getpid()
    try:
        _GunicornApp(function, config, options).run()
    finally:
        # A worker leaves through here too (gunicorn ends it with SystemExit after the
        # fork); only the master removes the directory the others still use.
        if made is not None and os.getpid() == master:
            workers.remove_shared_dir(made)
