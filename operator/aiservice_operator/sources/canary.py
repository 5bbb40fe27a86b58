"""Canary analysis sources: the Prometheus HTTP API and the event store's dead-letter counts.

Per canary revision and per analysis interval, the rollout needs: how many events it
served, how many failed, its p99 latency, and how many of its events were dead-lettered.

- Prometheus, first over Knative's queue-proxy series (`revision_app_request_count` with
  `response_code_class`, `revision_app_request_latencies_bucket` in milliseconds, both
  labelled `namespace_name` / `revision_name`); where the queue-proxy series are absent
  (no series at all, e.g. a Prometheus that scrapes only the functions), over the
  functions' own series (`aisvc_function_events_total{outcome}`,
  `aisvc_function_latency_seconds`), which the scrape configuration is expected to label
  with the same `namespace_name` / `revision_name` (relabelled from the pod's
  `serving.knative.dev/revision` label and namespace).
- The event store (`sources.event_store`): `GET /v1/stats?namespace=&name=&since=`
  counts dead letters per revision; those of the canary are the ones attributed to its
  revision name, its model tag or the `canary` tag. When the rollout has quality checks,
  `GET .../quality` gives the decision log's figures (`read_quality`, shared with the
  local run's observer).

Every query is a template with `{namespace}`, `{service}`, `{revision}`, `{model}` and
`{interval}` placeholders (plain text substitution, so PromQL's own braces need no
escaping); the defaults are in `Queries`. A source that cannot be read makes the
observation `unavailable` with the reason, which pauses the rollout: it never promotes on
missing data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

import httpx

from aiservice_operator.core.analysis import (
    NO_EVENT_STORE,
    Observation,
    Quality,
    QualityQuery,
    SourceUnavailable,
    Traffic,
    observation,
)
from aiservice_operator.sources.event_store import EventStoreClient

_QP = 'namespace_name="{namespace}",revision_name="{revision}"'

FUNCTION_EVENTS = "aisvc_function_events_total"
"""The function runtime's event counter, labelled with `outcome`."""
FUNCTION_LATENCY_BUCKET = "aisvc_function_latency_seconds_bucket"
"""The function runtime's latency histogram buckets (seconds)."""
ERROR_OUTCOMES = ("error", "timeout")
"""`outcome` values of events that count as errors of the canary."""


@dataclass(frozen=True)
class Queries:
    """PromQL templates; each must yield one number (an empty result means "no data")."""

    requests: str = f"sum(increase(revision_app_request_count{{{_QP}}}[{{interval}}]))"
    errors: str = (
        f'sum(increase(revision_app_request_count{{{_QP},response_code_class="5xx"}}'
        "[{interval}]))"
    )
    p99_latency_ms: str = (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(revision_app_request_latencies_bucket{{{_QP}}}[{{interval}}])))"
    )
    function_requests: str = f"sum(increase({FUNCTION_EVENTS}{{{_QP}}}[{{interval}}]))"
    function_errors: str = (
        f'sum(increase({FUNCTION_EVENTS}{{{_QP},outcome=~"{"|".join(ERROR_OUTCOMES)}"}}'
        "[{interval}]))"
    )
    function_p99_latency_ms: str = (
        "1000 * histogram_quantile(0.99, sum by (le) "
        f"(rate({FUNCTION_LATENCY_BUCKET}{{{_QP}}}[{{interval}}])))"
    )

    @classmethod
    def from_mapping(cls, overrides: Mapping[str, str]) -> Queries:
        """Defaults with some templates replaced (the chart passes them as values);
        unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"unknown metric queries: {', '.join(unknown)} (known: {sorted(known)})"
            )
        return cls(**{k: v for k, v in overrides.items() if v})


def render(template: str, **values: str) -> str:
    """Fill `{namespace}`-style placeholders; values are quoted for PromQL strings."""
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value.replace("\\", "\\\\").replace('"', '\\"'))
    return out


def promql_duration(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


@dataclass
class PrometheusSource:
    """Instant queries against the Prometheus HTTP API (`/api/v1/query`)."""

    url: str
    queries: Queries = field(default_factory=Queries)
    timeout_seconds: float = 5.0
    client: httpx.Client | None = None

    def scalar(self, promql: str, at: datetime | None = None) -> float | None:
        """The single value of `promql`; `None` for an empty result or NaN."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        client = self.client or httpx.Client(timeout=self.timeout_seconds)
        try:
            response = client.get(self.url.rstrip("/") + "/api/v1/query", params=params)
        except httpx.HTTPError as err:
            raise SourceUnavailable(f"prometheus at {self.url}: {err}") from err
        finally:
            if self.client is None:
                client.close()
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            reason = body.get("error") or response.text[:200]
            raise SourceUnavailable(
                f"prometheus at {self.url} answered {response.status_code} to {promql!r}: {reason}"
            )
        data = body.get("data", {})
        result = data.get("result")
        if data.get("resultType") == "scalar":
            result = [{"value": result}]
        if not result:
            return None
        if len(result) != 1:
            raise SourceUnavailable(
                f"prometheus query {promql!r} gave {len(result)} series, expected one"
            )
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def canary(
        self,
        *,
        namespace: str,
        service: str,
        revision: str,
        model: str,
        window_seconds: float,
        at: datetime | None = None,
    ) -> tuple[str, float, float, float | None]:
        """(series used, requests, errors, p99 ms) of one revision over the window."""
        values = {
            "namespace": namespace,
            "service": service,
            "revision": revision,
            "model": model,
            "interval": promql_duration(window_seconds),
        }
        q = self.queries
        sets = [
            ("queue-proxy", q.requests, q.errors, q.p99_latency_ms),
            ("function", q.function_requests, q.function_errors, q.function_p99_latency_ms),
        ]
        for source, requests_q, errors_q, p99_q in sets:
            requests = self.scalar(render(requests_q, **values), at)
            if requests is None:
                continue  # no such series here: try the next shape
            errors = self.scalar(render(errors_q, **values), at) or 0.0
            p99 = self.scalar(render(p99_q, **values), at)
            return source, requests, errors, p99
        return "none", 0, 0, None


def read_dead_letters(
    store: EventStoreClient | None,
    *,
    namespace: str,
    service: str,
    revision: str,
    model: str,
    since: datetime,
) -> int | SourceUnavailable | None:
    """The canary's dead letters since `since`; the reason when they could not be read;
    `None` without a store (`analysis.observation` makes both unavailable)."""
    if store is None:
        return None
    try:
        return store.canary_dead_letters(
            namespace=namespace, service=service, revision=revision, model=model, since=since
        )
    except SourceUnavailable as err:
        return err


def read_quality(
    store: EventStoreClient | None,
    query: QualityQuery | None,
    *,
    namespace: str,
    service: str,
    model: str,
    since: datetime,
    until: datetime,
) -> Quality | SourceUnavailable | None:
    """The decision log's quality figures of the canary `model` when the rollout asked
    for them (`query`); the reason when they could not be read (no store included)."""
    if query is None:
        return None
    if store is None:
        return SourceUnavailable(NO_EVENT_STORE)
    try:
        return store.quality(
            namespace=namespace,
            name=service,
            canary=model,
            stable=query.stable,
            since=since,
            until=until,
            compare=query.compare,
            tolerance=query.tolerance,
        )
    except SourceUnavailable as err:
        return err


@dataclass
class MetricsObserver:
    """Both sources together: one `Observation` of the canary over one interval."""

    prometheus: PrometheusSource
    event_store: EventStoreClient | None
    min_window_seconds: float = 0.0
    """Query at least this far back, whatever the rollout's interval: a window must hold
    a few scrapes for `increase()` to have data (set it to ~4 scrape intervals when
    rollouts use intervals that short)."""

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
        window_seconds = max(window_seconds, self.min_window_seconds)
        try:
            source, requests, errors, p99 = self.prometheus.canary(
                namespace=namespace,
                service=service,
                revision=revision,
                model=model,
                window_seconds=window_seconds,
            )
            traffic = Traffic(requests, errors, p99, source)
        except SourceUnavailable as err:
            traffic = Traffic(unavailable=(str(err),))
        dead = read_dead_letters(
            self.event_store,
            namespace=namespace,
            service=service,
            revision=revision,
            model=model,
            since=now - timedelta(seconds=window_seconds),
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
