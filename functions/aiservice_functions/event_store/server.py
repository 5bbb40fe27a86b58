"""Serving the event store: gunicorn with threaded workers (``gthread``, buffering each
request first so slow clients hold no thread: :mod:`.slow_clients`).

One worker process by default, with several threads. On SQLite that is the right shape,
not a limitation: SQLite admits one writer at a time, so more processes would only add
lock contention, while threads overlap the fsync of one commit with the parsing of the
next request. On PostgreSQL, ``--workers`` can be raised. Each worker opens its own
connections (after the fork) and runs its own retention thread; deletes are bounded and
idempotent, so workers retaining at once only repeat each other's no-ops.

Metrics with several workers: :mod:`aiservice_functions.serving` makes a directory for
this server under the temp dir before the workers fork, so ``/metrics`` from any worker
sums all of them (:mod:`.telemetry`).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from aiservice_functions import logs
from aiservice_functions.event_store.slow_clients import BufferingThreadWorker
from aiservice_functions.serving import wsgi_server


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
    options = wsgi_server.base_options(
        host=host, port=port, workers=workers, threads=threads, timeout=timeout
    )
    wsgi_server.run(
        factory,
        {
            **options,
            "worker_class": f"{BufferingThreadWorker.__module__}.BufferingThreadWorker",
            "errorlog": "-",
            "loglevel": "info",
            "logconfig_dict": config,
        },
    )
