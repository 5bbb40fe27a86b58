"""The real operator process, `python -m aiservice_operator`, as the chart runs it: the
chart's environment, and a kubeconfig holding only a TokenRequest token of the chart's
ServiceAccount, so the chart's RBAC is all it may do."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import REPO_ROOT, Cluster
from tests.support.processes import stop

RELEASE = "aiservice-operator"
SYSTEM_NS = "aiservice-system"
SA = f"system:serviceaccount:{SYSTEM_NS}:{RELEASE}"
SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class OperatorProcess:
    """One operator process; `stop()` then `start()` restarts it with the same settings."""

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
        if self.proc is not None:
            stop(self.proc, 20)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def _deployment(cluster: Cluster) -> dict[str, Any]:
    manifest_text = cluster.helm("get", "manifest", RELEASE, "-n", SYSTEM_NS).stdout
    for doc in yaml.safe_load_all(manifest_text):
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == RELEASE:
            return dict(doc)
    raise AssertionError("the chart rendered no operator Deployment")


def chart_env(cluster: Cluster, workdir: Path | None = None) -> dict[str, str]:
    """The plain environment the chart gives the operator's container. With `workdir`, a
    path into one of the pod's Secret volumes points at a local copy of the same Secret
    entry instead (the operator reads its token and sink key files at start)."""
    pod = _deployment(cluster)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    if workdir is None:
        return env
    secrets = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    for mount in container.get("volumeMounts", []):
        secret = secrets.get(mount["name"])
        if secret is None:
            continue
        data = (cluster.get("secret", secret["secretName"], SYSTEM_NS) or {}).get("data") or {}
        prefix = mount["mountPath"].rstrip("/") + "/"
        for name, value in list(env.items()):
            if value.startswith(prefix):
                key = value[len(prefix) :]
                local = workdir / "secrets" / mount["name"] / key
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(base64.b64decode(data.get(key, "")))
                env[name] = str(local)
    return env


def start_operator(
    cluster: Cluster, workdir: Path, extra_env: dict[str, str] | None = None
) -> OperatorProcess:
    token = cluster.token(SYSTEM_NS, RELEASE)
    kubeconfig = cluster.token_kubeconfig(workdir / "kubeconfig", token, SYSTEM_NS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "AISVC_"))}
    env.update(chart_env(cluster, workdir))
    # The pod's own ServiceAccount token (auth.mode kubernetes: the operator reads the
    # event store as itself): the TokenRequest token of the same account.
    own = workdir / "secrets" / "serviceaccount-token"
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text(token)
    for name, value in list(env.items()):
        if value == SA_TOKEN_PATH:
            env[name] = str(own)
    env.update(
        KUBECONFIG=str(kubeconfig),
        POD_NAME="aiservice-operator-local",
        POD_ID="aiservice-operator-local",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "operator"), str(REPO_ROOT / "functions")]),
        AISVC_METRICS_PORT="0",
        AISVC_RETRY_DELAY_SECONDS="0.5",
        AISVC_RESYNC_SECONDS="10",
    )
    env.update(extra_env or {})
    op = OperatorProcess(env, workdir / "operator.log")
    op.start()
    return op
