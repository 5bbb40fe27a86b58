"""Prometheus metrics of one function container.

Each app gets its own registry, so several apps in one test process do not clash.
With one worker process the in-process registry is exact. With several (see
``aiservice_functions.serving``), ``PROMETHEUS_MULTIPROC_DIR`` is set before the workers
start, every sample is kept in that directory's files, and :meth:`RuntimeMetrics.render`
sums the files of all workers, so any worker answers ``/metrics`` for the whole pod.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram

from aiservice_functions.serving import multiproc

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
    "out_of_memory",  # 503: the device ran out of memory on the event's batch
    "error",  # 500: the model failed
    "timeout",  # 500: past the inference deadline
)


class RuntimeMetrics:
    """The function's metrics for one model version; :meth:`record` is the per-event path."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model_version: str) -> None:
        self.shared_dir = multiproc.use_shared_values()
        self.model_version = model_version
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
            "1 once the model of this version is loaded (in every live worker process).",
            ["model_version"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.model_ready.labels(model_version).set(0)
        self.model_info = Gauge(
            "aisvc_function_model_info",
            "1 for the device (cpu, cuda:N) and precision (fp32, fp16, bf16) the model of "
            "this version runs on, once loaded.",
            ["model_version", "device", "precision"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.model_load = Gauge(
            "aisvc_function_model_load_seconds",
            "How long the last load of this version's model took (fetch, verify, load), in "
            "the slowest live worker process; absent until a load succeeded.",
            ["model_version"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        # Children per outcome, made once: ``labels()`` takes a lock and builds a key
        # on every call, which shows on a sub-millisecond request path.
        self._by_outcome: dict[str, tuple[Counter, Histogram]] = {}

    def record(self, outcome: str, seconds: float) -> None:
        """Count one answered event and its latency."""
        children = self._by_outcome.get(outcome)
        if children is None:
            children = (
                self.events.labels(outcome, self.model_version),
                self.latency.labels(self.model_version, outcome),
            )
            self._by_outcome[outcome] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The exposition text: this process's registry, or the sum over all workers."""
        return multiproc.render(self.registry, self.shared_dir)
