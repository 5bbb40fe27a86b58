"""The real operator process (`python -m aiservice_operator`) on the real control plane,
installed by the chart and authenticated as the chart's ServiceAccount (a TokenRequest
token) under the chart's RBAC, so a missing permission fails here. Knative's real webhooks
admit (and default) every Service and Trigger it writes; the real garbage collector removes
its children. Knative Serving's controllers are the one stand-in
(tests/support/knative_status.py)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cluster import Cluster, condition, wait_for
from tests.support.operator_process import SA, OperatorProcess, start_operator


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = start_operator(cluster, tmp_path_factory.mktemp("operator"))
    yield op
    op.stop()


def manifest(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "consumes": [{"type": "com.example.review.submitted"}],
            "produces": "com.example.review.scored",
            "function": {
                "image": "registry.example/aiservice-functions:0.1",
                "entrypoint": "aiservice_functions.sentiment",
            },
            "models": [{"name": "v1", "uri": "file:///models/v1.pt"}],
            "traffic": {"stable": "v1"},
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def ready(
    cluster: Cluster, op: OperatorProcess, ns: str, name: str, status: str = "True"
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = cluster.get("aiservice", name, ns)
        cond = condition(obj, "Ready")
        if (
            obj
            and cond
            and cond.get("status") == status
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        ):
            return obj
        return None

    try:
        return wait_for(check, 90, f"{ns}/{name} Ready={status}")
    except AssertionError as err:
        raise AssertionError(f"{err}\noperator log:\n{op.tail()}") from None


def test_chart_rbac_is_what_the_operator_is_bound_to(cluster: Cluster, installed: None) -> None:
    """The token the operator uses is the chart's ServiceAccount, and it may do nothing the
    chart did not grant (no admin shortcut)."""
    out = cluster.kubectl("auth", "can-i", "--list", f"--as={SA}").stdout
    assert "aiservices.aiservice.dev" in out
    denied = cluster.kubectl("auth", "can-i", "delete", "namespaces", f"--as={SA}", check=False)
    assert denied.stdout.strip() == "no"


def test_create_is_admitted_by_knative_and_reports_ready(
    cluster: Cluster, operator: OperatorProcess, ns: str
) -> None:
    cluster.apply(manifest("scorer", ns))
    obj = ready(cluster, operator, ns, "scorer")
    svc = cluster.get("ksvc", "scorer", ns)
    assert svc is not None
    # Knative's own defaulting webhook ran on the operator's write, as the operator's identity.
    assert svc["metadata"]["annotations"]["serving.knative.dev/creator"] == SA
    assert svc["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    (container,) = svc["spec"]["template"]["spec"]["containers"]
    assert container.get("readinessProbe") or container.get("name"), container
    triggers = cluster.list("trigger", ns)
    assert len(triggers) == 1
    assert triggers[0]["metadata"]["annotations"].get("eventing.knative.dev/creator") == SA
    assert triggers[0]["spec"]["subscriber"]["ref"]["name"] == "scorer"
    assert obj["status"]["url"] == "http://scorer." + ns + ".svc.cluster.local"
    printed = cluster.kubectl("get", "ais", "-n", ns).stdout
    assert printed.split("\n")[0].split() == ["NAME", "READY", "STABLE", "CANARY", "WEIGHT",
                                              "URL", "AGE"]  # fmt: skip
    assert "scorer" in printed and "True" in printed


def test_a_spec_edit_rolls_a_new_revision(
    cluster: Cluster, operator: OperatorProcess, ns: str
) -> None:
    cluster.apply(manifest("edit", ns))
    first = ready(cluster, operator, ns, "edit")
    before = cluster.get("ksvc", "edit", ns)
    assert before is not None
    cluster.kubectl(
        "patch", "ais", "edit", "-n", ns, "--type=merge", "-p",
        json.dumps({"spec": {"models": [{"name": "v1", "uri": "file:///models/v2.pt"}]}}),
    )  # fmt: skip
    second = ready(cluster, operator, ns, "edit")
    assert second["metadata"]["generation"] == first["metadata"]["generation"] + 1
    after = cluster.get("ksvc", "edit", ns)
    assert after is not None
    name_before = before["spec"]["template"]["metadata"]["name"]
    assert after["spec"]["template"]["metadata"]["name"] != name_before


def test_delete_lets_the_garbage_collector_remove_the_children(
    cluster: Cluster, operator: OperatorProcess, ns: str
) -> None:
    cluster.apply(manifest("gone", ns))
    ready(cluster, operator, ns, "gone")
    assert cluster.list("trigger", ns) and cluster.list("revision", ns)
    cluster.kubectl("delete", "ais", "gone", "-n", ns, "--wait=true", timeout=120)
    wait_for(
        lambda: (
            not cluster.get("ksvc", "gone", ns)
            and not cluster.list("trigger", ns)
            and not cluster.list("revision", ns)
        ),
        90,
        "the garbage collector to remove the Service, Triggers and Revisions",
    )


def test_an_unowned_service_of_the_same_name_is_a_name_conflict(
    cluster: Cluster, operator: OperatorProcess, ns: str
) -> None:
    cluster.apply({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "taken", "namespace": ns},
        "spec": {"template": {"metadata": {"name": "taken-theirs"}, "spec": {
            "containers": [{"image": "registry.example/theirs:1"}]}}},
    })  # fmt: skip
    cluster.apply(manifest("taken", ns))
    obj = ready(cluster, operator, ns, "taken", status="False")
    cond = condition(obj, "Ready")
    assert cond is not None and cond["reason"] == "NameConflict"
    theirs = cluster.get("ksvc", "taken", ns)
    assert theirs is not None
    assert theirs["spec"]["template"]["metadata"]["name"] == "taken-theirs"
    assert not theirs["metadata"].get("ownerReferences")


def test_the_operator_rides_out_an_apiserver_and_etcd_restart(
    cluster: Cluster, operator: OperatorProcess, ns: str
) -> None:
    """Changes made while the operator's watches were down are seen once it reconnects, and
    what it had already written is not written again."""
    cluster.apply(manifest("steady", ns))
    ready(cluster, operator, ns, "steady")
    svc = cluster.get("ksvc", "steady", ns)
    assert svc is not None
    generation = svc["metadata"]["generation"]
    cluster.restart("etcd", "kube-apiserver")
    cluster.apply(manifest("after", ns))
    ready(cluster, operator, ns, "after")
    again = cluster.get("ksvc", "steady", ns)
    assert again is not None and again["metadata"]["generation"] == generation
    assert operator.proc is not None and operator.proc.poll() is None, operator.tail()
