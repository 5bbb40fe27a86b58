"""The chart's metrics wiring: the operator's metrics Service reaches the port the operator
serves, the optional ServiceMonitors select those Services by port name, and the event
store's NetworkPolicy lets Prometheus scrape.

ServiceMonitor is a prometheus-operator CRD, which kubernetes-validate does not know: its
shape is checked here by structure, against the fields of monitoring.coreos.com/v1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiservice_operator.cluster.config import ENV_METRICS_PORT, Config

from tests.support.chart import NAMESPACE, Rendered, RenderFn

MONITORING = {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "p"}}}
SPEC_FIELDS = {"endpoints", "selector", "namespaceSelector", "jobLabel", "targetLabels"}
ENDPOINT_FIELDS = {
    "port",
    "path",
    "interval",
    "scheme",
    "scrapeTimeout",
    "relabelings",
    "honorLabels",
}


def _services(rendered: Rendered) -> list[dict[str, Any]]:
    return rendered.of_kind("Service")


def _selected(rendered: Rendered, monitor: dict[str, Any]) -> list[dict[str, Any]]:
    """The Services a ServiceMonitor selects (label selector, in its namespaces)."""
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    namespaces = monitor["spec"]["namespaceSelector"]["matchNames"]
    return [
        s
        for s in _services(rendered)
        if wanted <= s["metadata"]["labels"].items() and s["metadata"]["namespace"] in namespaces
    ]


def test_operator_metrics_service_reaches_the_port_the_operator_serves(
    render: RenderFn, tmp_path: Path
) -> None:
    rendered = render({"operator": {"metricsPort": 9100}})
    service = rendered.one("Service", "aisvc-aiservice-operator-metrics")
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"
    deployment = rendered.deployment("operator")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env = {k: v for k, v in env.items() if not k.endswith("_FILE")}  # mounted Secrets
    token = tmp_path / "token"  # stands in for the Secret the kubelet mounts (read at start)
    token.write_text("t\n")
    env["AISVC_EVENT_STORE_TOKEN_FILE"] = str(token)
    # The operator reads exactly this variable, and listens where the Service sends scrapes.
    assert Config.from_env(env).metrics_port == ports["metrics"] == 9100
    assert env[ENV_METRICS_PORT] == "9100"


def test_service_monitors_are_off_by_default(render: RenderFn) -> None:
    assert render().of_kind("ServiceMonitor") == []


@pytest.mark.parametrize("store", [True, False], ids=["with-event-store", "without"])
def test_service_monitors_select_the_metrics_services(render: RenderFn, store: bool) -> None:
    event_store = {"enabled": store, "externalUrl": "" if store else "http://events:8090"}
    rendered = render({"metrics": MONITORING, "eventStore": event_store})
    monitors = rendered.of_kind("ServiceMonitor")
    components = sorted(m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors)
    assert components == (["event-store", "operator"] if store else ["operator"])
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["namespace"] == NAMESPACE
        assert monitor["metadata"]["labels"]["release"] == "p"
        assert set(monitor["spec"]) <= SPEC_FIELDS
        (endpoint,) = monitor["spec"]["endpoints"]
        assert set(endpoint) <= ENDPOINT_FIELDS
        assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
        # Per-AIService series label the AIService's namespace: it must win over the target's.
        assert endpoint["honorLabels"] is True
        (service,) = _selected(rendered, monitor)
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        assert endpoint["port"] == {"operator": "metrics", "event-store": "http"}[component]


def test_prometheus_may_scrape_the_event_store(render: RenderFn) -> None:
    rules = render().one("NetworkPolicy")["spec"]["ingress"]
    assert len(rules) == 2  # the senders (rule 0, checked in test_chart) and the scrapers
    assert rules[1]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rules[1]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    none = render({"eventStore": {"networkPolicy": {"scrapeNamespaces": []}}})
    assert len(none.one("NetworkPolicy")["spec"]["ingress"]) == 1


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"operator": {"metricsPort": 0}}, "/operator/metricsPort"),
        ({"metrics": {"serviceMonitor": {"interval": "sometimes"}}}, "/interval"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "'enable' not allowed"),
        ({"eventStore": {"networkPolicy": {"scrapeNamespaces": ["Mon"]}}}, "/scrapeNamespaces"),
    ],
    ids=["port", "interval", "unknown key", "namespace"],
)
def test_bad_metrics_values_name_the_field(
    render: RenderFn, values: dict[str, Any], field: str
) -> None:
    rendered = render(values)
    assert rendered.returncode != 0
    assert field in rendered.stderr, rendered.stderr
