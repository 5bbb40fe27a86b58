"""Managed Brokers through the real operator on the API emulator: created with the class
asked for, shared by the AIServices naming it (one non-controller ownerReference each),
removed by the garbage collector after the last of them, a Broker of another class reported
and never changed, and the durability of the Broker in use in the status.

The emulator's garbage collector follows Kubernetes' rule for several owners (deleted once
none is left; dangling references removed); the real collector is the cluster tier's."""

from __future__ import annotations

from typing import Any

from tests.support.aiservices import manifest, ready
from tests.support.knative import KnativeServing
from tests.support.kubeemu import AISERVICES, BROKERS, EVENTS, EmulatorThread, condition, wait_for
from tests.support.operator import OperatorThread

KAFKA = {"class": "Kafka", "config": {"apiVersion": "v1", "kind": "ConfigMap",
                                      "name": "kafka-broker-config",
                                      "namespace": "knative-eventing"}}  # fmt: skip


def _owners(broker: dict[str, Any]) -> list[tuple[str, bool]]:
    return sorted(
        (r["name"], bool(r.get("controller")))
        for r in broker["metadata"].get("ownerReferences") or []
    )


def _condition_of(kube: EmulatorThread, ns: str, name: str, type_: str, status: str) -> Any:
    def check() -> Any:
        cond = condition(kube.find(AISERVICES, ns, name), type_)
        return cond if cond.get("status") == status else None

    return wait_for(check, what=f"{ns}/{name} {type_}={status}")


def test_a_managed_broker_is_created_shared_and_collected_after_the_last_user(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    first = kube.create(AISERVICES, manifest("first", ns, broker="events", managedBroker=KAFKA))
    ready(kube, ns, "first")
    broker = kube.get(BROKERS, ns, "events")
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "Kafka"
    assert broker["metadata"]["labels"]["aiservice.dev/managed-broker"] == "true"
    assert "aiservice.dev/name" not in broker["metadata"]["labels"]  # shared: no one's child
    assert broker["spec"]["config"]["name"] == "kafka-broker-config"
    assert _owners(broker) == [("first", False)]
    durable = _condition_of(kube, ns, "first", "BrokerDurable", "True")
    assert "Kafka" in durable["message"]
    assert condition(kube.get(AISERVICES, ns, "first"), "BrokerManaged")["reason"] == "Managed"
    assert any(e.get("reason") == "BrokerCreated" for e in kube.list(EVENTS, ns))

    kube.create(AISERVICES, manifest("second", ns, broker="events", managedBroker=KAFKA))
    ready(kube, ns, "second")
    shared = wait_for(
        lambda: (
            len(_owners(kube.get(BROKERS, ns, "events"))) == 2 and kube.get(BROKERS, ns, "events")
        ),
        what="both owners",
    )
    assert _owners(shared) == [("first", False), ("second", False)]

    kube.delete(AISERVICES, ns, "first")  # gone once the framework's finalizer is off
    kept = wait_for(
        lambda: (
            _owners(kube.get(BROKERS, ns, "events")) == [("second", False)]
            and kube.get(BROKERS, ns, "events")
        ),
        what="the first owner's reference removed",
    )  # another AIService still uses it: kept
    assert first["metadata"]["uid"] not in {r["uid"] for r in kept["metadata"]["ownerReferences"]}

    kube.delete(AISERVICES, ns, "second")
    wait_for(lambda: kube.find(BROKERS, ns, "events") is None, what="the Broker collected")


def test_an_existing_broker_of_another_class_is_reported_and_left_alone(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    theirs = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
              "metadata": {"name": "default", "namespace": ns,
                           "annotations": {"eventing.knative.dev/broker.class":
                                           "MTChannelBasedBroker"}},
              "spec": {}}  # fmt: skip
    before = kube.create(BROKERS, theirs)
    kube.create(AISERVICES, manifest("svc", ns, managedBroker=KAFKA))

    conflict = _condition_of(kube, ns, "svc", "BrokerManaged", "False")
    assert conflict["reason"] == "BrokerClassConflict"
    assert "class MTChannelBasedBroker" in conflict["message"] and "Kafka" in conflict["message"]
    durable = condition(kube.get(AISERVICES, ns, "svc"), "BrokerDurable")
    assert (durable["status"], durable["reason"]) == ("False", "InMemory")  # what is really used
    after = kube.get(BROKERS, ns, "default")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert wait_for(
        lambda: any(e.get("reason") == "BrokerClassConflict" for e in kube.list(EVENTS, ns)),
        what="a Warning Event",
    )


def test_a_missing_unmanaged_broker_is_reported(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    kube.create(AISERVICES, manifest("svc", ns, broker="nowhere"))
    missing = _condition_of(kube, ns, "svc", "BrokerDurable", "Unknown")
    assert missing["reason"] == "BrokerNotFound"
    assert f"Broker {ns}/nowhere does not exist" in missing["message"]
    assert kube.find(BROKERS, ns, "nowhere") is None  # not asked for: not created
