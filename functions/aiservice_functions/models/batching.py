"""Micro-batching: concurrent events share one forward pass.

Request threads enqueue single items and wait on a future; one dedicated inference
thread owns torch, takes the first waiting item, gathers more until ``max_size`` or
``max_wait`` has passed, and runs them as one batch. Keeping every forward pass on
that one thread avoids the GIL stalls seen when batches were handed between threads.
With ``max_wait`` 0 it still batches whatever is already queued, never waiting.

If a batch fails, its items are retried one by one so a single poisonous event
fails alone instead of taking its batch mates down with it; a :class:`BatchFailure`
(the device ran out of memory) fails the whole batch at once instead.

``keep_busy`` (on for GPU placement): when the previous batch left items waiting, they
run at once instead of waiting up to ``max_wait`` for more. They queued while the device
was busy, so waiting longer would only leave it idle; on a CPU the wait instead lets a
fuller batch form.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from aiservice_functions.models.torch_setup import inference_context

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class BatchFailure(Exception):
    """Raised by ``infer`` when the batch failed as a whole, not because of one of its items
    (the device ran out of memory): retrying its items one by one would only repeat it."""


class BatchResultError(RuntimeError):
    """``infer`` returned a number of outputs different from its inputs."""


def run_batch(infer: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T]) -> list[R]:
    """Run ``infer`` under inference mode and check it answers once per item."""
    with inference_context():
        outputs = list(infer(items))
    if len(outputs) != len(items):
        raise BatchResultError(f"infer returned {len(outputs)} outputs for {len(items)} inputs")
    return outputs


class MicroBatcher(Generic[T, R]):
    """Group submitted items into batches run by one inference thread."""

    def __init__(
        self,
        infer: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        thread_setup: Callable[[], None] | None = None,
        name: str = "inference",
        keep_busy: bool = False,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max batch size must be at least 1, got {max_size}")
        if max_wait_s < 0:
            raise ValueError(f"max batch wait must not be negative, got {max_wait_s}")
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.keep_busy = keep_busy
        self._infer = infer
        self._on_batch = on_batch
        self._thread_setup = thread_setup
        self._queue: queue.SimpleQueue[tuple[T, Future[R]] | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        if self._closed.is_set():
            raise RuntimeError("the batcher is closed")
        future: Future[R] = Future()
        self._queue.put((item, future))
        return future

    def pending(self) -> int:
        """Items waiting for a batch (approximate; for tests and diagnostics)."""
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _gather(
        self, first: tuple[T, Future[R]], backlog: bool = False
    ) -> tuple[list[tuple[T, Future[R]]], bool]:
        """``backlog``: ``first`` was already waiting when the last batch ended."""
        batch = [first]
        wait = 0.0 if backlog and self.keep_busy else self.max_wait_s
        deadline = time.monotonic() + wait
        while len(batch) < self.max_size:
            remaining = deadline - time.monotonic()
            try:
                entry = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if entry is None:
                return batch, True
            batch.append(entry)
        return batch, False

    def _run(self) -> None:
        if self._thread_setup is not None:
            self._thread_setup()
        stop = False
        while not stop:
            try:
                first, backlog = self._queue.get_nowait(), True
            except queue.Empty:
                first, backlog = self._queue.get(), False
            if first is None:
                break
            batch, stop = self._gather(first, backlog)
            # A future cancelled by its caller (timed out) still costs nothing extra here.
            live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            if self._on_batch is not None:
                self._on_batch(len(live))
            self._execute(live)

    def _execute(self, live: list[tuple[T, Future[R]]]) -> None:
        try:
            outputs = run_batch(self._infer, [item for item, _ in live])
        except BatchFailure as err:
            log.warning("batch of %d failed as a whole: %s", len(live), err)
            for _, fut in live:
                fut.set_exception(err)
            return
        except BaseException as err:
            if len(live) == 1:
                live[0][1].set_exception(err)
                return
            log.warning("batch of %d failed (%s); retrying its items one by one", len(live), err)
            for entry in live:
                self._execute_one(*entry)
            return
        for (_, fut), output in zip(live, outputs, strict=True):
            fut.set_result(output)

    def _execute_one(self, item: T, fut: Future[R]) -> None:
        try:
            fut.set_result(run_batch(self._infer, [item])[0])
        except BaseException as err:
            fut.set_exception(err)


class InlineRunner(Generic[T, R]):
    """No batching: each request thread runs its own single-item forward pass."""

    max_size = 1
    max_wait_s = 0.0

    def __init__(
        self,
        infer: Callable[[Sequence[T]], Sequence[R]],
        *,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._infer = infer
        self._on_batch = on_batch

    def run(self, item: T) -> R:
        if self._on_batch is not None:
            self._on_batch(1)
        return run_batch(self._infer, [item])[0]


def describe(runner: Any) -> dict[str, Any]:
    """Batching settings as logged at start."""
    return {
        "batch_max_size": runner.max_size,
        "batch_max_wait_ms": runner.max_wait_s * 1000,
        "batch_keep_busy": getattr(runner, "keep_busy", False),
    }
