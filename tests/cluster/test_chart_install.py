"""`helm install`, `upgrade` and `uninstall` of the chart on the real API server: every object
it renders is admitted (schema, RBAC escalation checks, the monitors' own CRDs), with
default values and with others (PostgreSQL secret, ServiceMonitor and PodMonitor, two
replicas), and uninstall leaves none of the release's objects behind but those the chart
keeps on purpose (`helm.sh/resource-policy: keep`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import REPO_ROOT, Cluster

CHART = REPO_ROOT / "charts" / "aiservice-operator"
OTHER_VALUES = {
    "operator": {"replicas": 2},
    "eventStore": {
        "replicas": 2,
        "database": {"type": "postgresql", "postgresql": {"existingSecret": "pg-dsn"}},
    },
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "podMonitor": {"enabled": True, "labels": {"release": "prom"}},
    },
}


def _docs(cluster: Cluster, release: str, ns: str) -> list[dict[str, Any]]:
    text = cluster.helm("get", "manifest", release, "-n", ns).stdout
    return [d for d in yaml.safe_load_all(text) if d and d.get("kind")]


def _release_objects(cluster: Cluster, release: str, ns: str) -> list[tuple[str, str]]:
    return [(d["kind"], d["metadata"]["name"]) for d in _docs(cluster, release, ns)]


def _namespaces(cluster: Cluster, release: str, ns: str) -> dict[tuple[str, str], str]:
    """Where each object lives: the release namespace unless the chart names another (the
    Role that reads Knative's config-features sits in knative-serving)."""
    return {
        (d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace") or ns
        for d in _docs(cluster, release, ns)
    }


def _kept(cluster: Cluster, release: str, ns: str) -> set[tuple[str, str]]:
    """Objects the chart keeps on uninstall on purpose (the event store's data and token)."""
    return {
        (d["kind"], d["metadata"]["name"])
        for d in _docs(cluster, release, ns)
        if (d["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"
    }


def _exists(cluster: Cluster, kind: str, name: str, ns: str) -> bool:
    out = cluster.kubectl(
        "get", kind, name, "-n", ns, "--ignore-not-found", "-o", "name", check=False
    )
    return bool(out.stdout.strip())


def test_install_upgrade_uninstall(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    release = "chart-a"
    cluster.helm("install", release, str(CHART), "-n", ns)
    objects = _release_objects(cluster, release, ns)
    where = _namespaces(cluster, release, ns)
    kinds = {k for k, _ in objects}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= kinds
    for kind, name in objects:
        if kind not in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"):
            assert _exists(cluster, kind, name, where[kind, name]), (kind, name)
    crd = json.loads(cluster.kubectl("get", "crd", "aiservices.aiservice.dev", "-o", "json").stdout)
    established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
    assert established and established[0]["status"] == "True"

    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(OTHER_VALUES))
    cluster.helm("upgrade", release, str(CHART), "-n", ns, "-f", str(values))
    upgraded = _release_objects(cluster, release, ns)
    kept = _kept(cluster, release, ns)
    assert {"ServiceMonitor", "PodMonitor"} <= {k for k, _ in upgraded}
    deployments = json.loads(cluster.kubectl("get", "deploy", "-n", ns, "-o", "json").stdout)
    assert {d["spec"]["replicas"] for d in deployments["items"]} == {2}

    cluster.helm("uninstall", release, "-n", ns, "--wait")
    for kind, name in upgraded:
        if kind not in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"):
            assert _exists(cluster, kind, name, where.get((kind, name), ns)) == (
                (kind, name) in kept
            ), (
                kind,
                name,
            )
    left = cluster.kubectl("get", "clusterrole", "-o", "name").stdout
    assert release not in left


def test_install_with_other_values(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(OTHER_VALUES))
    cluster.helm("install", "chart-b", str(CHART), "-n", ns, "-f", str(values))
    kinds = {k for k, _ in _release_objects(cluster, "chart-b", ns)}
    assert {"ServiceMonitor", "PodMonitor", "PodDisruptionBudget"} <= kinds
    cluster.helm("uninstall", "chart-b", "-n", ns, "--wait")


def _store_auth_mode(cluster: Cluster, ns: str) -> str | None:
    found = json.loads(
        cluster.kubectl(
            "get", "deploy", "-n", ns, "-l", "app.kubernetes.io/component=event-store", "-o", "json"
        ).stdout
    )["items"]  # fmt: skip
    assert len(found) == 1
    env = found[0]["spec"]["template"]["spec"]["containers"][0].get("env") or []
    return next((e["value"] for e in env if e["name"] == "AISVC_EVENT_STORE_AUTH_MODE"), None)


def test_auth_mode_is_kubernetes_on_install_and_kept_on_upgrade(cluster: Cluster, ns: str) -> None:
    """A fresh install runs kubernetes mode; an upgrade keeps the running store's mode, and a
    store from before the setting (no mode in its environment) keeps its shared token."""
    release = "chart-c"
    # The user ClusterRoles are cluster-wide: the session's main release owns them.
    args = [release, str(CHART), "-n", ns, "--set", "eventStore.auth.roles.create=false"]
    cluster.helm("install", *args)
    assert _store_auth_mode(cluster, ns) == "kubernetes"
    cluster.helm("upgrade", *args)
    assert _store_auth_mode(cluster, ns) == "kubernetes"
    store = f"deployment/{release}-aiservice-operator-event-store"
    cluster.kubectl("set", "env", store, "-n", ns, "AISVC_EVENT_STORE_AUTH_MODE-")
    cluster.helm("upgrade", *args)
    assert _store_auth_mode(cluster, ns) == "token"
    cluster.helm("upgrade", *args, "--set", "eventStore.auth.mode=kubernetes")
    assert _store_auth_mode(cluster, ns) == "kubernetes"
    cluster.helm("uninstall", release, "-n", ns, "--wait")
