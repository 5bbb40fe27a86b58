"""One event store process's state: its database, a repository per table, and the
background work that runs beside the requests (the group writer, retention, decision
expiry, replay jobs), started and stopped together.

The HTTP layers (:mod:`.app` for the query API and console, :mod:`.ingest_front` for
ingest) hold an :class:`EventStore` and never reach past it: tests and servers build one,
``start()`` it (creating an app does), and ``close()`` it when done.
"""

from __future__ import annotations

import logging
from typing import Final

import httpx

from aiservice_functions.event_store.database import Database
from aiservice_functions.event_store.decisions import DecisionLog
from aiservice_functions.event_store.job_table import ReplayJobTable
from aiservice_functions.event_store.jobs import ReplayJobs
from aiservice_functions.event_store.records import EventFilter
from aiservice_functions.event_store.retention import (
    EXPIRE_EVERY_S,
    ExpiryThread,
    RetentionPolicy,
    RetentionThread,
)
from aiservice_functions.event_store.storage import EventTable
from aiservice_functions.event_store.telemetry import StoreMetrics
from aiservice_functions.event_store.writer import (
    DEFAULT_MAX_GROUP,
    DEFAULT_MAX_PENDING,
    GroupWriter,
)

log = logging.getLogger(__name__)

WRITE_TIMEOUT_S: Final = 30.0
"""How long an ingest request waits for its group's commit before answering 503 (the
sender retries; the record, if it was committed after all, is then a redelivery)."""


class EventStore:
    """The database at ``url`` and everything that works on it in this process."""

    def __init__(
        self,
        url: str,
        *,
        retention: RetentionPolicy | None = None,
        http_client: httpx.Client | None = None,
        max_group: int = DEFAULT_MAX_GROUP,
        max_pending: int = DEFAULT_MAX_PENDING,
        expire_every_s: float = EXPIRE_EVERY_S,
    ) -> None:
        self.db = Database(url)
        self.events = EventTable(self.db)
        self.jobs = ReplayJobTable(self.db)
        self.decisions = DecisionLog(self.db)
        self.metrics = StoreMetrics(pending=self._pending)
        self.writer = GroupWriter(
            self.db, max_group=max_group, max_pending=max_pending, on_group=self.metrics.group
        )
        self.metrics.watch_queue(lambda: self.writer.depth)
        self.replays = ReplayJobs(
            self.events, self.jobs, http_client, on_finished=self.metrics.replay
        )
        self.http_client = http_client
        self.retention_policy = retention or RetentionPolicy()
        self.retention: RetentionThread | None = None
        self._expiry = ExpiryThread(self.decisions, expire_every_s)
        self._started = False

    @property
    def backend(self) -> str:
        return self.db.backend

    @property
    def url(self) -> str:
        return self.db.url

    def namespaces(self) -> set[str]:
        """Every namespace with records: what a caller's readable namespaces are asked among."""
        return self.events.namespaces(EventFilter()) | self.decisions.namespaces()

    def _pending(self) -> list[tuple[str, str, int]]:
        services, _ = self.events.stats(EventFilter(kind="dead-letter"))
        return [(c.namespace, c.name, c.unreplayed) for c in services]

    def start(self) -> EventStore:
        """Start the background work (idempotent)."""
        if self._started:
            return self
        self._started = True
        self.writer.start()
        if self.retention_policy.active:
            self.retention = RetentionThread(
                self.events, self.retention_policy, on_deleted=self.metrics.retention()
            ).start()
        self._expiry.start()
        return self

    def stop(self) -> None:
        """Stop the background work: queued writes are committed first, running replay
        jobs are cancelled after their current send (their records stay pending)."""
        self.writer.stop()
        if self.retention is not None:
            self.retention.stop()
        self._expiry.stop()
        self.replays.stop()

    def close(self) -> None:
        """Stop, then close every database connection."""
        self.stop()
        self.db.close()


def open_store(
    url: str,
    *,
    retention: RetentionPolicy | None = None,
    http_client: httpx.Client | None = None,
) -> EventStore:
    """Open (and create the schema of) the store at ``sqlite:///path`` or ``postgresql://``.
    Not started: creating an app starts it."""
    return EventStore(url, retention=retention, http_client=http_client)
