"""The operator's own Prometheus metrics, and the HTTP endpoint that serves them.

What a user of the operator watches: how reconciles end and how long they take, what the
operator asks of the Kubernetes API (and what it answers), which children it writes, what
canary rollouts decide, and how many AIServices are Ready. The recording functions are
called on the operator's hot path, so each is a dictionary lookup and an addition.

Served by `serve(port)` on `/metrics` (the operator's start-up calls it with
`AISVC_METRICS_PORT`, default 8000; 0 disables it). The process and platform collectors of
the default registry come along (`process_*`, `python_*`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from aiservice_operator.rollout_metrics import RolloutMetrics

RECONCILES = Counter(
    "aisvc_operator_reconciles",
    "AIService reconciles by how they ended: ok, invalid_spec, retry (conflict, throttled, "
    "unreachable API), error (the API refused the desired objects), gone (deleted).",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "aisvc_operator_reconcile_duration_seconds",
    "Time of one reconcile of an AIService (reads, compile, writes; not the wait for its lock).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
API_REQUESTS = Counter(
    "aisvc_operator_api_requests",
    "Requests the operator sent to the Kubernetes API by group, resource, verb and HTTP "
    "status code (0: the server could not be reached). Watches of the framework not included.",
    ["group", "resource", "verb", "code"],
)
API_SECONDS = Histogram(
    "aisvc_operator_api_request_duration_seconds",
    "Latency of the operator's Kubernetes API requests by verb.",
    ["verb"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CHILDREN_WRITTEN = Counter(
    "aisvc_operator_children_written",
    "Knative children the operator wrote by kind (service, trigger) and action "
    "(created, updated, recreated, deleted). Unchanged children are not written.",
    ["kind", "action"],
)
ROLLOUT_DECISIONS = Counter(
    "aisvc_operator_rollout_decisions",
    "Canary rollout decisions by action and the phase they led to.",
    ["action", "phase"],
)
RECONCILES_WAITING = Gauge(
    "aisvc_operator_reconciles_waiting",
    "Reconciles started and not finished: running, or queued behind another reconcile of "
    "the same AIService (the operator's work queue).",
)
ROLLOUTS = RolloutMetrics()
"""The per-AIService `aisvc_rollout_*` series (the local executor exports the same)."""
AISERVICES_READY = Gauge(
    "aisvc_operator_aiservices",
    "AIServices this operator reconciled, by the status of their Ready condition "
    "(True, False, Unknown).",
    ["ready"],
)

for _result in ("ok", "invalid_spec", "retry", "error", "gone"):
    RECONCILES.labels(_result)  # at 0 from the start: a rate of failures is 0, not absent


def reconciled(result: str, seconds: float) -> None:
    """Count one reconcile that ended with `result` after `seconds`."""
    RECONCILES.labels(result).inc()
    RECONCILE_SECONDS.observe(seconds)


_API_CHILDREN: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}
"""Label children made once per (group, resource, verb, code): `labels()` takes a lock and
builds a key on every call, several times the cost of the increment itself."""


def api_request(group: str, resource: str, verb: str, code: int, seconds: float) -> None:
    """Count one Kubernetes API request and its latency."""
    key = (group, resource, verb, code)
    children = _API_CHILDREN.get(key)
    if children is None:
        children = _API_CHILDREN.setdefault(
            key, (API_REQUESTS.labels(group, resource, verb, str(code)), API_SECONDS.labels(verb))
        )
    children[0].inc()
    children[1].observe(seconds)


def children_written(kind: str, actions: Iterable[str]) -> None:
    """Count the children of `kind` that were written (`unchanged` ones were not)."""
    for action in actions:
        if action != "unchanged":
            CHILDREN_WRITTEN.labels(kind, action).inc()


def rollout_decision(action: str, phase: str) -> None:
    ROLLOUT_DECISIONS.labels(action, phase).inc()


class _ReadyStates:
    """The last Ready status seen per AIService, kept so the gauge moves by one per change."""

    def __init__(self) -> None:
        self._status: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def set(self, namespace: str, name: str, status: str | None) -> None:
        """Record the Ready status of an AIService; None: it is gone."""
        key = (namespace, name)
        with self._lock:
            old = self._status.get(key)
            if old == status:
                return
            if old is not None:
                AISERVICES_READY.labels(old).dec()
            if status is None:
                del self._status[key]
                return
            AISERVICES_READY.labels(status).inc()
            self._status[key] = status


READY = _ReadyStates()


def ready_status(namespace: str, name: str, status: str | None) -> None:
    """The AIService's Ready condition status now (`True`/`False`/`Unknown`); None: deleted."""
    READY.set(namespace, name, status)


@dataclass
class Endpoint:
    """A running metrics endpoint; `close()` stops it."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(port: int, addr: str = "0.0.0.0") -> Endpoint | None:
    """Serve `/metrics` on `port` in a daemon thread; port 0 serves nothing (None).

    A port in use raises `OSError`: the operator must not run without the metrics it was
    configured to export."""
    if not port:
        return None
    server, thread = start_http_server(port, addr)
    return Endpoint(server, thread)
