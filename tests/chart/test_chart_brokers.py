"""The chart's optional Brokers: one per listed namespace with the chosen class and
configuration, each one Knative's Broker schema and webhook accept."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.chart import RenderFn
from tests.support.schemas import KNATIVE_SCHEMAS, knative_violations

pytestmark = pytest.mark.skipif(
    not (KNATIVE_SCHEMAS / "broker.yaml").is_file(),
    reason=f"Knative CRD schemas not found at {KNATIVE_SCHEMAS}",
)


def _brokers(render: RenderFn, values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = render({"brokers": values})
    assert rendered.returncode == 0, rendered.stderr
    return [o for o in rendered.objects if o["kind"] == "Broker"]


def test_no_broker_unless_asked(render: RenderFn) -> None:
    assert _brokers(render, {"namespaces": ["shop"]}) == []


def test_one_kafka_broker_per_namespace(render: RenderFn) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "name": "kafka-broker-config",
              "namespace": "knative-eventing"}  # fmt: skip
    brokers = _brokers(
        render,
        {"create": True, "class": "Kafka", "config": config, "namespaces": ["shop", "payments"]},
    )
    assert sorted(b["metadata"]["namespace"] for b in brokers) == ["payments", "shop"]
    for broker in brokers:
        assert broker["metadata"]["name"] == "default"
        assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "Kafka"
        assert broker["spec"]["config"] == config
        assert knative_violations(broker) == []


def test_a_channel_broker_without_config(render: RenderFn) -> None:
    (broker,) = _brokers(render, {"create": True, "namespaces": ["shop"], "name": "events"})
    assert broker["metadata"]["name"] == "events"
    assert "config" not in broker["spec"]
    assert knative_violations(broker) == []


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"create": True, "class": "Redis", "namespaces": ["a"]}, "brokers/class"),
        ({"create": True, "config": {"kind": "ConfigMap"}, "namespaces": ["a"]}, "brokers/config"),
    ],
)
def test_bad_broker_values_are_refused(
    render: RenderFn, values: dict[str, Any], words: str
) -> None:
    rendered = render({"brokers": values})
    assert rendered.returncode != 0
    assert words in rendered.stderr, rendered.stderr
