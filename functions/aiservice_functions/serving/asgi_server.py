"""Serving an ASGI app with uvicorn, in one process or as a supervisor of several.

Both servers of the functions side use it: the function runtime and the event store's
ingest front. HTTP is parsed by httptools (C) on uvloop, with a bounded header read time
(:mod:`.http_protocol`). Each worker binds its own listening socket with
``SO_REUSEPORT``, so the kernel spreads new connections across the workers instead of
letting whichever accepts first keep them all (with a shared socket, wrk's 8 keep-alive
connections were seen split 7/1). With several workers this process is the supervisor:
it forks them, replaces one that dies, forwards SIGTERM and waits for them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from aiservice_functions.serving import multiproc
from aiservice_functions.serving.http_protocol import bounded_protocol

GRACEFUL_TIMEOUT_S = 20
KEEP_ALIVE_S = 5
BACKLOG = 256
RESPAWN_DELAY_S = 1.0
"""A worker that died is replaced at most this often, so a crash on start cannot spin."""
_STOP = (signal.SIGTERM, signal.SIGINT)
_WATCHED = {signal.SIGCHLD, *_STOP}

log = logging.getLogger("aiservice_functions.serving")


def request_headers(scope: Any) -> dict[str, str]:
    """An ASGI request's headers, names lower-cased, values latin-1 as a WSGI server gives
    them (repeated ones joined with commas)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def bind(host: str, port: int) -> socket.socket:
    """A socket bound with ``SO_REUSEPORT``: each worker binds one of its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve_asgi(
    app: Any, host: str, port: int, header_timeout: float, idle_timeout: float | None = None
) -> None:
    """Serve ``app`` on a socket of this process's own until SIGTERM/SIGINT (graceful)."""
    import uvicorn

    sock = bind(host, port)
    sock.listen(BACKLOG)
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        loop = "asyncio"
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=bounded_protocol(header_timeout, idle_timeout),
            loop=loop,
            ws="none",
            lifespan="on",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
            backlog=BACKLOG,
        )
    )
    # uvicorn re-raises the stop signal once it has shut down: let that end quietly.
    for sig in _STOP:
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to this worker if the supervisor dies (even -9)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


class Supervisor:
    """Forks ``count`` workers, each running ``worker`` (which serves until SIGTERM),
    replaces dead ones, stops them all on SIGTERM/SIGINT."""

    def __init__(self, count: int, worker: Callable[[], None]) -> None:
        self.count = count
        self.worker = worker
        self.children: dict[int, float] = {}
        """pid -> start time"""
        self._last_spawn = 0.0

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
                for sig in _WATCHED:
                    signal.signal(sig, signal.SIG_DFL)
                _die_with_parent()
                self.worker()
                code = 0
            except BaseException:
                log.exception("worker failed")
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = time.monotonic()
        self._last_spawn = time.monotonic()
        log.info("worker started", extra={"pid": pid})

    def _reap(self) -> None:
        shared = multiproc.shared_dir()
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            if self.children.pop(pid, None) is None:
                continue
            if shared is not None:
                multiproc.mark_dead(shared, pid)
            log.info(
                "worker exited",
                extra={"pid": pid, "exit_status": os.waitstatus_to_exitcode(status)},
            )

    def run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
        try:
            for _ in range(self.count):
                self._spawn()
            while True:
                info = signal.sigtimedwait(_WATCHED, 1.0)
                self._reap()
                if info is not None and info.si_signo in _STOP:
                    break
                due = time.monotonic() - self._last_spawn >= RESPAWN_DELAY_S
                if len(self.children) < self.count and due:
                    self._spawn()
            self._stop()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)

    def _stop(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_TIMEOUT_S + 5
        while self.children and time.monotonic() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, 0.2)
            self._reap()
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap()
