"""Serve a function: ``AISVC_WORKERS`` processes, each a uvicorn event loop on its own socket.

One worker process per CPU of the container's quota by default (``config``, ``cpus``):
Python runs on one core per process, torch on one thread, and a batch forms within a
worker, so N workers run N batches at once. Each worker binds its own listening socket
with ``SO_REUSEPORT``, so the kernel spreads new connections across the workers
instead of letting whichever accepts first keep them all (with a shared socket, wrk's
8 keep-alive connections were seen split 7/1). HTTP is parsed by httptools (C) on
uvloop; events are answered on the loop (``asgi``), everything else by the Flask app.
A connection must send its headers and then its body in bounded time
(``AISVC_HEADER_TIMEOUT_SECONDS``, ``AISVC_BODY_TIMEOUT_SECONDS``), and a slow one never
holds a worker: the loop serves other connections meanwhile.

With one worker the server runs in this process. With several, this process is the
supervisor: it forks the workers (each loads its own model after the fork), replaces
one that dies, forwards SIGTERM and waits for them. Prometheus multiprocess mode sums
the workers' metrics and ready markers gate readiness on every worker's model (see
``serving.multiproc``); the directory for both is made before the workers start and removed when
the server exits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aiservice_functions import contract
from aiservice_functions.logs import configure_logging
from aiservice_functions.models.uri import as_uri, check_uri
from aiservice_functions.runtime.config import RuntimeConfig
from aiservice_functions.runtime.function import Function, load_entrypoint
from aiservice_functions.serving import asgi_server, multiproc

log = logging.getLogger("aiservice_functions.runtime.server")


def default_host() -> str:
    """``AISVC_HOST``, else loopback: only the container image opens all interfaces."""
    return os.environ.get(contract.ENV_HOST) or "127.0.0.1"


def default_port() -> int:
    raw = os.environ.get(contract.ENV_PORT, "")
    return int(raw) if raw.isdigit() else contract.DEFAULT_PORT


def run_worker(function: Function, config: RuntimeConfig, host: str, port: int) -> None:
    """Serve on a socket of this process's own until SIGTERM/SIGINT (graceful)."""
    from aiservice_functions.runtime.app import create_app
    from aiservice_functions.runtime.asgi import EventApp

    app = EventApp(create_app(function, config))
    asgi_server.serve_asgi(app, host, port, config.header_timeout_seconds)


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

    ``model_uri`` may also be a local path. Call it from the main thread (it handles
    signals). It blocks and returns once every worker has stopped; a bad entrypoint,
    setting or an address in use raises ``ValueError``/``OSError`` first.
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
    # The device is resolved here, before any worker starts: `cuda` asked for where torch
    # sees none stops the server with the reason (ConfigError), not a silent CPU run.
    config = RuntimeConfig.for_function(function)
    host, port = host or default_host(), port or default_port()
    # Held (bound, never listening) while the server runs: an address in use fails
    # here, before any worker starts, and a process without SO_REUSEPORT cannot take it.
    holder = asgi_server.bind(host, port)
    log.info(
        "serving",
        extra={
            "host": host,
            "port": port,
            "workers": config.workers,
            "function": function.name,
            "device": str(config.placement.device),
            "precision": config.placement.precision,
        },
    )
    if config.workers == 1:
        multiproc.drop_inherited_dir()
        try:
            run_worker(function, config, host, port)
        finally:
            holder.close()
        return
    made: Path = multiproc.prepare_shared_dir()
    try:
        asgi_server.Supervisor(
            config.workers, lambda: run_worker(function, config, host, port)
        ).run()
    finally:
        holder.close()
        multiproc.remove_shared_dir(made)
