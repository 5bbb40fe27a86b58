"""The Knative Serving stand-in does what the operator relies on Knative for: webhook
rejections, revisions per named template, and Service status as Knative writes it.

Why the emulator: this checks the emulator's Knative stand-in itself, which the fault tests
rely on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.knative import KnativeServing
from tests.support.kubeemu import KSERVICES, REVISIONS, EmulatorThread, condition, wait_for

URL = "/apis/serving.knative.dev/v1/namespaces/kn/services"


@pytest.fixture(scope="module")
def serving() -> Iterator[tuple[EmulatorThread, KnativeServing]]:
    with EmulatorThread() as kube:
        yield kube, KnativeServing(kube, ready_after=0.2).start()


def service(
    name: str, revision: str, traffic: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {"metadata": {"name": revision}, "spec": {"containers": [{"image": "i"}]}}
    }
    if traffic is not None:
        spec["traffic"] = traffic
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (service("a", "b-1"), "must have prefix a-"),
        (service("a", "a-1", [{"revisionName": "a-1", "percent": 60}]), "sum to 60"),
        (
            service("a", "a-1", [{"latestRevision": True, "revisionName": "a-1", "percent": 100}]),
            "exactly one of revisionName or latestRevision",
        ),
    ],
)
def test_the_webhook_denies_what_knative_denies(
    serving: tuple[EmulatorThread, KnativeServing], body: dict[str, Any], complaint: str
) -> None:
    kube, _ = serving
    answer = requests.post(kube.url + URL, json=body, timeout=5)
    assert answer.status_code == 400 and complaint in answer.json()["message"]


def test_a_changed_template_needs_a_new_revision_name(
    serving: tuple[EmulatorThread, KnativeServing],
) -> None:
    kube, _ = serving
    kube.create(KSERVICES, service("same", "same-1"), "kn")
    wait_for(lambda: kube.find(REVISIONS, "kn", "same-1"), what="the revision")
    changed = service("same", "same-1")
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "j"
    answer = requests.patch(
        f"{kube.url}{URL}/same",
        json={"spec": changed["spec"]},
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=5,
    )
    assert answer.status_code == 400 and "without a name change" in answer.json()["message"]


def test_status_follows_revision_readiness(serving: tuple[EmulatorThread, KnativeServing]) -> None:
    kube, _ = serving
    kube.create(KSERVICES, service("s", "s-a"), "kn")
    pending = wait_for(lambda: kube.get(KSERVICES, "kn", "s").get("status") or {}, what="st")
    assert pending["latestCreatedRevisionName"] == "s-a"
    assert condition({"status": pending}, "Ready")["status"] == "False"
    ready = wait_for(
        lambda: (
            condition(s := kube.get(KSERVICES, "kn", "s"), "Ready").get("status") == "True" and s
        ),
        what="Ready after the start-up delay",
    )
    assert ready["status"]["latestReadyRevisionName"] == "s-a"
    assert ready["status"]["url"] == "http://s.kn.svc.cluster.local"
    assert ready["status"]["observedGeneration"] == ready["metadata"]["generation"]

    traffic = [
        {"revisionName": "s-a", "percent": 90, "tag": "old", "latestRevision": False},
        {"revisionName": "s-b", "percent": 10, "tag": "new", "latestRevision": False},
    ]
    kube.patch(KSERVICES, "kn", "s", {"spec": service("s", "s-b", traffic)["spec"]})
    routed = wait_for(
        lambda: (
            condition(s := kube.get(KSERVICES, "kn", "s"), "Ready").get("status") == "True"
            and s["status"]["observedGeneration"] == 2
            and s
        ),
        what="the new revision routed",
    )
    assert [(t["revisionName"], t["percent"], t["url"]) for t in routed["status"]["traffic"]] == [
        ("s-a", 90, "http://old-s.kn.svc.cluster.local"),
        ("s-b", 10, "http://new-s.kn.svc.cluster.local"),
    ]
    revision = kube.get(REVISIONS, "kn", "s-b")
    assert revision["metadata"]["labels"]["serving.knative.dev/service"] == "s"
    assert revision["metadata"]["ownerReferences"][0]["uid"] == routed["metadata"]["uid"]
