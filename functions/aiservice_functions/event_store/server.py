"""Serving the event store: uvicorn (httptools on uvloop) in front of :class:`.StoreApp`.

One worker process by default. On SQLite that is the right shape, not a limitation: SQLite
admits one writer at a time, and the group writer already turns every concurrent request
into one commit, so more processes would only contend for the write lock. On PostgreSQL,
``--workers`` can be raised (up to the CPUs of the pod): each worker has its own event
loop, group writer and connections; several replicas of the store work the same way.
Each worker runs its own retention and expiry threads; deletes are bounded and idempotent,
so workers retaining at once only repeat each other's no-ops.

Slow clients: headers must arrive within ``read_timeout`` (else 408) and the body within
``read_timeout`` after them (408); a pause longer than ``idle_timeout`` inside a request
closes the connection. None of it holds a thread: the loop waits.

Metrics with several workers: :mod:`aiservice_functions.serving.multiproc` makes a
directory for this server before the workers fork, so ``/metrics`` from any worker sums
all of them (:mod:`.telemetry`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask

from aiservice_functions import logs
from aiservice_functions.event_store.ingest_front import DEFAULT_QUERY_THREADS, StoreApp
from aiservice_functions.serving import asgi_server, multiproc


def serve(
    factory: Callable[[], Flask],
    host: str,
    port: int,
    workers: int = 1,
    threads: int = DEFAULT_QUERY_THREADS,
    log_format: str | None = None,
    read_timeout: float = 30.0,
    idle_timeout: float = 10.0,
) -> None:
    """Serve until stopped (SIGTERM/SIGINT: queued writes are committed, then exit).

    ``factory`` makes the Flask app in each worker, after the fork (connections and
    threads belong to one process)."""
    logs.configure_logging(log_format)

    def worker() -> None:
        app = StoreApp(factory(), read_timeout=read_timeout, query_threads=threads)
        asgi_server.serve_asgi(app, host, port, read_timeout, idle_timeout)

    # Held (bound, never listening) while the server runs: an address in use fails here.
    holder = asgi_server.bind(host, port)
    try:
        if workers <= 1:
            multiproc.drop_inherited_dir()
            worker()
            return
        made: Path = multiproc.prepare_shared_dir()
        try:
            asgi_server.Supervisor(workers, worker).run()
        finally:
            multiproc.remove_shared_dir(made)
    finally:
        holder.close()
