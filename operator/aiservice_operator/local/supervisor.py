"""Revisions as real function-server processes on loopback ports, supervised.

One `RevisionPool` per Knative revision: it starts ``python -m aiservice_functions.runtime
serve`` with the revision template's environment (as Knative would start its container),
waits for ``/health/readiness``, hands out processes to deliveries with at most
``containerConcurrency`` events each, starts more up to ``max-scale`` when the
concurrency target is exceeded, restarts a process that died, and stops processes
after an idle period down to ``min-scale`` (0: scale to zero, started again on the next
event, like Knative's activator).

Children get ``PR_SET_PDEATHSIG``, so a killed executor never leaves servers behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiservice_functions import contract

from aiservice_operator.local.pod_env import LocalValues, MissingValue
from aiservice_operator.local.scaling import ScaleSettings, choose_process, desired_processes
from aiservice_operator.local.state_files import private_file

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 180.0
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class RevisionFailed(RuntimeError):
    """A revision's process cannot be started (bad image/entrypoint/model, crash at start)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # Ctrl-C in the terminal reaches the executor only; it stops the children


@dataclass(frozen=True)
class LaunchSpec:
    """How to run one revision locally, read from its template."""

    revision: str
    service: str
    namespace: str
    entrypoint: str
    model_uri: str
    env: Mapping[str, str]
    argv: tuple[str, ...] = ()
    """A fixed command line instead of the function runtime (for helper processes)."""
    timeout_seconds: float = 300.0
    """The revision's ``timeoutSeconds``: how long one request may take (Knative's default)."""

    @classmethod
    def from_template(
        cls, template: Mapping[str, Any], namespace: str, values: LocalValues | None = None
    ) -> LaunchSpec:
        meta = template.get("metadata") or {}
        containers = (template.get("spec") or {}).get("containers") or []
        if not containers:
            raise RevisionFailed(f"{meta.get('name')}: spec.containers is empty")
        try:
            env = (values or LocalValues()).environment(
                containers[0], namespace, str(meta.get("name", ""))
            )
        except MissingValue as err:
            raise RevisionFailed(
                f"{meta.get('name')}: {err} (give it to aisvc up with -f, see docs/local.md)"
            ) from err
        entrypoint = env.get(contract.ENV_ENTRYPOINT, "")
        if not entrypoint:
            raise RevisionFailed(f"{meta.get('name')}: no {contract.ENV_ENTRYPOINT} in the env")
        labels = meta.get("labels") or {}
        service = labels.get("serving.knative.dev/service") or env.get(
            contract.ENV_SERVICE_NAME, ""
        )
        return cls(
            revision=str(meta.get("name", "")),
            service=service,
            namespace=namespace,
            entrypoint=entrypoint,
            model_uri=env.get(contract.ENV_MODEL_URI, ""),
            env=env,
            timeout_seconds=float((template.get("spec") or {}).get("timeoutSeconds") or 300),
        )

    def command(self, port: int) -> list[str]:
        if self.argv:
            return list(self.argv)
        cmd = [sys.executable, "-m", "aiservice_functions.runtime", "serve", self.entrypoint]
        if self.model_uri:
            cmd += ["--model", self.model_uri]
        return [*cmd, "--port", str(port), "--host", "127.0.0.1"]

    def environment(self, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env[contract.ENV_PORT] = str(port)
        env[contract.ENV_K_REVISION] = self.revision
        env["K_CONFIGURATION"] = self.service
        # K_SERVICE makes the runtime bind 0.0.0.0 (pod IPs); locally only loopback is wanted.
        env.pop(contract.ENV_K_SERVICE, None)
        env.setdefault(contract.ENV_SERVICE_NAME, self.service)
        return env


@dataclass(eq=False)
class FunctionProcess:
    """One running function server."""

    spec: LaunchSpec
    port: int
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    in_flight: int = 0
    ready: bool = False
    stopping: bool = False
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, session: aiohttp.ClientSession, timeout: float) -> None:
        with open(private_file(self.log_path), "ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.spec.command(self.port),
                env=self.spec.environment(self.port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        probe = self.url + contract.PATH_READINESS
        while time.monotonic() < deadline:
            if not self.alive:
                raise RevisionFailed(
                    f"{self.spec.revision}: the function server exited with code "
                    f"{self.proc.returncode} while starting: {self.last_log_line()} "
                    f"(log: {self.log_path})"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with session.get(probe, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        self.ready = True
                        return
            await asyncio.sleep(0.05)
        await self.stop()
        raise RevisionFailed(
            f"{self.spec.revision}: not ready after {timeout:.0f}s; see {self.log_path}"
        )

    def last_log_line(self) -> str:
        """The last line the process wrote, which usually says why it failed."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    async def stop(self) -> None:
        self.stopping = True
        self.ready = False
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class RevisionPool:
    """The processes of one revision, scaled on in-flight events."""

    def __init__(
        self,
        spec: LaunchSpec,
        settings: ScaleSettings,
        session: aiohttp.ClientSession,
        log_dir: Path,
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.session = session
        self.log_dir = log_dir
        self.ready_timeout = ready_timeout
        self.processes: list[FunctionProcess] = []
        self.waiting = 0
        self.last_active = time.monotonic()
        self.restarts = 0
        self.starts = 0
        self.last_error = ""
        self._changed = asyncio.Condition()
        self._starting = 0
        self._queued = 0
        self._failures = 0

    @property
    def name(self) -> str:
        return self.spec.revision

    @property
    def in_flight(self) -> int:
        return sum(p.in_flight for p in self.processes) + self.waiting

    @property
    def ready_count(self) -> int:
        return sum(1 for p in self.processes if p.ready)

    async def start_one(self) -> FunctionProcess:
        """Start a process and wait until it is ready (raises `RevisionFailed`)."""
        self.starts += 1
        proc = FunctionProcess(
            self.spec, free_port(), self.log_dir / f"{self.spec.revision}-{self.starts}.log"
        )
        self.processes.append(proc)
        self._starting += 1
        try:
            await proc.start(self.session, self.ready_timeout)
            self._failures = 0
        except BaseException as err:
            self.processes.remove(proc)
            self.last_error = str(err)
            self._failures += 1
            await proc.stop()
            raise
        finally:
            self._starting -= 1
            async with self._changed:
                self._changed.notify_all()
        return proc

    def _spawn(self) -> None:
        self._queued += 1

        async def run() -> None:
            try:
                if self._failures:
                    backoff = RESTART_BACKOFF_S[min(self._failures, len(RESTART_BACKOFF_S)) - 1]
                    await asyncio.sleep(backoff)
            finally:
                self._queued -= 1
            with contextlib.suppress(RevisionFailed):
                await self.start_one()

        task = asyncio.get_running_loop().create_task(run())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def acquire(self) -> FunctionProcess:
        """A ready process with room for one more event; starts processes when needed."""
        self.waiting += 1
        try:
            async with self._changed:
                while True:
                    ready = [p for p in self.processes if p.ready and p.alive]
                    index = choose_process(
                        [p.in_flight for p in ready], self.settings.container_concurrency
                    )
                    if index is not None:
                        proc = ready[index]
                        proc.in_flight += 1
                        self.last_active = time.monotonic()
                        return proc
                    have = len(self.processes) + self._queued
                    want = desired_processes(self.settings, self.in_flight, have, 0.0)
                    if have < want:
                        self._spawn()
                    await self._changed.wait()
        finally:
            self.waiting -= 1

    async def release(self, proc: FunctionProcess) -> None:
        proc.in_flight -= 1
        self.last_active = time.monotonic()
        async with self._changed:
            self._changed.notify_all()

    async def reconcile(self) -> None:
        """Replace dead processes and scale down idle ones; called periodically."""
        for proc in list(self.processes):
            if proc.ready and not proc.alive and not proc.stopping:
                self.processes.remove(proc)
                self.restarts += 1
                code = proc.proc.returncode if proc.proc else None
                self.last_error = f"process on port {proc.port} exited with code {code}"
                log.warning("%s: %s; restarting", self.name, self.last_error)
        idle_for = time.monotonic() - self.last_active if self.in_flight == 0 else 0.0
        have = len(self.processes) + self._queued
        want = desired_processes(self.settings, self.in_flight, have, idle_for)
        if have < want:
            for _ in range(want - have):
                self._spawn()
        elif len(self.processes) > want:
            idle = [p for p in self.processes if p.ready and p.in_flight == 0]
            for proc in idle[: len(self.processes) - want]:
                self.processes.remove(proc)
                await proc.stop()
        async with self._changed:
            self._changed.notify_all()

    async def stop(self) -> None:
        procs, self.processes = self.processes, []
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)

    def snapshot(self) -> dict[str, Any]:
        return {
            "revision": self.name,
            "processes": [
                {
                    "port": p.port,
                    "ready": p.ready,
                    "inFlight": p.in_flight,
                    "pid": p.proc.pid if p.proc else None,
                }
                for p in self.processes
            ],
            "inFlight": self.in_flight,
            "restarts": self.restarts,
            "minScale": self.settings.min_scale,
            "maxScale": self.settings.max_scale,
            "lastError": self.last_error,
        }


_background: set[asyncio.Task[Any]] = set()
