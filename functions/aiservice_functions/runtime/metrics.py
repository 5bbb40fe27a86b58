"""Prometheus metrics of one function process.

Each app gets its own registry, so several apps in one test process do not clash.
The runtime serves one gunicorn worker process per container (see ``server``), so
the plain in-process registry is exact and prometheus multiprocess mode is not needed.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

OUTCOMES = (
    "replied",  # 200 with a reply event
    "no_reply",  # 202: the function or the service produces nothing
    "shadow",  # 202: processed as a shadow copy, reply withheld
    "invalid_event",  # 400/415: not a CloudEvent we accept
    "rejected",  # 4xx: the function refused the payload
    "too_large",  # 413
    "not_ready",  # 503: model not loaded yet (or failed to load)
    "error",  # 500: the model failed
    "timeout",  # 500: past the inference deadline
)


class RuntimeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "aisvc_function_events",
            "CloudEvents received, by outcome and model version.",
            ["outcome", "model_version"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aisvc_function_latency_seconds",
            "Time from receiving an event to answering it.",
            ["model_version", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "aisvc_function_batch_size",
            "Events per forward pass.",
            ["model_version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_ready = Gauge(
            "aisvc_function_model_ready",
            "1 once the model of this version is loaded.",
            ["model_version"],
            registry=self.registry,
        )
