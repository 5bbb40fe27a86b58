"""The real operator process (`python -m aiservice_operator`) on the real control plane,
installed by the chart and authenticated as the chart's ServiceAccount (a TokenRequest
token) under the chart's RBAC, so a missing permission fails here. Knative's real webhooks
admit (and default) every Service and Trigger it writes; the real garbage collector removes
its children. Knative Serving's controllers are the one stand-in (knative_status.py)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from knative_status import KnativeStatus

from tests.support.cluster import REPO_ROOT, Cluster, condition, wait_for

RELEASE = "aiservice-operator"
SYSTEM_NS = "aiservice-system"
SA = f"system:serviceaccount:{SYSTEM_NS}:{RELEASE}"


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


class OperatorProcess:
    """`python -m aiservice_operator` with the chart's environment and a ServiceAccount
    kubeconfig; restartable."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiservice_operator"], env=self.env, stdout=out,
            stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def chart_env(cluster: Cluster) -> dict[str, str]:
    """The plain environment the chart gives the operator's container."""
    manifest_text = cluster.helm("get", "manifest", RELEASE, "-n", SYSTEM_NS).stdout
    for doc in yaml.safe_load_all(manifest_text):
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == RELEASE:
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    raise AssertionError("the chart rendered no operator Deployment")


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> Iterator[None]:
    cluster.helm(
        "install", RELEASE, str(REPO_ROOT / "charts" / "aiservice-operator"),
        "-n", SYSTEM_NS, "--create-namespace",
    )  # fmt: skip
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/aiservices.aiservice.dev"
    )
    yield
    cluster.helm("uninstall", RELEASE, "-n", SYSTEM_NS)


@pytest.fixture(scope="module")
def knative(cluster: Cluster) -> Iterator[KnativeStatus]:
    with cluster.http() as client, KnativeStatus(client) as standin:
        yield standin


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    installed: None,
    knative: KnativeStatus,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    d = tmp_path_factory.mktemp("operator")
    token = cluster.token(SYSTEM_NS, RELEASE)
    kubeconfig = cluster.token_kubeconfig(d / "kubeconfig", token, SYSTEM_NS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "AISVC_"))}
    env.update(chart_env(cluster))
    env.update(
        KUBECONFIG=str(kubeconfig),
        POD_NAME="aiservice-operator-local",
        POD_ID="aiservice-operator-local",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "operator"), str(REPO_ROOT / "functions")]),
        AISVC_METRICS_PORT="0",
        AISVC_RETRY_DELAY_SECONDS="0.5",
        AISVC_RESYNC_SECONDS="10",
    )
    env.pop("AISVC_EVENT_STORE_TOKEN_FILE", None)  # a path inside the pod
    op = OperatorProcess(env, d / "operator.log")
    op.start()
    yield op
    op.stop()


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
    cluster: Cluster, operator: OperatorProcess, knative: KnativeStatus, ns: str
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
    cluster: Cluster, operator: OperatorProcess, knative: KnativeStatus, ns: str
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
    cluster: Cluster, operator: OperatorProcess, knative: KnativeStatus, ns: str
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
    cluster: Cluster, operator: OperatorProcess, knative: KnativeStatus, ns: str
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
    cluster: Cluster, operator: OperatorProcess, knative: KnativeStatus, ns: str
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
