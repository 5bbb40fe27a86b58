"""Brokers as a choice: the managed Broker compiled, and the durability and conflict
conditions, from the class of the Broker really in use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiservice_operator.cli.rollout_view import broker_line
from aiservice_operator.core.compile import managed_broker, steady_state
from aiservice_operator.core.conditions import broker_conditions
from aiservice_operator.core.spec import AIService, parse
from aiservice_operator.local.view import status_object

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _ais(**spec: Any) -> AIService:
    return parse({
        "apiVersion": "aiservice.dev/v1alpha1", "kind": "AIService",
        "metadata": {"name": "f", "namespace": "ns", "uid": "u-1"},
        "spec": {"consumes": [{"type": "t.a"}],
                 "function": {"image": "img:1", "entrypoint": "pkg.fn"},
                 "models": [{"name": "v1", "uri": "file:///m.pt"}], **spec},
    })  # fmt: skip


def _broker(
    broker_class: str | None, config: str = "", labels: dict[str, str] | None = None
) -> Any:
    annotations = {"eventing.knative.dev/broker.class": broker_class} if broker_class else {}
    spec = {"config": {"apiVersion": "v1", "kind": "ConfigMap", "name": config}} if config else {}
    return {"metadata": {"name": "default", "annotations": annotations, "labels": labels or {}},
            "spec": spec}  # fmt: skip


def test_a_plain_broker_name_compiles_no_broker() -> None:
    ais = _ais()
    assert managed_broker(ais) is None
    assert [o["kind"] for o in steady_state(ais).objects()] == ["Service", "Trigger"]


def test_the_managed_broker_is_owned_but_not_controlled() -> None:
    ais = _ais(broker="events", managedBroker={"class": "RabbitMQBroker", "config": {
        "apiVersion": "eventing.knative.dev/v1alpha1", "kind": "RabbitmqBrokerConfig",
        "name": "rmq"}})  # fmt: skip
    broker = managed_broker(ais)
    assert broker is not None
    assert broker["metadata"]["name"] == "events"
    assert broker["metadata"]["annotations"] == {
        "eventing.knative.dev/broker.class": "RabbitMQBroker"
    }
    (ref,) = broker["metadata"]["ownerReferences"]
    assert ref["uid"] == "u-1" and ref["controller"] is False and ref["blockOwnerDeletion"] is False
    assert broker["spec"]["config"]["kind"] == "RabbitmqBrokerConfig"
    assert (
        steady_state(ais).objects()[0] is not None
        and steady_state(ais).objects()[0]["kind"] == "Broker"
    )


@pytest.mark.parametrize(
    ("live", "status", "reason"),
    [
        (_broker("Kafka"), "True", "DurableBroker"),
        (_broker("RabbitMQBroker"), "True", "DurableBroker"),
        (_broker("MTChannelBasedBroker"), "False", "InMemory"),
        (_broker(None), "False", "InMemory"),  # no annotation: Knative's default class
        (_broker("MTChannelBasedBroker", "config-br-default-channel"), "False", "InMemory"),
        (_broker("MTChannelBasedBroker", "kafka-channel"), "Unknown", "ChannelBased"),
        (None, "Unknown", "BrokerNotFound"),
    ],
)
def test_durability_follows_the_class_in_use(live: Any, status: str, reason: str) -> None:
    (durable,) = broker_conditions(_ais(), live, NOW)
    assert (durable["type"], durable["status"], durable["reason"]) == (
        "BrokerDurable",
        status,
        reason,
    )


def test_a_conflicting_class_is_named_and_durability_reflects_the_real_broker() -> None:
    ais = _ais(managedBroker={"class": "Kafka"})
    durable, managed = broker_conditions(ais, _broker("MTChannelBasedBroker"), NOW)
    assert (durable["status"], managed["status"], managed["reason"]) == (
        "False", "False", "BrokerClassConflict")  # fmt: skip
    assert (
        "class MTChannelBasedBroker" in managed["message"]
        and "asks for Kafka" in managed["message"]
    )
    ours = {
        "app.kubernetes.io/managed-by": "aiservice-operator",
        "aiservice.dev/managed-broker": "true",
    }
    assert broker_conditions(ais, _broker("Kafka", labels=ours), NOW)[1]["reason"] == "Managed"
    assert broker_conditions(ais, _broker("Kafka"), NOW)[1]["reason"] == "ExistingBroker"


def test_aisvc_status_shows_the_durability_on_the_cluster_and_locally() -> None:
    ais = _ais(managedBroker={"class": "Kafka"})
    obj = {"status": {"conditions": broker_conditions(ais, _broker("MTChannelBasedBroker"), NOW)}}
    lines = [t.plain for t in broker_line(obj)]
    assert lines[0].startswith("broker: in memory:")
    assert "asks for Kafka" in lines[1]
    (local,) = [t.plain for t in broker_line(status_object(ais, None))]
    assert local.startswith("broker: durable:") and "Kafka on a cluster" in local


def test_the_local_view_says_every_broker_is_the_durable_local_log() -> None:
    from aiservice_operator.local.view import render
    from rich.console import Console

    snapshot = {"brokers": {
        "payments/payments-kafka": {"url": "http://127.0.0.1:1/payments/payments-kafka",
                                    "accepted": 3, "clusterClass": "Kafka"},
        "shop/default": {"url": "http://127.0.0.1:1/shop/default", "accepted": 0}}}  # fmt: skip
    console = Console(width=200, record=True)
    console.print(render(snapshot))
    text = console.export_text()
    assert (
        "payments/payments-kafka" in text and "(durable SQLite here; Kafka on the cluster)" in text
    )
    assert "shop/default http://127.0.0.1:1/shop/default: 0 events in (durable SQLite here)" in text
