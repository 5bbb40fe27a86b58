"""The real Kopf operator (aiservice_operator.cluster.handlers) in its own thread and event loop.

Kopf runs with its own loop because its hung-task reaper would cancel a pytest-asyncio
fixture's teardown; a thread with `asyncio.run(kopf.operator(...))` starts in ~0.1 s and
stops in a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import aiservice_operator.cluster.handlers  # noqa: F401  (registers the handlers)
import kopf
from aiservice_operator.cluster.config import Config
from aiservice_operator.cluster.memo import OperatorMemo


class OperatorThread:
    def __init__(self, kube_url: str, config: Config | None = None) -> None:
        base = config or Config(retry_delay=0.3, watch_timeout=60)
        self.config = replace(base, kube_server=kube_url)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kopf-operator", daemon=True)
        self.error: BaseException | None = None
        self.memo = OperatorMemo(self.config)
        """The operator's memo: what it keeps in memory (e.g. per-AIService locks)."""

    def __enter__(self) -> OperatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError(f"the operator did not become ready: {self.error!r}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        if self._thread.is_alive():
            raise RuntimeError("the operator did not stop")

    def _run(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    clusterwide=True,
                    standalone=True,
                    memo=self.memo,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                )
            )
        except BaseException as err:
            self.error = err
            self._ready.set()
