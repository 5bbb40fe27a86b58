"""Prometheus metrics of the event store, served on ``/metrics``.

What an operator of the store watches: events ingested per kind and outcome (stored, a
redelivered duplicate, refused as not a CloudEvent or too large, or not stored because the
database was unavailable), replay results, records deleted by retention, and the latency
of the database operations behind each request, and the dead letters still waiting for
a replay per AIService (read from the database when scraped). The metrics carry counts and
timings, labelled at most with an AIService's namespace and name — no event data — so
``/metrics`` needs no token.

Each app gets its own registry (several apps in one test process do not clash). With one
gunicorn worker the in-process registry is exact. With several, the server exports
``PROMETHEUS_MULTIPROC_DIR`` (:mod:`aiservice_functions.serving.multiproc`) before the
workers start; every sample is then kept in that
directory's files and :meth:`StoreMetrics.render` sums the files of all workers, so any
worker answers ``/metrics`` for the whole pod.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from time import perf_counter
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aiservice_functions.serving import multiproc

log = logging.getLogger(__name__)

OUTCOMES: Final = ("stored", "duplicate", "refused", "unavailable", "overloaded")
OPERATIONS: Final = ("add", "page", "get", "stats", "ping")
MAX_DEAD_LETTER_SERIES: Final = 1000
"""Distinct (namespace, AIService, revision, code) children of the dead-letter counter;
the labels come from what senders post, so past this many the rest count under `other`."""
OTHER: Final = "other"
REPLAY_OUTCOMES: Final = ("replayed", "partial", "failed", "empty")
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


PendingReader = Callable[[], Iterable[tuple[str, str, int]]]
"""(namespace, AIService, dead letters not replayed) for every AIService that has any."""
Reader = Callable[[], Iterable[tuple[Sequence[str], float]]]
"""(label values, value) for each series of one gauge."""


class DatabaseGauge(Collector):
    """A gauge read from the database at each scrape: a count kept in memory would be
    wrong for every other worker and after a restart."""

    def __init__(self, name: str, documentation: str, labels: list[str], read: Reader) -> None:
        self._name, self._doc, self._labels, self._read = name, documentation, labels, read

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        try:
            rows = list(self._read())
        except Exception:  # an unreadable database must not fail the whole scrape
            log.warning("%s not readable for /metrics", self._name, exc_info=True)
            return
        for labels, value in rows:
            family.add_metric(list(labels), value)
        yield family


class StoreMetrics:
    """The store's metric families and the cheap calls the request path makes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, pending: PendingReader | None = None) -> None:
        self.shared_dir = multiproc.use_shared_values()
        self._gauges = CollectorRegistry()
        if pending is not None:
            self.database_gauge(
                "aisvc_event_store_dead_letters_pending",
                "Dead letters stored and not replayed yet, per AIService.",
                ["namespace", "aiservice"],
                lambda: (((ns, name), count) for ns, name, count in pending()),
            )
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingested = Counter(
            "aisvc_event_store_ingested",
            "Events received for ingest by kind (dead-letter, audit) and outcome: stored, "
            "duplicate (a redelivery, stored once), refused (not a CloudEvent, too large), "
            "unavailable (the database did not answer; the sender retries), overloaded "
            "(the write queue was full: answered 429, the sender retries).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.replayed = Counter(
            "aisvc_event_store_replayed",
            "Dead letters re-sent by replay, by result: replayed (the target answered 2xx) "
            "or failed.",
            ["result"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "aisvc_event_store_dead_letters",
            "Dead letters stored (redeliveries not counted again) per AIService, the revision "
            "that failed them (none: not known) and the HTTP code of the failed delivery "
            f"(none: not sent). At most {MAX_DEAD_LETTER_SERIES} series; more count as other.",
            ["namespace", "aiservice", "revision", "code"],
            registry=self.registry,
        )
        self.replay_jobs = Counter(
            "aisvc_event_store_replay_jobs",
            "Replay requests by outcome: replayed (every selected letter), partial (some "
            "failed), failed (all failed), empty (nothing selected).",
            ["outcome"],
            registry=self.registry,
        )
        self._dead_letter_keys: set[tuple[str, str, str, str]] = set()
        self.retention_deleted = Counter(
            "aisvc_event_store_retention_deleted",
            "Records deleted by retention, by the limit that deleted them (max_age, max_count).",
            ["limit"],
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "aisvc_event_store_store_duration_seconds",
            "Latency of the database operation behind a request: add (ingest: from the "
            "record queued for the group writer to its commit; grows when the database "
            "falls behind), "
            "page (list), get, stats, ping (readiness).",
            ["operation"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.decision_lag = Histogram(
            "aisvc_event_store_decision_lag_seconds",
            "Decision log: time from an event's own `time` to it being stored (ingest lag).",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
            registry=self.registry,
        )
        self.group_size = Histogram(
            "aisvc_event_store_commit_group_records",
            "Ingest records committed together in one transaction (group commit).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "aisvc_event_store_commit_seconds",
            "Time to write and commit one group of ingest records.",
            buckets=BUCKETS,
            registry=self.registry,
        )
        # Children made once: `labels()` takes a lock and builds a key on every call.
        self._timers = {op: self.store_seconds.labels(op) for op in OPERATIONS}
        for kind in ("dead-letter", "audit"):
            for outcome in OUTCOMES:
                self.ingested.labels(kind, outcome)
        for result in ("replayed", "failed"):
            self.replayed.labels(result)
        for outcome in REPLAY_OUTCOMES:
            self.replay_jobs.labels(outcome)
        for limit in ("max_age", "max_count"):
            self.retention_deleted.labels(limit)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Serve the writer's queue depth, read at each scrape (per process: with several
        workers a scrape of the pod shows the one that answers)."""
        self.database_gauge(
            "aisvc_event_store_ingest_queue_depth",
            "Ingest records waiting for the group writer; at the bound, ingest answers 429.",
            [],
            lambda: [((), float(depth()))],
        )

    def group(self, records: int, commit_s: float, waits: Sequence[float]) -> None:
        """One committed group: its size, its commit time and each record's wait."""
        self.group_size.observe(records)
        self.commit_seconds.observe(commit_s)
        add = self._timers["add"]
        for wait in waits:
            add.observe(wait)

    def ingest(self, kind: str, outcome: str) -> None:
        self.ingested.labels(kind, outcome).inc()

    def decision(self, role: str, outcome: str, lag_s: float | None) -> None:
        """One decision-log ingest: kind `decision-<role>`, outcome stored, duplicate,
        unsampled or refused; the lag when the event carried a `time`."""
        self.ingested.labels(f"decision-{role}", outcome).inc()
        if lag_s is not None and lag_s >= 0:
            self.decision_lag.observe(lag_s)

    @contextmanager
    def timed(self, operation: str) -> Iterator[None]:
        """Observe how long the block (one database operation) took, failed or not."""
        started = perf_counter()
        try:
            yield
        finally:
            self._timers[operation].observe(perf_counter() - started)

    def dead_letter(
        self, namespace: str, name: str, revision: str | None, code: int | None
    ) -> None:
        """Count one newly stored dead letter."""
        key = (namespace, name, revision or "none", str(code) if code is not None else "none")
        if key not in self._dead_letter_keys:
            if len(self._dead_letter_keys) >= MAX_DEAD_LETTER_SERIES:
                key = (OTHER, OTHER, OTHER, OTHER)
            self._dead_letter_keys.add(key)
        self.dead_letters.labels(*key).inc()

    def replay(self, replayed: int, failed: int) -> None:
        """Count one replay request and the letters it re-sent."""
        if replayed:
            self.replayed.labels("replayed").inc(replayed)
        if failed:
            self.replayed.labels("failed").inc(failed)
        if not replayed and not failed:
            outcome = "empty"
        else:
            outcome = "failed" if not replayed else "partial" if failed else "replayed"
        self.replay_jobs.labels(outcome).inc()

    def retention(self) -> Callable[[str, int], None]:
        """The callback retention reports its deletions to: (limit, count)."""

        def deleted(limit: str, count: int) -> None:
            if count:
                self.retention_deleted.labels(limit).inc(count)

        return deleted

    def database_gauge(
        self, name: str, documentation: str, labels: list[str], read: Reader
    ) -> None:
        """Serve a gauge that ``read`` computes from the database at each scrape."""
        self._gauges.register(DatabaseGauge(name, documentation, labels, read))

    def render(self) -> bytes:
        """The exposition text: this process's registry, or the sum over all workers; then
        the gauges read from the database, the same whichever worker answers."""
        return multiproc.render(self.registry, self.shared_dir) + generate_latest(self._gauges)
