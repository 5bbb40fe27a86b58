"""Canary rollouts on one machine: the operator's own rollout tick, fed locally.

`rollout_tick` (the same function the operator's timer calls) decides; this module only
feeds it and applies its result, as the operator does: the canary's numbers come from
its processes' own ``/metrics`` (``aisvc_function_events_total``,
``aisvc_function_latency_seconds``) scraped at each analysis, dead letters from the local
event store's stats and model quality from its decision log (the operator's own
``read_quality``), and the new weights are compiled and routed like any other change.
The rollout state lives in memory for the run (a cluster keeps it in ``status.rollout``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aiservice_operator.core.analysis import (
    Observation,
    QualityQuery,
    Traffic,
    observation,
    p99_from_buckets,
)
from aiservice_operator.sources.canary import (
    ERROR_OUTCOMES,
    FUNCTION_EVENTS,
    FUNCTION_LATENCY_BUCKET,
    read_dead_letters,
    read_quality,
)
from aiservice_operator.sources.event_store import EventStoreClient


@dataclass(frozen=True)
class Scrape:
    """Counters of one function process: events, failed events, latency buckets."""

    events: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()
    """(upper bound in seconds, cumulative count), ascending."""

    def minus(self, earlier: Scrape) -> Scrape:
        """The increase since `earlier` (a restarted process starts again from zero)."""
        if self.events < earlier.events:
            return self
        before = dict(earlier.buckets)
        return Scrape(
            self.events - earlier.events,
            self.errors - earlier.errors,
            tuple((le, count - before.get(le, 0.0)) for le, count in self.buckets),
        )


def parse_metrics(text: str) -> Scrape:
    """The function runtime's Prometheus text exposition, summed over model versions."""
    events = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == FUNCTION_EVENTS:
                events += sample.value
                if sample.labels.get("outcome") in ERROR_OUTCOMES:
                    errors += sample.value
            elif sample.name == FUNCTION_LATENCY_BUCKET:
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return Scrape(events, errors, tuple(sorted(buckets.items())))


@dataclass
class LocalObserver:
    """The rollout's `Observer`: the canary's process metrics and the event store."""

    endpoints: Callable[[str], list[str]]
    """Revision name -> base URLs of its running processes (read when observing)."""
    event_store: EventStoreClient | None
    _last: dict[str, Scrape] = field(default_factory=dict)

    def observe(
        self,
        *,
        namespace: str,
        service: str,
        revision: str,
        model: str,
        window_seconds: float,
        now: datetime,
        canary_ready: bool,
        quality: QualityQuery | None = None,
    ) -> Observation:
        unavailable: list[str] = []
        total = Scrape()
        counts: dict[float, float] = {}
        with httpx.Client(timeout=5) as client:
            for url in self.endpoints(revision):
                try:
                    current = parse_metrics(client.get(url + "/metrics").text)
                except (httpx.HTTPError, ValueError) as err:
                    unavailable.append(f"metrics of {revision} at {url}: {err}")
                    continue
                delta = current.minus(self._last.get(url, Scrape()))
                self._last[url] = current
                total = Scrape(total.events + delta.events, total.errors + delta.errors)
                for le, count in delta.buckets:
                    counts[le] = counts.get(le, 0.0) + count
        dead = read_dead_letters(
            self.event_store,
            namespace=namespace,
            service=service,
            revision=revision,
            model=model,
            since=now - timedelta(seconds=window_seconds),
        )
        p99 = p99_from_buckets(sorted(counts.items()))
        traffic = Traffic(
            total.events,
            total.errors,
            None if p99 is None else p99 * 1000.0,
            "function",
            tuple(unavailable),
        )
        figures = read_quality(
            self.event_store,
            quality,
            namespace=namespace,
            service=service,
            model=model,
            since=now - timedelta(seconds=window_seconds),
            until=now,
        )
        return observation(
            traffic,
            dead,
            window_seconds=window_seconds,
            canary_ready=canary_ready,
            quality=figures,
        )
