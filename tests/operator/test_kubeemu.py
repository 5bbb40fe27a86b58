"""The API emulator behaves like kube-apiserver where the operator depends on it (over HTTP).

Why the emulator: this checks the emulator itself, the API server of the fault tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import requests
import yaml

from tests.support.crd import check_status, pruned_fields, schema
from tests.support.kubeemu import (
    AISERVICES,
    KSERVICES,
    NAMESPACES,
    TRIGGERS,
    EmulatorThread,
    Kind,
    wait_for,
)

AIS = "/apis/aiservice.dev/v1alpha1/namespaces/ns1/aiservices"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture(scope="module")
def kube() -> Iterator[EmulatorThread]:
    with EmulatorThread() as kube:
        yield kube


def _ais(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": name},
        "spec": {"broker": "default", **spec},
    }


def test_create_sets_identity_and_rejects_duplicates(kube: EmulatorThread) -> None:
    made = requests.post(kube.url + AIS, json=_ais("a1"), timeout=5)
    assert made.status_code == 201
    meta = made.json()["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert meta["generation"] == 1 and meta["namespace"] == "ns1"
    again = requests.post(kube.url + AIS, json=_ais("a1"), timeout=5)
    assert again.status_code == 409 and again.json()["reason"] == "AlreadyExists"


def test_stale_resource_version_is_a_conflict(kube: EmulatorThread) -> None:
    rv = requests.post(kube.url + AIS, json=_ais("a2"), timeout=5).json()["metadata"][
        "resourceVersion"
    ]
    first = requests.patch(
        f"{kube.url}{AIS}/a2",
        data=json.dumps({"metadata": {"resourceVersion": rv}, "spec": {"broker": "b"}}),
        headers=MERGE,
        timeout=5,
    )
    assert first.status_code == 200 and first.json()["metadata"]["resourceVersion"] != rv
    stale = requests.patch(
        f"{kube.url}{AIS}/a2",
        data=json.dumps({"metadata": {"resourceVersion": rv}, "spec": {"broker": "c"}}),
        headers=MERGE,
        timeout=5,
    )
    assert stale.status_code == 409
    put = requests.put(
        f"{kube.url}{AIS}/a2",
        json=_ais("a2") | {"metadata": {"name": "a2", "resourceVersion": rv}},
        timeout=5,
    )
    assert put.status_code == 409
    failed_test = requests.patch(
        f"{kube.url}{AIS}/a2",
        data=json.dumps([{"op": "test", "path": "/metadata/resourceVersion", "value": rv}]),
        headers=JSON_PATCH,
        timeout=5,
    )
    assert failed_test.status_code == 422
    assert kube.get(AISERVICES, "ns1", "a2")["spec"]["broker"] == "b"


def test_status_subresource_is_separate_and_generation_tracks_spec(kube: EmulatorThread) -> None:
    requests.post(kube.url + AIS, json=_ais("a3") | {"status": {"x": 1}}, timeout=5)
    assert "status" not in kube.get(AISERVICES, "ns1", "a3")  # dropped on create
    status = requests.patch(
        f"{kube.url}{AIS}/a3/status",
        data=json.dumps({"status": {"phase": "ok"}, "spec": {"broker": "ignored"}}),
        headers=MERGE,
        timeout=5,
    ).json()
    assert status["status"] == {"phase": "ok"}
    assert status["spec"]["broker"] == "default" and status["metadata"]["generation"] == 1
    main = requests.patch(
        f"{kube.url}{AIS}/a3",
        data=json.dumps({"status": {"phase": "ignored"}, "spec": {"broker": "b2"}}),
        headers=MERGE,
        timeout=5,
    ).json()
    assert main["status"] == {"phase": "ok"} and main["metadata"]["generation"] == 2
    labels = requests.patch(
        f"{kube.url}{AIS}/a3",
        data=json.dumps({"metadata": {"labels": {"x": "y"}}}),
        headers=MERGE,
        timeout=5,
    ).json()
    assert labels["metadata"]["generation"] == 2  # metadata is not spec
    before = labels["metadata"]["resourceVersion"]
    noop = requests.patch(
        f"{kube.url}{AIS}/a3",
        data=json.dumps({"spec": {"broker": "b2"}}),
        headers=MERGE,
        timeout=5,
    ).json()
    assert noop["metadata"]["resourceVersion"] == before  # no change, no new version


def test_label_selectors_and_namespaces_path(kube: EmulatorThread) -> None:
    for name, labels in (("t1", {"app": "a", "tier": "x"}), ("t2", {"app": "b"}), ("t3", {})):
        kube.create(TRIGGERS, {"metadata": {"name": name, "namespace": "sel", "labels": labels}})
    base = f"{kube.url}/apis/eventing.knative.dev/v1/namespaces/sel/triggers"

    def names(selector: str) -> list[str]:
        listing = requests.get(base, params={"labelSelector": selector}, timeout=5).json()
        assert listing["kind"] == "TriggerList"
        return [item["metadata"]["name"] for item in listing["items"]]

    assert names("app=a") == ["t1"]
    assert names("app!=a") == ["t2", "t3"]
    assert names("app in (a,b),!tier") == ["t2"]
    assert names("app") == ["t1", "t2"]
    kube.create(NAMESPACES, {"metadata": {"name": "sel"}})
    assert requests.get(f"{kube.url}/api/v1/namespaces", timeout=5).status_code == 200
    assert (
        requests.get(f"{kube.url}/api/v1/namespaces/sel", timeout=5).json()["metadata"]["name"]
        == "sel"
    )


def test_owner_deletion_collects_children(kube: EmulatorThread) -> None:
    owner = kube.create(AISERVICES, _ais("gc"), "gcns")
    ref = {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "name": "gc",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    kube.create(
        KSERVICES, {"metadata": {"name": "gc", "namespace": "gcns", "ownerReferences": [ref]}}
    )
    kube.create(
        TRIGGERS, {"metadata": {"name": "gc-t", "namespace": "gcns", "ownerReferences": [ref]}}
    )
    kube.create(TRIGGERS, {"metadata": {"name": "other", "namespace": "gcns"}})
    gone = requests.delete(
        f"{kube.url}/apis/aiservice.dev/v1alpha1/namespaces/gcns/aiservices/gc", timeout=5
    )
    assert gone.status_code == 200
    assert kube.find(KSERVICES, "gcns", "gc") is None
    assert [t["metadata"]["name"] for t in kube.list(TRIGGERS, "gcns")] == ["other"]


def test_an_object_with_two_owners_outlives_the_first(kube: EmulatorThread) -> None:
    """Kubernetes' collector: a dependent goes once none of its owners is left; the reference
    to a deleted owner is removed while another remains."""
    owners = [kube.create(AISERVICES, _ais(n), "gc2") for n in ("a", "b")]
    refs = [{"apiVersion": "aiservice.dev/v1alpha1", "kind": "AIService",
             "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
            for o in owners]  # fmt: skip
    kube.create(KSERVICES, {"metadata": {"name": "shared", "namespace": "gc2",
                                         "ownerReferences": refs}})  # fmt: skip
    kube.delete(AISERVICES, "gc2", "a")
    kept = kube.get(KSERVICES, "gc2", "shared")
    assert [r["name"] for r in kept["metadata"]["ownerReferences"]] == ["b"]
    kube.delete(AISERVICES, "gc2", "b")
    assert kube.find(KSERVICES, "gc2", "shared") is None


def test_finalizers_delay_deletion(kube: EmulatorThread) -> None:
    kube.create(
        AISERVICES, _ais("fin") | {"metadata": {"name": "fin", "finalizers": ["x/y"]}}, "ns1"
    )
    requests.delete(f"{kube.url}{AIS}/fin", timeout=5)
    assert kube.get(AISERVICES, "ns1", "fin")["metadata"]["deletionTimestamp"]
    requests.patch(
        f"{kube.url}{AIS}/fin",
        data=json.dumps({"metadata": {"finalizers": None}}),
        headers=MERGE,
        timeout=5,
    )
    assert kube.find(AISERVICES, "ns1", "fin") is None


def test_watch_streams_json_from_a_resource_version(kube: EmulatorThread) -> None:
    rv = kube.create(AISERVICES, _ais("w1"), "wns")["metadata"]["resourceVersion"]
    kube.patch(AISERVICES, "wns", "w1", {"spec": {"broker": "z"}})
    events: list[dict[str, object]] = []
    with requests.get(
        f"{kube.url}/apis/aiservice.dev/v1alpha1/namespaces/wns/aiservices",
        params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "1"},
        stream=True,
        timeout=5,
    ) as stream:
        assert stream.headers["Content-Type"].startswith("application/json")
        events.extend(json.loads(line) for line in stream.iter_lines() if line)
    assert [e["type"] for e in events] == ["MODIFIED"]
    wait_for(lambda: kube.requests(), what="the watch to be logged")


def test_events_with_generate_name(kube: EmulatorThread) -> None:
    url = f"{kube.url}/api/v1/namespaces/ev/events"
    body = {"metadata": {"generateName": "x."}, "reason": "R", "message": "m"}
    first = requests.post(url, json=body, timeout=5).json()["metadata"]["name"]
    second = requests.post(url, json=body, timeout=5).json()["metadata"]["name"]
    assert first != second and first.startswith("x.")


def test_the_emulated_aiservice_kind_is_the_crds() -> None:
    crd = yaml.safe_load(
        (Path(__file__).parents[2] / "crds" / "aiservice.dev_aiservices.yaml").read_text()
    )
    assert Kind.from_crd(crd) == AISERVICES


def test_the_crd_check_catches_what_the_api_server_would_prune_or_refuse() -> None:
    ok = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}
    check_status({"status": ok})
    assert pruned_fields(
        {"traffic": [{"model": "v1", "weight": 3}]}, schema()["properties"]["status"], "status"
    ) == ["status.traffic[0].weight"]
    with pytest.raises(jsonschema.ValidationError):
        check_status({"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}})
