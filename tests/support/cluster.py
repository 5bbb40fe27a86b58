"""The real control plane (scripts/control-plane.sh): etcd, kube-apiserver, the
kube-controller-manager and Knative's own admission webhooks as local processes, driven with
the pinned kubectl and helm of scripts/helm.sh."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "control-plane.sh"
T = TypeVar("T")


class KubectlError(RuntimeError):
    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        self.stderr = proc.stderr
        self.returncode = proc.returncode


def tool(name: str) -> str:
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "helm.sh"), name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/helm.sh {name}: {proc.stderr}")
    return proc.stdout.strip()


def go_available() -> bool:
    return shutil.which("go") is not None


def binaries_built() -> bool:
    """The control plane's binaries are in the cache (then Go is not needed)."""
    proc = subprocess.run(["bash", str(SCRIPT), "built"], capture_output=True, check=False)
    return proc.returncode == 0


class Cluster:
    """One control plane with its own state folder; every port is free-picked."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.kubeconfig = state_dir / "kubeconfig"
        self.kubectl_bin = tool("kubectl")
        self.helm_bin = tool("helm")

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AISVC_CLUSTER_DIR": str(self.dir),
            "KUBECONFIG": str(self.kubeconfig),
        }

    def control(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(
            ["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"control-plane.sh {' '.join(args)}: {proc.stderr[-4000:]}")
        return proc.stdout

    def up(self, with_eventing: bool = False) -> Cluster:
        self.control("up", *(["--with-eventing"] if with_eventing else []))
        return self

    @property
    def eventing(self) -> bool:
        """Knative Eventing's data plane runs (up --with-eventing)."""
        return "eventing" in self.state

    @property
    def broker_ingress(self) -> str:
        """The broker ingress's ClusterIP, relayed to the host's loopback: a Broker's URL is
        `http://broker-ingress.knative-eventing.svc.cluster.local/<ns>/<name>`."""
        return f"http://127.0.0.1:{self.state['ports']['broker-ingress']}"

    def pod(self, name: str, argv: list[str], service: str | None = None) -> str:
        """Run `argv` in its own network namespace on the tier's bridge (as a pod); with
        `service` ("ns/name") it is registered as that Service. Returns its address."""
        extra = ["--service", service] if service else []
        return self.control("pod", name, *extra, "--", *argv).strip().splitlines()[-1]

    def pod_exec(
        self, name: str, argv: list[str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the network namespace of the pod `name` (its 127.0.0.1 and DNS)."""
        netns = f"{self.state['eventing']['netns']}-pod-{name}"
        return subprocess.run(
            ["ip", "netns", "exec", netns, *argv],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def down(self) -> None:
        self.control("down")

    @property
    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "state.json").read_text()))

    @property
    def server(self) -> str:
        return str(self.state["server"])

    def pid(self, component: str) -> int | None:
        pid = self.state["components"][component].get("pid")
        return int(pid) if pid else None

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise KubectlError(list(args), proc)
        return proc

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.helm_bin, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {proc.stderr}")
        return proc

    def apply(self, *docs: dict[str, Any], dry_run: bool = False) -> str:
        args = ["apply", "-f", "-"]
        if dry_run:
            args.append("--dry-run=server")
        return self.kubectl(*args, stdin=yaml.safe_dump_all(docs)).stdout

    def get(self, kind: str, name: str, ns: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json", "--ignore-not-found"]
        if ns:
            args += ["-n", ns]
        out = self.kubectl(*args).stdout
        return dict(json.loads(out)) if out.strip() else None

    def list(self, kind: str, ns: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-n", ns, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return list(json.loads(self.kubectl(*args).stdout)["items"])

    def namespace(self, name: str) -> str:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        # The serviceaccount controller makes `default`; Knative's webhook dry-runs pods as it.
        wait_for(lambda: self.get("serviceaccount", "default", name), 60, f"{name}/default SA")
        return name

    def token(self, ns: str, service_account: str, seconds: int = 3600) -> str:
        """A token from the TokenRequest API, as a pod of that ServiceAccount would get."""
        out = self.kubectl(
            "create", "token", service_account, "-n", ns, f"--duration={seconds}s"
        ).stdout
        return out.strip()

    def http(self) -> httpx.Client:
        """An admin client of the API server (client certificate, group system:masters)."""
        certs = self.dir / "certs"
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        context.load_cert_chain(str(certs / "admin.crt"), str(certs / "admin.key"))
        return httpx.Client(base_url=self.server, verify=context, timeout=10)

    def token_kubeconfig(self, path: Path, token: str, namespace: str = "default") -> Path:
        """A kubeconfig that authenticates with `token` only (as a pod's ServiceAccount)."""
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "local", "cluster": {
                "server": self.server, "certificate-authority": str(self.dir / "certs/ca.crt")}}],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {
                "cluster": "local", "user": "sa", "namespace": namespace}}],
        }  # fmt: skip
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return path

    def restart(self, *components: str) -> None:
        self.control("restart", *components)

    def stop(self, *components: str) -> None:
        self.control("stop", *components)

    def start(self, *components: str) -> None:
        self.control("start", *components)


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll until `check` returns something truthy; bounded, and says what it waited for."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as err:
            last = err
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return None
