"""Operator settings from the environment (the chart sets them on the Deployment).

- `AISVC_KUBE_SERVER`: API server URL used plainly, without credentials (tests,
  `kubectl proxy`); unset: the in-cluster service account, else kubeconfig.
- `AISVC_WATCH_NAMESPACES`: comma-separated namespaces to watch; unset: all namespaces.
- `AISVC_EVENT_STORE_URL`: base URL that default dead-letter sinks point at
  (default: the chart's event store Service).
- `AISVC_CLUSTER_DOMAIN`: cluster DNS domain for tag and canary URLs (`cluster.local`).
- `AISVC_PEERING_NAME`: Kopf peering name, for several replicas with one active;
  unset: standalone.
- `AISVC_RETRY_DELAY_SECONDS`: wait before retrying after a conflict or an unreachable
  API (5).
- `AISVC_WATCH_TIMEOUT_SECONDS`: server-side timeout of each watch request (300).
- `AISVC_RESYNC_SECONDS`: every AIService is reconciled at least this often, even without
  a watch event (a missed event, a child stripped of its labels) (300).
- `AISVC_WORKER_LIMIT`: how many objects of one kind are processed at once (32; 0: no
  limit). A burst (a restart over thousands of AIServices, a bulk apply) then queues
  instead of holding every object's working set at once: peak memory stays bounded.
- `AISVC_LIVENESS_ENDPOINT`: e.g. `http://0.0.0.0:8080/healthz` for a liveness probe.
- `AISVC_KNATIVE_SERVING_NAMESPACE`: where Knative Serving's `config-features` is read
  (`knative-serving`).
- `AISVC_METRICS_PORT`: port of the operator's Prometheus `/metrics` (8000; 0: not served).
  A `Config` built in code (an operator embedded in a test or a benchmark) serves none
  unless it sets `metrics_port`.
- `AISVC_EVENT_STORE_TOKEN` or `AISVC_EVENT_STORE_TOKEN_FILE`: bearer token of the event
  store's query API, for the canary's dead-letter counts (the file is read at start).
- `AISVC_PROMETHEUS_URL`: Prometheus for canary analysis (kube-prometheus-stack's
  `prometheus-operated.monitoring.svc:9090`).
- `AISVC_PROMETHEUS_QUERIES`: a JSON object replacing some of the PromQL templates, e.g.
  `{"requests": "..."}` (keys: requests, errors, p99_latency_ms, function_requests,
  function_errors, function_p99_latency_ms).
- `AISVC_ANALYSIS_MIN_WINDOW_SECONDS`: query at least this far back, whatever a rollout's
  interval (0): a window must hold a few scrapes for `increase()` to have data.
- `AISVC_ROLLOUT_TICK_SECONDS`: how often each active rollout is looked at (2).

Every setting is read and checked once, at start: a malformed one stops the operator with
a message naming the variable, before it reconciles anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiservice_functions import contract
from aiservice_functions.sink_key import load_sink_key

from aiservice_operator.core.compile import CompileOptions
from aiservice_operator.core.rollout_tick import DEFAULT_TICK_SECONDS
from aiservice_operator.sources.canary import MetricsObserver, PrometheusSource, Queries
from aiservice_operator.sources.event_store import EventStoreClient

ENV_KUBE_SERVER = "AISVC_KUBE_SERVER"
ENV_WATCH_NAMESPACES = "AISVC_WATCH_NAMESPACES"
ENV_CLUSTER_DOMAIN = "AISVC_CLUSTER_DOMAIN"
ENV_PEERING_NAME = "AISVC_PEERING_NAME"
ENV_RETRY_DELAY = "AISVC_RETRY_DELAY_SECONDS"
ENV_WATCH_TIMEOUT = "AISVC_WATCH_TIMEOUT_SECONDS"
ENV_RESYNC = "AISVC_RESYNC_SECONDS"
ENV_WORKER_LIMIT = "AISVC_WORKER_LIMIT"
ENV_LIVENESS = "AISVC_LIVENESS_ENDPOINT"
ENV_METRICS_PORT = "AISVC_METRICS_PORT"
ENV_KNATIVE_SERVING_NAMESPACE = "AISVC_KNATIVE_SERVING_NAMESPACE"
ENV_PROMETHEUS_URL = "AISVC_PROMETHEUS_URL"
ENV_PROMETHEUS_QUERIES = "AISVC_PROMETHEUS_QUERIES"
ENV_MIN_WINDOW = "AISVC_ANALYSIS_MIN_WINDOW_SECONDS"
ENV_TICK_SECONDS = "AISVC_ROLLOUT_TICK_SECONDS"
DEFAULT_METRICS_PORT = 8000
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
"""kube-prometheus-stack's Prometheus Service; the chart sets the real one."""


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Config:
    kube_server: str = ""
    namespaces: tuple[str, ...] = ()
    event_store_url: str = CompileOptions().event_store_url
    cluster_domain: str = "cluster.local"
    peering_name: str = ""
    retry_delay: float = 5.0
    watch_timeout: int = 300
    resync_seconds: float = 300.0
    worker_limit: int = 32
    liveness_endpoint: str = ""
    metrics_port: int = 0
    knative_serving_namespace: str = "knative-serving"
    sink_key: bytes | None = field(default=None, repr=False)
    event_store_token: str | None = None
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    prometheus_queries: Queries = field(default_factory=Queries)
    analysis_min_window: float = 0.0
    rollout_tick_seconds: float = DEFAULT_TICK_SECONDS

    @property
    def standalone(self) -> bool:
        return not self.peering_name

    @property
    def compile_options(self) -> CompileOptions:
        return CompileOptions(
            event_store_url=self.event_store_url,
            cluster_domain=self.cluster_domain,
            sink_key=self.sink_key,
        )

    def observer(self) -> MetricsObserver:
        """The canary observer these settings describe (Prometheus and the event store)."""
        return MetricsObserver(
            PrometheusSource(self.prometheus_url, self.prometheus_queries),
            EventStoreClient(self.event_store_url, self.event_store_token, sink_key=self.sink_key),
            self.analysis_min_window,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Read the settings; a malformed value raises `ConfigError` naming its variable."""

        def number(name: str, default: float, minimum: float) -> float:
            return _number(env, name, default, minimum)

        server = env.get(ENV_KUBE_SERVER, "").strip()
        if server and not server.startswith(("http://", "https://")):
            raise ConfigError(f"{ENV_KUBE_SERVER}={server!r} must be an http(s):// URL")
        store = env.get(contract.ENV_EVENT_STORE_URL, "").strip() or cls.event_store_url
        if not store.startswith(("http://", "https://")):
            raise ConfigError(f"{contract.ENV_EVENT_STORE_URL}={store!r} must be an http(s) URL")
        namespaces = tuple(
            ns.strip() for ns in env.get(ENV_WATCH_NAMESPACES, "").split(",") if ns.strip()
        )
        return cls(
            kube_server=server,
            namespaces=namespaces,
            event_store_url=store.rstrip("/"),
            cluster_domain=env.get(ENV_CLUSTER_DOMAIN, "").strip() or "cluster.local",
            peering_name=env.get(ENV_PEERING_NAME, "").strip(),
            knative_serving_namespace=env.get(ENV_KNATIVE_SERVING_NAMESPACE, "").strip()
            or "knative-serving",
            retry_delay=number(ENV_RETRY_DELAY, 5.0, 0.0),
            watch_timeout=int(number(ENV_WATCH_TIMEOUT, 300, 1)),
            resync_seconds=number(ENV_RESYNC, 300.0, 1.0),
            worker_limit=int(number(ENV_WORKER_LIMIT, 32, 0)),
            liveness_endpoint=env.get(ENV_LIVENESS, "").strip(),
            metrics_port=_port(env, ENV_METRICS_PORT, DEFAULT_METRICS_PORT),
            sink_key=_sink_key(env),
            event_store_token=_token(env),
            prometheus_url=_url(env, ENV_PROMETHEUS_URL, DEFAULT_PROMETHEUS_URL),
            prometheus_queries=_queries(env),
            analysis_min_window=number(ENV_MIN_WINDOW, 0.0, 0.0),
            rollout_tick_seconds=_positive(env, ENV_TICK_SECONDS, DEFAULT_TICK_SECONDS),
        )


def _sink_key(env: Mapping[str, str]) -> bytes | None:
    try:
        return load_sink_key(env=env)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{contract.ENV_EVENT_STORE_SINK_KEY_FILE}: {err}") from None


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name, default, 0.0)
    if value <= 0:
        raise ConfigError(f"{name}={env.get(name, '').strip()!r} must be positive")
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    url = env.get(name, "").strip() or default
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={url!r} must be an http(s):// URL")
    return url.rstrip("/")


def _token(env: Mapping[str, str]) -> str | None:
    """The event store token, from the variable or the file the chart mounts."""
    token = env.get(contract.ENV_EVENT_STORE_TOKEN, "").strip()
    path = env.get(contract.ENV_EVENT_STORE_TOKEN_FILE, "").strip()
    if token or not path:
        return token or None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError as err:
        raise ConfigError(f"{contract.ENV_EVENT_STORE_TOKEN_FILE}={path!r}: {err}") from None


def _queries(env: Mapping[str, str]) -> Queries:
    raw = env.get(ENV_PROMETHEUS_QUERIES, "").strip()
    if not raw:
        return Queries()
    try:
        overrides: Any = json.loads(raw)
    except ValueError as err:
        raise ConfigError(f"{ENV_PROMETHEUS_QUERIES} is not JSON: {err}") from None
    if not isinstance(overrides, dict) or not all(isinstance(v, str) for v in overrides.values()):
        raise ConfigError(f"{ENV_PROMETHEUS_QUERIES} must be a JSON object of strings")
    try:
        return Queries.from_mapping(overrides)
    except ValueError as err:
        raise ConfigError(f"{ENV_PROMETHEUS_QUERIES}: {err}") from None


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"{name}={raw!r} must be a port number (0 to 65535; 0: off)")
    return int(raw)
