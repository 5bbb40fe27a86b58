"""End to end on a real cluster: kind + Knative Serving/Eventing + the Helm chart.

Opt-in (`pytest tests/e2e --e2e` or `make e2e`): it needs a Docker engine, `kind`, `kubectl`,
`helm` and a network to pull Knative's release manifests and images; without them it skips
and names what is missing. It builds both images, loads them into the kind node, installs
Knative from pinned release manifests, a Prometheus that scrapes the functions, and the
operator with `helm install`, then:

1. applies the sentiment AIService and a Trigger that records its replies in the event store,
   sends events through the Broker and checks every reply (type, model version);
2. sends a malformed event and finds it among the dead letters (code 400, not retried);
3. rolls out v2 as a canary with short steps, keeps events flowing, and waits for the
   promotion: Succeeded, 100% on v2.

Set AISVC_E2E_KEEP=1 to keep the cluster afterwards; AISVC_E2E_NODE_IMAGE to change the node.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.processes import stop

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "aisvc-e2e"
NODE_IMAGE = os.environ.get("AISVC_E2E_NODE_IMAGE", "kindest/node:v1.34.0")
KNATIVE = "knative-v1.22.0"
MANIFESTS = [
    f"https://github.com/knative/serving/releases/download/{KNATIVE}/serving-crds.yaml",
    f"https://github.com/knative/serving/releases/download/{KNATIVE}/serving-core.yaml",
    f"https://github.com/knative/net-kourier/releases/download/{KNATIVE}/kourier.yaml",
    f"https://github.com/knative/eventing/releases/download/{KNATIVE}/eventing-crds.yaml",
    f"https://github.com/knative/eventing/releases/download/{KNATIVE}/eventing-core.yaml",
    f"https://github.com/knative/eventing/releases/download/{KNATIVE}/in-memory-channel.yaml",
    f"https://github.com/knative/eventing/releases/download/{KNATIVE}/mt-channel-broker.yaml",
]
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
OPERATOR_IMAGE = "aiservice-operator:e2e"
FUNCTIONS_IMAGE = "aiservice-functions:e2e"
SYSTEM_NS = "aiservice-system"
NS = "e2e"
EVENT_STORE = f"http://aiservice-event-store.{SYSTEM_NS}.svc.cluster.local"
PROMETHEUS_URL = "http://prometheus.monitoring.svc.cluster.local:9090"


def _tool(name: str) -> str | None:
    local = ROOT / ".tools" / "bin" / name
    return shutil.which(name) or (str(local) if os.access(local, os.X_OK) else None)


def missing_prerequisites() -> list[str]:
    """What this machine lacks for the suite, in words (empty: it can run)."""
    missing = []
    docker = shutil.which("docker")
    if docker is None:
        missing.append("docker CLI")
    elif subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        missing.append("a running Docker engine (`docker info` fails)")
    for tool in ("kind", "kubectl", "helm"):
        if _tool(tool) is None:
            missing.append(f"`{tool}` on PATH")
    try:
        socket.create_connection(("github.com", 443), timeout=5).close()
    except OSError:
        missing.append("network access to github.com (Knative release manifests)")
    return missing


def run(*args: str, timeout: float = 600, input_text: str | None = None) -> str:
    """Run a command; fail the test with its output when it fails."""
    proc = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, input=input_text, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 3.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.SubprocessError, httpx.HTTPError, KeyError):
            last = check()
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_bin: str
    helm_bin: str

    def kubectl(self, *args: str, timeout: float = 300, input_text: str | None = None) -> str:
        return run(
            self.kubectl_bin,
            "--kubeconfig",
            str(self.kubeconfig),
            *args,
            timeout=timeout,
            input_text=input_text,
        )

    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str, namespace: str = NS) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json")))

    @contextlib.contextmanager
    def port_forward(self, namespace: str, target: str, remote_port: int) -> Iterator[str]:
        """A local base URL forwarded to a Service port inside the cluster."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            local = s.getsockname()[1]
        proc = subprocess.Popen(
            [
                self.kubectl_bin,
                "--kubeconfig",
                str(self.kubeconfig),
                "port-forward",
                "-n",
                namespace,
                target,
                f"{local}:{remote_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(f"port-forward to {target}", lambda: _port_open(local), 60, every=0.5)
            yield f"http://127.0.0.1:{local}"
        finally:
            stop(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = missing_prerequisites()
    if missing:
        pytest.skip("end-to-end suite needs " + "; ".join(missing))
    kind, kubectl, helm = _tool("kind"), _tool("kubectl"), _tool("helm")
    assert kind and kubectl and helm
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    subprocess.run([kind, "delete", "cluster", "--name", CLUSTER], capture_output=True, check=False)
    run(
        kind,
        "create",
        "cluster",
        "--name",
        CLUSTER,
        "--image",
        NODE_IMAGE,
        "--kubeconfig",
        str(kubeconfig),
        "--wait",
        "180s",
        timeout=900,
    )
    try:
        yield Cluster(kubeconfig, kubectl, helm)
    finally:
        if os.environ.get("AISVC_E2E_KEEP") != "1":
            subprocess.run([kind, "delete", "cluster", "--name", CLUSTER], check=False)


@pytest.fixture(scope="module")
def knative(cluster: Cluster) -> None:
    """Knative Serving (with Kourier) and Eventing (in-memory channel, MT broker)."""
    for url in MANIFESTS:
        cluster.kubectl("apply", "-f", url, timeout=600)
        if url.endswith("-crds.yaml"):
            cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
    cluster.kubectl(
        "patch",
        "configmap/config-network",
        "-n",
        "knative-serving",
        "--type",
        "merge",
        "-p",
        '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}',
    )
    for ns in ("knative-serving", "kourier-system", "knative-eventing"):
        cluster.kubectl(
            "wait",
            "deployment",
            "--all",
            "-n",
            ns,
            "--for=condition=Available",
            "--timeout=600s",
            timeout=660,
        )


def _prometheus_objects() -> list[dict[str, Any]]:
    """A plain Prometheus that scrapes the function pods and labels their series the way
    the canary analysis selects them (namespace_name, revision_name)."""
    labels = {"app": "prometheus"}
    scrape = {
        "global": {"scrape_interval": "5s"},
        "scrape_configs": [
            {
                "job_name": "aiservice-functions",
                "kubernetes_sd_configs": [{"role": "pod"}],
                "relabel_configs": [
                    {
                        "source_labels": [
                            "__meta_kubernetes_pod_label_app_kubernetes_io_managed_by",
                            "__meta_kubernetes_pod_container_port_name",
                        ],
                        "regex": "aiservice-operator;user-port",
                        "action": "keep",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_namespace"],
                        "target_label": "namespace_name",
                    },
                    {
                        "source_labels": [
                            "__meta_kubernetes_pod_label_serving_knative_dev_revision"
                        ],
                        "target_label": "revision_name",
                    },
                ],
            }
        ],
    }
    meta = {"name": "prometheus", "namespace": "monitoring", "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "e2e-prometheus"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "e2e-prometheus"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "e2e-prometheus",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {"prometheus.yml": yaml.safe_dump(scrape)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "prometheus",
                        "containers": [
                            {
                                "name": "prometheus",
                                "image": PROMETHEUS_IMAGE,
                                "args": ["--config.file=/etc/prometheus/prometheus.yml"],
                                "ports": [{"name": "http", "containerPort": 9090}],
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/prometheus"}
                                ],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "prometheus"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 9090}]},
        },
    ]


@pytest.fixture(scope="module")
def prometheus(cluster: Cluster) -> None:
    cluster.apply(_prometheus_objects())
    cluster.kubectl(
        "rollout",
        "status",
        "deployment/prometheus",
        "-n",
        "monitoring",
        "--timeout=300s",
        timeout=330,
    )


@pytest.fixture(scope="module")
def operator(cluster: Cluster, knative: None, prometheus: None) -> None:
    """Both images built here, loaded into the node, the chart installed."""
    kind = _tool("kind")
    assert kind
    for dockerfile, tag in (
        ("operator/Dockerfile", OPERATOR_IMAGE),
        ("functions/Dockerfile", FUNCTIONS_IMAGE),
    ):
        run("docker", "build", "-f", str(ROOT / dockerfile), "-t", tag, str(ROOT), timeout=1800)
        run(kind, "load", "docker-image", tag, "--name", CLUSTER, timeout=600)
    repository, tag = OPERATOR_IMAGE.split(":")
    run(
        cluster.helm_bin,
        "upgrade",
        "--install",
        "aiservice-operator",
        str(ROOT / "charts" / "aiservice-operator"),
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--namespace",
        SYSTEM_NS,
        "--create-namespace",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        f"rollout.prometheus.url={PROMETHEUS_URL}",
        "--wait",
        "--timeout",
        "5m",
        timeout=400,
    )
    cluster.kubectl("create", "namespace", NS)
    cluster.apply(
        [
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {"name": "default", "namespace": NS},
            }
        ]
    )
    cluster.kubectl(
        "wait", "broker/default", "-n", NS, "--for=condition=Ready", "--timeout=180s", timeout=200
    )


def _example(name: str) -> dict[str, Any]:
    doc = dict(yaml.safe_load((ROOT / "examples" / name).read_text()))
    doc["metadata"]["namespace"] = NS
    doc["spec"]["function"]["image"] = FUNCTIONS_IMAGE
    # A kind node has few CPUs: one small pod per revision.
    doc["spec"]["function"].pop("resources", None)
    doc["spec"]["autoscaling"] = {"minScale": 1, "maxScale": 1}
    return doc


def _ready(cluster: Cluster, name: str) -> bool:
    status = cluster.get("aiservice", name).get("status", {})
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


@dataclass
class Clients:
    broker: str
    store: str
    token: str

    def send(self, text: str, *, data: Any = None) -> str:
        event_id = str(uuid.uuid4())
        body = json.dumps({"text": text} if data is None else data)
        response = httpx.post(
            f"{self.broker}/{NS}/default",
            content=body,
            headers={
                "ce-specversion": "1.0",
                "ce-id": event_id,
                "ce-source": "/e2e/shop",
                "ce-type": "com.example.review.submitted",
                "content-type": "application/json",
            },
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return event_id

    def records(self, kind: str, name: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.store}/v1/events",
            params={"kind": kind, "namespace": NS, "name": name, "limit": "1000"},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def record(self, seq: int) -> dict[str, Any]:
        response = httpx.get(
            f"{self.store}/v1/events/{seq}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return dict(response.json())


@pytest.fixture(scope="module")
def clients(cluster: Cluster, operator: None) -> Iterator[Clients]:
    secret = cluster.get("secret", "aiservice-operator-event-store-token", SYSTEM_NS)
    token = base64.b64decode(secret["data"]["token"]).decode()
    with (
        cluster.port_forward("knative-eventing", "svc/broker-ingress", 80) as broker,
        cluster.port_forward(SYSTEM_NS, "svc/aiservice-event-store", 80) as store,
    ):
        yield Clients(broker, store, token)


@pytest.fixture(scope="module")
def sentiment(cluster: Cluster, clients: Clients) -> dict[str, Any]:
    """The sentiment AIService, Ready, with its replies recorded in the event store."""
    service = _example("sentiment.yaml")
    replies = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "record-replies", "namespace": NS},
        "spec": {
            "broker": "default",
            "filter": {"attributes": {"type": service["spec"]["produces"]}},
            "subscriber": {"uri": f"{EVENT_STORE}/v1/namespaces/{NS}/aiservices/replies/audit"},
        },
    }
    cluster.apply([service, replies])
    wait_for("the sentiment AIService to be Ready", lambda: _ready(cluster, "sentiment"), 600)
    return service


def test_events_through_the_broker_get_replies(clients: Clients, sentiment: dict[str, Any]) -> None:
    sent = [clients.send(f"review {i}: works great, love it") for i in range(10)]
    replies = wait_for(
        "10 replies in the event store",
        lambda: (r := clients.records("audit", "replies")) and len(r) >= 10 and r,
        timeout=180,
    )
    assert {r["type"] for r in replies} == {sentiment["spec"]["produces"]}
    detail = clients.record(replies[0]["seq"])
    assert detail["event"]["modelversion"] == "v1"
    assert len(sent) == 10


def test_a_malformed_event_is_dead_lettered(clients: Clients, sentiment: dict[str, Any]) -> None:
    event_id = clients.send("", data=["not", "an", "object"])
    letters = wait_for(
        "the malformed event among the dead letters",
        lambda: [d for d in clients.records("dead-letter", "sentiment") if d["id"] == event_id],
        timeout=180,
    )
    assert letters[0]["errorCode"] == 400
    assert letters[0]["receipts"] == 1, "a 400 must not be retried"


def test_canary_is_promoted_step_by_step(
    cluster: Cluster, clients: Clients, sentiment: dict[str, Any]
) -> None:
    canary = _example("canary.yaml")
    canary["spec"]["rollout"]["interval"] = "15s"
    canary["spec"]["rollout"]["analysis"]["minEvents"] = 5
    cluster.apply([canary])
    weights: set[int] = set()

    def promoted() -> bool:
        for i in range(10):
            clients.send(f"canary traffic {i}: solid product")
        rollout = cluster.get("aiservice", "sentiment").get("status", {}).get("rollout", {})
        if rollout.get("weight") is not None:
            weights.add(int(rollout["weight"]))
        assert rollout.get("phase") not in {"Failed", "RollingBack"}, rollout
        return rollout.get("phase") == "Succeeded"

    wait_for("the canary rollout to succeed", promoted, timeout=600, every=5)
    traffic = cluster.get("aiservice", "sentiment")["status"]["traffic"]
    assert [(t["model"], t["percent"]) for t in traffic if t["percent"]] == [("v2", 100)]
    assert weights & {10, 25, 50}, f"no intermediate step observed: {sorted(weights)}"
