"""A stand-in for Knative revisions as Prometheus sees them, for the metric-source tests.

Knative's queue-proxy (the sidecar in front of every revision) cannot run here, so this
one process plays it for any number of revisions: it answers events (`POST /qp/<rev>`)
with 200 or 500 at the error rate the test sets (`POST /control/<rev>`), waits the
latency the test sets, and counts them in the same series queue-proxy exports
(`revision_app_request_count{response_code_class}`, `revision_app_request_latencies` in
ms, labelled `namespace_name` / `revision_name`). `POST /fn/<rev>` counts in the function
runtime's own series instead (`aisvc_function_events_total{outcome}`,
`aisvc_function_latency_seconds`), labelled as the scrape relabelling would label them.

    python revision_standin.py PORT DEFAULT_NAMESPACE
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
LABELS = ["namespace_name", "revision_name"]
# A Gauge only for the name: prometheus_client would append `_total` to a Counter, and
# queue-proxy's series is `revision_app_request_count` (PromQL does not look at the type).
QP_COUNT = Gauge(
    "revision_app_request_count",
    "Requests to the user container (queue-proxy shape).",
    [*LABELS, "response_code", "response_code_class"],
    registry=REGISTRY,
)
QP_LATENCY = Histogram(
    "revision_app_request_latencies",
    "Request latency in milliseconds (queue-proxy shape).",
    LABELS,
    buckets=(5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 400, 500, 1000, 2000, 5000),
    registry=REGISTRY,
)
FN_EVENTS = Counter(
    "aisvc_function_events",
    "Events by outcome (function runtime shape).",
    [*LABELS, "outcome", "model_version"],
    registry=REGISTRY,
)
FN_LATENCY = Histogram(
    "aisvc_function_latency_seconds",
    "Event latency (function runtime shape).",
    [*LABELS, "model_version", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)

NAMESPACE = "default"
LOCK = threading.Lock()
SETTINGS: dict[str, dict[str, float]] = {}
NAMESPACES: dict[str, str] = {}


def register(revision: str, shape: str, error_rate: float, delay_ms: float, namespace: str) -> None:
    """Set a revision's behaviour and create its series at 0 (so `increase()` sees the
    first events, as it does for a long-running queue-proxy)."""
    with LOCK:
        SETTINGS[revision] = {"error_rate": error_rate, "delay_ms": delay_ms, "served": 0}
        NAMESPACES[revision] = namespace
    if shape == "qp":
        QP_COUNT.labels(namespace, revision, "200", "2xx")
        QP_COUNT.labels(namespace, revision, "500", "5xx")
        QP_LATENCY.labels(namespace, revision)
    else:
        for outcome in ("replied", "error"):
            FN_EVENTS.labels(namespace, revision, outcome, revision)
            FN_LATENCY.labels(namespace, revision, revision, outcome)


def serve_event(shape: str, revision: str) -> int:
    with LOCK:
        settings = SETTINGS[revision]
        n = settings["served"]
        settings["served"] = n + 1
        namespace = NAMESPACES[revision]
    rate = settings["error_rate"]
    failed = math.floor((n + 1) * rate) > math.floor(n * rate)  # exactly `rate` of events
    started = time.perf_counter()
    time.sleep(settings["delay_ms"] / 1000)
    elapsed = time.perf_counter() - started
    code = 500 if failed else 200
    if shape == "qp":
        QP_COUNT.labels(namespace, revision, str(code), f"{code // 100}xx").inc()
        QP_LATENCY.labels(namespace, revision).observe(elapsed * 1000)
    else:
        outcome = "error" if failed else "replied"
        FN_EVENTS.labels(namespace, revision, outcome, revision).inc()
        FN_LATENCY.labels(namespace, revision, revision, outcome).observe(elapsed)
    return code


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, code: int, body: bytes = b"", ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._reply(200, generate_latest(REGISTRY), "text/plain; version=0.0.4")
        else:
            self._reply(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "control":
            spec = json.loads(body or b"{}")
            register(
                parts[1],
                spec.get("shape", "qp"),
                spec.get("error_rate", 0.0),
                spec.get("delay_ms", 0),
                spec.get("namespace", NAMESPACE),
            )
            self._reply(204)
        elif len(parts) == 2 and parts[0] in ("qp", "fn") and parts[1] in SETTINGS:
            self._reply(serve_event(parts[0], parts[1]))
        else:
            self._reply(404, b"unknown revision")


if __name__ == "__main__":
    NAMESPACE = sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.serve_forever()
