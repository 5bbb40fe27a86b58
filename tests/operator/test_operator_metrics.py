"""The operator's Prometheus endpoint, scraped over HTTP while the real Kopf operator
reconciles AIServices on the API emulator: reconcile results, API requests, children
written and the Ready gauge move with what the operator did.

Why the emulator: API error and retry counters need errors on demand.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from aiservice_operator.cluster.config import Config
from prometheus_client.parser import text_string_to_metric_families

from tests.support.aiservices import manifest, ready
from tests.support.knative import KnativeServing
from tests.support.kubeemu import AISERVICES, KSERVICES, EmulatorThread, wait_for
from tests.support.operator import OperatorThread

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_url(kube: EmulatorThread, knative: KnativeServing) -> Iterator[str]:
    port = _free_port()
    config = replace(Config(retry_delay=0.3, watch_timeout=60), metrics_port=port)
    with OperatorThread(kube.url, config):
        yield f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_reconciles_requests_and_children(
    metrics_url: str, kube: EmulatorThread, ns: str
) -> None:
    before = scrape(metrics_url)
    kube.create(AISERVICES, manifest("good", ns))
    kube.create(AISERVICES, manifest("bad", ns, traffic={"stable": "missing"}))
    ready(kube, ns, "good")
    ready(kube, ns, "bad", status="False")
    after = scrape(metrics_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("aisvc_operator_reconciles_total", result="ok") >= 1
    assert delta("aisvc_operator_reconciles_total", result="invalid_spec") >= 1
    reconciles = sum(
        v - value(before, n, **dict(k))
        for (n, k), v in after.items()
        if n == "aisvc_operator_reconciles_total"
    )
    assert delta("aisvc_operator_reconcile_duration_seconds_count") == reconciles
    # One Knative Service and one Trigger created, for the valid AIService only.
    knative = {"group": "serving.knative.dev", "resource": "services"}
    assert delta("aisvc_operator_api_requests_total", **knative, verb="create", code="201") == 1
    assert delta("aisvc_operator_children_written_total", kind="service", action="created") == 1
    assert delta("aisvc_operator_children_written_total", kind="trigger", action="created") == 1
    reads = delta(
        "aisvc_operator_api_requests_total",
        group="aiservice.dev",
        resource="aiservices",
        verb="get",
        code="200",
    )
    assert reads >= reconciles - delta("aisvc_operator_reconciles_total", result="gone")
    status_patches = delta(
        "aisvc_operator_api_requests_total",
        group="aiservice.dev",
        resource="aiservices/status",
        verb="patch",
        code="200",
    )
    assert status_patches >= 2
    assert delta("aisvc_operator_api_request_duration_seconds_count", verb="create") >= 2
    assert delta("aisvc_operator_aiservices", ready="True") == 1
    assert delta("aisvc_operator_aiservices", ready="False") == 1
    assert kube.find(KSERVICES, ns, "bad") is None


def test_deleted_aiservices_leave_the_ready_gauge(
    metrics_url: str, kube: EmulatorThread, ns: str
) -> None:
    kube.create(AISERVICES, manifest("short", ns))
    kube.create(AISERVICES, manifest("broken", ns, traffic={"stable": "missing"}))
    ready(kube, ns, "short")
    ready(kube, ns, "broken", status="False")
    before = scrape(metrics_url)
    kube.delete(AISERVICES, ns, "short")
    kube.delete(AISERVICES, ns, "broken")

    def both_gone() -> bool:
        now = scrape(metrics_url)
        return all(
            value(now, "aisvc_operator_aiservices", ready=r)
            == value(before, "aisvc_operator_aiservices", ready=r) - 1
            for r in ("True", "False")
        )

    wait_for(both_gone, what="the deleted AIServices out of the Ready gauge")


def test_metrics_port_from_env() -> None:
    assert Config.from_env({}).metrics_port == 8000
    assert Config.from_env({"AISVC_METRICS_PORT": "0"}).metrics_port == 0
    assert Config().metrics_port == 0  # an operator embedded in code opens no port
    with pytest.raises(ValueError, match="AISVC_METRICS_PORT"):
        Config.from_env({"AISVC_METRICS_PORT": "http"})


def test_port_zero_serves_no_metrics() -> None:
    from aiservice_operator.cluster import operator_metrics

    assert operator_metrics.serve(0) is None
    endpoint = operator_metrics.serve(_free_port(), "127.0.0.1")
    assert endpoint is not None
    try:
        response = httpx.get(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=5)
        assert response.status_code == 200
        assert "aisvc_operator_reconciles_total" in response.text
    finally:
        endpoint.close()
