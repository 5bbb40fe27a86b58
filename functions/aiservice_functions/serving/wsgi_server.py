"""gunicorn with threaded workers (``gthread``), as both servers run it.

:func:`run` blocks until the server stops (SIGTERM: graceful). With more than one worker
it makes the directory the workers share (:mod:`.multiproc`) before they fork, forgets a
worker's live state when gunicorn reaps it, and removes the directory when the master
exits; with one worker, metrics stay in memory and an inherited directory is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from aiservice_functions.serving import multiproc

__all__ = ["GRACEFUL_TIMEOUT_S", "base_options", "run"]

GRACEFUL_TIMEOUT_S = 20


class _Application(BaseApplication):
    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in the worker, after the fork: threads the app starts belong to it.
        return self._factory()


def _child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the master: a worker is gone, forget its live state."""
    shared = multiproc.shared_dir()
    if shared is not None:
        multiproc.mark_dead(shared, worker.pid)


def base_options(
    *, host: str, port: int, workers: int, threads: int, timeout: int
) -> dict[str, Any]:
    """The options both servers share; each adds its own (logging, names)."""
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "child_exit": _child_exit,
        # gthread heartbeats from its main loop, so a long request does not trip this;
        # it only catches a wedged worker.
        "timeout": timeout,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "accesslog": None,
        "preload_app": False,
        # gunicorn >= 25 opens a control socket under $HOME by default; several servers
        # on one machine would clash, and a read-only container home has no room.
        "control_socket_disable": True,
    }
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def run(factory: Callable[[], Any], options: dict[str, Any]) -> None:
    """Serve the WSGI app ``factory()`` builds (in each worker) until stopped.

    Call it from the main thread (gunicorn installs signal handlers). It ends by raising
    ``SystemExit`` with gunicorn's exit status."""
    made: Path | None = None
    if int(options.get("workers", 1)) > 1:
        made = multiproc.prepare_shared_dir()
    else:
        multiproc.drop_inherited_dir()
    master = os.getpid()
    try:
        _Application(factory, options).run()
    finally:
        # A worker leaves through here too (gunicorn ends it with SystemExit after the
        # fork); only the master removes the directory the others still use.
        if made is not None and os.getpid() == master:
            multiproc.remove_shared_dir(made)
