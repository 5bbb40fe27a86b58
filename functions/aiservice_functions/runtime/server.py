"""Serve a function with gunicorn: ``AISVC_WORKERS`` worker processes, gthread threads.

A function that micro-batches runs one worker by default: a batch only forms from the
events of one process, and Knative scales by pods. A function that does not batch is
bound by the HTTP stack, which a single Python process runs on one core at most, so it
runs two workers by default (``config.UNBATCHED_WORKERS``); each loads its own model.
Threads follow Knative's ``containerConcurrency`` (``AISVC_CONCURRENCY``), a per-pod
bound, split across the workers so every event Knative may send at once has a thread;
torch itself runs single-threaded (see ``models.torch_setup``).

With several workers, Prometheus multiprocess mode sums the workers' metrics and ready
markers gate readiness on every worker's model; :mod:`aiservice_functions.serving` makes
the directory for both before the workers start and removes it when the server exits.
"""

from __future__ import annotations

import os
from typing import Any

from aiservice_functions import contract
from aiservice_functions.models.uri import as_uri, check_uri
from aiservice_functions.runtime.config import RuntimeConfig
from aiservice_functions.runtime.function import load_entrypoint
from aiservice_functions.runtime.logs import configure_logging, logging_dict
from aiservice_functions.serving import wsgi_server


def default_host() -> str:
    """``AISVC_HOST``, else loopback: only the container image opens all interfaces."""
    return os.environ.get(contract.ENV_HOST) or "127.0.0.1"


def default_port() -> int:
    raw = os.environ.get(contract.ENV_PORT, "")
    return int(raw) if raw.isdigit() else contract.DEFAULT_PORT


def gunicorn_options(config: RuntimeConfig, host: str, port: int) -> dict[str, Any]:
    return {
        **wsgi_server.base_options(
            host=host,
            port=port,
            workers=config.workers,
            threads=config.threads_per_worker,
            timeout=int(max(30, config.timeout_seconds * 2)),
        ),
        "keepalive": 5,
        "backlog": 256,
        "logconfig_dict": logging_dict(),
        "proc_name": f"aisvc-{config.service}",
    }


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

    def factory() -> Any:
        # Runs in the worker, after the fork: the model-loading thread starts there.
        from aiservice_functions.runtime.app import create_app

        return create_app(function, config)

    wsgi_server.run(factory, options)
