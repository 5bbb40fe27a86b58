"""Replays as background jobs: started by one request, followed and cancelled by others.

A job runs in a thread of the worker that took the request; its progress, final results
and a cancel request live in the database, so any worker (or replica, on PostgreSQL)
answers for it. The running worker writes a heartbeat at least every
``HEARTBEAT_S``; a ``running`` job without one for ``STALE_S`` is reported
``interrupted`` (its worker stopped; the records it had not sent stay pending and may be
replayed again once their claim lapses).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

import httpx

from aiservice_functions.event_store.job_table import ReplayJobTable
from aiservice_functions.event_store.records import EventFilter, now_us, us_text
from aiservice_functions.event_store.replay import ReplayOptions, ReplayResult, replay
from aiservice_functions.event_store.storage import EventTable

log = logging.getLogger(__name__)

HEARTBEAT_S: Final = 1.0
STALE_S: Final = 30.0
STATES: Final = ("running", "succeeded", "failed", "cancelled", "interrupted")


class ReplayJobs:
    """Starts replay jobs of one store and renders their records as the API shows them."""

    def __init__(
        self,
        events: EventTable,
        table: ReplayJobTable,
        client: httpx.Client | None = None,
        on_finished: Callable[[int, int], None] | None = None,
    ) -> None:
        self._events = events
        self._table = table
        self._client = client
        self._on_finished = on_finished
        self._threads: dict[str, threading.Thread] = {}
        self._stops: dict[str, threading.Event] = {}

    def start(self, selection: EventFilter, options: ReplayOptions, request: dict[str, Any]) -> str:
        """Create a job for this replay and run it in the background; its id."""
        job_id = uuid.uuid4().hex
        self._table.create(job_id, json.dumps(request, sort_keys=True))
        thread = threading.Thread(
            target=self._run,
            args=(job_id, selection, options),
            name=f"replay-{job_id[:8]}",
            daemon=True,
        )
        self._threads[job_id] = thread
        self._stops[job_id] = threading.Event()
        thread.start()
        return job_id

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel running jobs after their current send (their records stay pending, as
        for a cancel) and wait for them: the store is shutting down."""
        for stop in list(self._stops.values()):
            stop.set()
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def join(self, job_id: str, timeout: float | None = None) -> None:
        """Wait for a job this app started (tests, shutdown)."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)

    def _run(self, job_id: str, selection: EventFilter, options: ReplayOptions) -> None:
        stop = self._stops[job_id]
        counts = {"selected": 0, "replayed": 0, "failed": 0}
        last = 0.0

        def beat(**final: Any) -> bool:
            """Write the progress; True when a cancel was requested."""
            return self._table.update(
                job_id,
                selected=counts["selected"],
                replayed=counts["replayed"],
                failed=counts["failed"],
                **final,
            )

        def progress(result: ReplayResult) -> None:
            nonlocal last
            counts["replayed" if result.ok else "failed"] += 1
            now = time.monotonic()
            if now - last >= HEARTBEAT_S / 4:
                last = now
                if beat():
                    stop.set()

        def claimed(count: int) -> None:
            counts["selected"] = count
            if beat():
                stop.set()

        def watch() -> None:  # heartbeat and cancel checks while sends are slow
            while not finished.wait(HEARTBEAT_S):
                try:
                    if beat():
                        stop.set()
                except Exception:  # a missed heartbeat is retried on the next beat
                    log.warning("replay job %s: heartbeat failed", job_id)

        finished = threading.Event()
        watcher = threading.Thread(target=watch, name=f"replay-watch-{job_id[:8]}", daemon=True)
        watcher.start()
        try:
            summary = replay(
                self._events,
                selection,
                options,
                client=self._client,
                progress=progress,
                stop=stop,
                claimed=claimed,
            )
        except Exception as err:
            finished.set()
            log.warning("replay job %s failed: %s", job_id, type(err).__name__)
            # A ValueError is this package's own refusal (a bad target, say) and safe to
            # show; anything else is named by type only, never its message.
            reason = str(err)[:300] if isinstance(err, ValueError) else type(err).__name__
            beat(state="failed", error=reason)
            return
        finished.set()
        watcher.join(5)
        state = "cancelled" if stop.is_set() else "succeeded"
        self._table.update(
            job_id,
            selected=summary.selected,
            replayed=summary.replayed,
            failed=summary.failed,
            cancelled=summary.cancelled,
            state=state,
            results=json.dumps([r.to_json() for r in summary.results]),
        )
        if self._on_finished is not None:
            self._on_finished(summary.replayed, summary.failed)


def job_json(row: dict[str, Any], *, with_results: bool = True) -> dict[str, Any]:
    """A job as ``GET /v1/replays/{id}`` answers it."""
    state = row["state"]
    if state == "running" and now_us() - int(row["updated_at"]) > STALE_S * 1_000_000:
        state = "interrupted"
    done = int(row["replayed"]) + int(row["failed"])
    out: dict[str, Any] = {
        "id": row["id"],
        "state": state,
        "cancelRequested": bool(row["cancel_requested"]),
        "selected": int(row["selected"]),
        "done": done,
        "replayed": int(row["replayed"]),
        "failed": int(row["failed"]),
        "cancelled": int(row["cancelled"]),
        "error": row["error"],
        "request": json.loads(row["request"]),
        "createdAt": us_text(int(row["created_at"])),
        "updatedAt": us_text(int(row["updated_at"])),
        "finishedAt": us_text(int(row["finished_at"])) if row["finished_at"] else None,
    }
    if with_results:
        out["results"] = json.loads(row["results"]) if row["results"] else None
    return out
