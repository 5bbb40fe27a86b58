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

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from pathlib import Path

from aiservice_functions import contract
from aiservice_functions.logs import configure_logging
from aiservice_functions.models.uri import as_uri, check_uri
from aiservice_functions.runtime.config import RuntimeConfig
from aiservice_functions.runtime.function import Function, load_entrypoint
from aiservice_functions.serving import multiproc

GRACEFUL_TIMEOUT_S = 20
KEEP_ALIVE_S = 5
BACKLOG = 256
RESPAWN_DELAY_S = 1.0
"""A worker that died is replaced at most this often, so a crash on start cannot spin."""
_STOP = (signal.SIGTERM, signal.SIGINT)
_WATCHED = {signal.SIGCHLD, *_STOP}

log = logging.getLogger("aiservice_functions.runtime.server")


def default_host() -> str:
    """``AISVC_HOST``, else loopback: only the container image opens all interfaces."""
    return os.environ.get(contract.ENV_HOST) or "127.0.0.1"


def default_port() -> int:
    raw = os.environ.get(contract.ENV_PORT, "")
    return int(raw) if raw.isdigit() else contract.DEFAULT_PORT


def bind(host: str, port: int) -> socket.socket:
    """A socket bound with ``SO_REUSEPORT``: each worker binds one of its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_worker(function: Function, config: RuntimeConfig, host: str, port: int) -> None:
    """Serve on a socket of this process's own until SIGTERM/SIGINT (graceful)."""
    import uvicorn

    from aiservice_functions.runtime.app import create_app
    from aiservice_functions.runtime.asgi import EventApp
    from aiservice_functions.runtime.protocol import bounded_protocol

    sock = bind(host, port)
    sock.listen(BACKLOG)
    app = EventApp(create_app(function, config))
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        loop = "asyncio"
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=bounded_protocol(config.header_timeout_seconds),
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
    """Forks ``count`` workers, replaces dead ones, stops them all on SIGTERM/SIGINT."""

    def __init__(
        self, count: int, function: Function, config: RuntimeConfig, host: str, port: int
    ) -> None:
        self.count = count
        self.function, self.config, self.host, self.port = function, config, host, port
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
                run_worker(self.function, self.config, self.host, self.port)
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
    holder = bind(host, port)
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
        Supervisor(config.workers, function, config, host, port).run()
    finally:
        holder.close()
        multiproc.remove_shared_dir(made)
