"""Serving the event store: gunicorn with threaded workers (``gthread``).

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

import logging
from collections.abc import Callable

from flask import Flask

from aiservice_functions.serving import wsgi_server


def serve(
    factory: Callable[[], Flask],
    host: str,
    port: int,
    workers: int = 1,
    threads: int = 8,
    timeout: int = 120,
) -> None:
    """Run gunicorn in this process until it is stopped (SIGTERM: graceful)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = wsgi_server.base_options(
        host=host, port=port, workers=workers, threads=threads, timeout=timeout
    )
    wsgi_server.run(factory, {**options, "errorlog": "-", "loglevel": "info"})
