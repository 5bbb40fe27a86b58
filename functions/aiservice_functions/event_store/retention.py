"""Retention: a maximum age, and a maximum count per AIService, enforced in the background.

A daemon thread wakes every ``interval`` seconds and deletes in batches of ``batch``
records, each batch its own short transaction with a pause after it, so ingest is never
blocked behind one long delete (on SQLite a writer holds the only write lock). The count
limit applies to each AIService's dead letters and its audit events separately; the oldest
go first. Un-replayed dead letters are not spared: size the limits for that.

The decision log keeps its own clock: each record expires at ``received_at`` + its
AIService's retention (``spec.decisionLog.retention``), and :class:`ExpiryThread`
deletes expired ones in short batches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiservice_functions.event_store.database import StoreUnavailable
from aiservice_functions.event_store.decisions import DecisionLog
from aiservice_functions.event_store.records import now_us
from aiservice_functions.event_store.storage import EventTable

log = logging.getLogger(__name__)

EXPIRE_EVERY_S: Final = 60.0


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_s: float | None = None
    max_count: int | None = None
    """Per AIService and kind (dead letters, audit events)."""
    interval_s: float = 60.0
    batch: int = 500
    pause_s: float = 0.05
    """Pause between two delete batches: lets waiting writers in."""

    @property
    def active(self) -> bool:
        return self.max_age_s is not None or self.max_count is not None


Deleted = Callable[[str, int], None]
"""Told of each batch deleted: (the limit, ``max_age`` or ``max_count``; how many)."""


def enforce(
    events: EventTable,
    policy: RetentionPolicy,
    stop: threading.Event | None = None,
    on_deleted: Deleted | None = None,
) -> int:
    """One full pass; returns how many records were deleted."""
    stop = stop or threading.Event()
    report = on_deleted or (lambda limit, n: None)
    deleted = 0
    if policy.max_age_s is not None:
        cutoff = now_us() - int(policy.max_age_s * 1_000_000)
        while not stop.is_set():
            n = events.delete_older_than(cutoff, policy.batch)
            report("max_age", n)
            deleted += n
            if n < policy.batch:
                break
            stop.wait(policy.pause_s)
    if policy.max_count is not None:
        for namespace, name, kind in events.over_count(policy.max_count):
            while not stop.is_set():
                n = events.delete_beyond_count(
                    namespace, name, kind, policy.max_count, policy.batch
                )
                report("max_count", n)
                deleted += n
                if n < policy.batch:
                    break
                stop.wait(policy.pause_s)
    return deleted


class RetentionThread:
    """Runs :func:`enforce` every ``policy.interval_s`` until :meth:`stop`."""

    def __init__(
        self, events: EventTable, policy: RetentionPolicy, on_deleted: Deleted | None = None
    ) -> None:
        self.events = events
        self.policy = policy
        self.on_deleted = on_deleted
        self._stop = threading.Event()
        self.passes = 0
        self.deleted = 0
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> RetentionThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = enforce(self.events, self.policy, self._stop, self.on_deleted)
                self.deleted += n
                if n:
                    log.info("retention: deleted %d records", n)
            except Exception as err:  # keep running: the next pass may succeed
                log.warning("retention pass failed: %s", type(err).__name__)
            self.passes += 1
            self._stop.wait(self.policy.interval_s)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class ExpiryThread:
    """Deletes expired decision records every ``interval`` seconds, in short batches."""

    def __init__(self, decisions: DecisionLog, interval: float = EXPIRE_EVERY_S) -> None:
        self.decisions = decisions
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-expiry", daemon=True)

    def start(self) -> ExpiryThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                while self.decisions.expire(now_us()) >= 500 and not self._stop.is_set():
                    self._stop.wait(0.05)
            except StoreUnavailable as err:
                log.warning("decision expiry skipped: %s", err)
