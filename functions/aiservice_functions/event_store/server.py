"""Serving the event store: gunicorn with threaded workers (``gthread``, buffering each
request first so slow clients hold no thread: :mod:`.slow_clients`).

One worker process by default, with several threads. On SQLite that is the right shape,
not a limitation: SQLite admits one writer at a time, so more processes would only add
lock contention, while threads overlap the fsync of one commit with the parsing of the
next request. On PostgreSQL, ``--workers`` can be raised. Each worker opens its own
connections (after the fork) and runs its own retention thread; deletes are bounded and
idempotent, so workers retaining at once only repeat each other's no-ops.

Metrics with several workers: ``PROMETHEUS_MULTIPROC_DIR`` (the one given, e.g. an
emptyDir, else a temporary directory) is emptied and exported before the workers fork, so
``/metrics`` from any worker sums all of them (:mod:`.telemetry`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from aiservice_functions import logs
from aiservice_functions.event_store import telemetry
from aiservice_functions.event_store.slow_clients import BufferingThreadWorker


class _Gunicorn(BaseApplication):
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._factory()


def serve(
    factory: Callable[[], Flask],
    host: str,
    port: int,
    workers: int = 1,
    threads: int = 8,
    timeout: int = 120,
    log_format: str | None = None,
    read_timeout: float = 30.0,
    idle_timeout: float = 10.0,
) -> None:
    """Run gunicorn in this process until it is stopped (SIGTERM: graceful).

    Requests are buffered before a thread takes them, within ``read_timeout`` seconds and
    with pauses of at most ``idle_timeout`` (:mod:`.slow_clients`)."""
    BufferingThreadWorker.read_timeout = read_timeout  # inherited by the forked workers
    BufferingThreadWorker.idle_timeout = idle_timeout
    config = logs.logging_dict(log_format)
    logs.configure_logging(log_format)
    hooks: dict[str, Any] = {}
    if workers > 1 or telemetry.shared_dir() is not None:
        telemetry.prepare_shared_dir(lambda: tempfile.mkdtemp(prefix="aisvc-event-store-"))
        hooks["child_exit"] = lambda _server, worker: telemetry.mark_dead(worker.pid)
    _Gunicorn(
        factory,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": f"{BufferingThreadWorker.__module__}.BufferingThreadWorker",
            "threads": threads,
            "timeout": timeout,
            "graceful_timeout": 20,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "logconfig_dict": config,
            "preload_app": False,
            # gunicorn >= 25 opens a control socket under $HOME by default; several stores
            # on one machine would clash, and a read-only container home has no room.
            "control_socket_disable": True,
            **hooks,
        },
    ).run()
