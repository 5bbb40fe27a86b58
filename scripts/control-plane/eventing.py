"""Knative Eventing's own data plane for the cluster tier (`cluster.py up --with-eventing`).

Every Eventing process (controller, mt-broker-controller, broker ingress and filter, in-memory
channel controller and dispatcher), CoreDNS and any pod the tests start runs in its own
network namespace, with a veth on a bridge that lives in one more namespace, the "router".
The router runs kube-proxy (iptables mode), so ClusterIPs work, and forwards between the pods;
nothing of this touches the host's network namespace: the bridge, the addresses (POD_CIDR,
SERVICE_CIDR), the iptables rules and ip_forward all live inside namespaces made here, and no
namespace has a default route, so no packet can leave the machine. Deleting the namespaces
removes all of it.

Each process reaches the API server (host 127.0.0.1 only) through relay.py, which listens on
127.0.0.1 inside every namespace. Each is registered as Knative's manifests would have it: a
Service in knative-eventing with Endpoints and an EndpointSlice naming its address, and
`*.svc.cluster.local` names resolve through CoreDNS's kubernetes plugin.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

POD_PREFIX = "10.244.0."
POD_CIDR = POD_PREFIX + "0/24"
ROUTER_IP = POD_PREFIX + "1"
SERVICE_CIDR = "10.0.0.0/24"  # the API server's --service-cluster-ip-range
DNS_IP = POD_PREFIX + "2"
SYSTEM_NS = "knative-eventing"
NETNS_ETC = Path("/etc/netns")  # `ip netns exec` bind-mounts NETNS_ETC/<ns>/resolv.conf

# name: (pod address, ClusterIP Service in knative-eventing or None, container name)
COMPONENTS: dict[str, tuple[str, str | None, str]] = {
    "coredns": (DNS_IP, None, "coredns"),
    "eventing-controller": (POD_PREFIX + "3", None, "controller"),
    "mt-broker-controller": (POD_PREFIX + "4", None, "mt-broker-controller"),
    "broker-ingress": (POD_PREFIX + "5", "10.0.0.20", "ingress"),
    "broker-filter": (POD_PREFIX + "6", "10.0.0.21", "filter"),
    "imc-controller": (POD_PREFIX + "7", None, "controller"),
    "imc-dispatcher": (POD_PREFIX + "8", "10.0.0.22", "dispatcher"),
}
FIRST_TEST_POD = 50
IMAGE = "aisvc.invalid/not-pulled:0"  # image variables are required, never pulled here


def log(msg: str) -> None:
    print(f"control-plane: {msg}", file=sys.stderr, flush=True)


def prefix(d: Path) -> str:
    """Namespace names are unique per state folder, so two clusters do not collide."""
    return "aisvc-" + hashlib.sha256(str(d).encode()).hexdigest()[:6]


def netns(d: Path, name: str) -> str:
    return f"{prefix(d)}-{name}"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def in_ns(d: Path, name: str) -> list[str]:
    return ["ip", "netns", "exec", netns(d, name)]


def make_router(d: Path) -> None:
    r = netns(d, "router")
    ip("netns", "add", r)
    ip("-n", r, "link", "set", "lo", "up")
    ip("-n", r, "link", "add", "br0", "type", "bridge")
    ip("-n", r, "addr", "add", f"{ROUTER_IP}/24", "dev", "br0")
    ip("-n", r, "link", "set", "br0", "up")
    # A route for the ClusterIPs, so that the router's own connections (the tests' relay to
    # the broker ingress) pass routing; kube-proxy's DNAT rewrites them to a pod.
    ip("-n", r, "route", "add", SERVICE_CIDR, "dev", "br0")
    subprocess.run(
        [*in_ns(d, "router"), "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        check=True,
        capture_output=True,
    )


def make_pod(d: Path, name: str, addr: str) -> None:
    """A network namespace with `addr` on the bridge, routes to the pods and the ClusterIPs
    only (no default route), and a resolv.conf naming CoreDNS."""
    ns, r = netns(d, name), netns(d, "router")
    veth = "v" + addr.rsplit(".", 1)[1]
    ip("netns", "add", ns)
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", r, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    ip("-n", r, "link", "set", veth, "master", "br0", "up")
    ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "route", "add", SERVICE_CIDR, "via", ROUTER_IP)
    etc = NETNS_ETC / ns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(
        f"nameserver {DNS_IP}\nsearch {SYSTEM_NS}.svc.cluster.local svc.cluster.local "
        "cluster.local\noptions ndots:5\n"
    )


def remove_netns(d: Path) -> None:
    p = prefix(d) + "-"
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(p):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    if NETNS_ETC.is_dir():
        for etc in NETNS_ETC.glob(p + "*"):
            shutil.rmtree(etc, ignore_errors=True)


# --- what runs where ---------------------------------------------------------------------


def component_specs(d: Path, bin_dir: Path, api_port: int) -> dict[str, dict[str, Any]]:
    kubeconfig = str(d / "kubeconfig")
    base = {
        "KUBECONFIG": kubeconfig,
        "SYSTEM_NAMESPACE": SYSTEM_NS,
        "CONFIG_LOGGING_NAME": "config-logging",
        "CONFIG_OBSERVABILITY_NAME": "config-observability",
        "KUBERNETES_MIN_VERSION": "v1.34.0",
        "CLUSTER_DOMAIN": "cluster.local",
    }
    images = [
        "APISERVER_RA_IMAGE",
        "AUTH_PROXY_IMAGE",
        "EVENT_TRANSFORM_JSONATA_IMAGE",
        "INTEGRATION_SOURCE_TIMER_IMAGE",
        "INTEGRATION_SOURCE_AWS_S3_IMAGE",
        "INTEGRATION_SOURCE_AWS_SQS_IMAGE",
        "INTEGRATION_SOURCE_AWS_DDB_STREAMS_IMAGE",
        "INTEGRATION_SINK_LOG_IMAGE",
        "INTEGRATION_SINK_AWS_S3_IMAGE",
        "INTEGRATION_SINK_AWS_SQS_IMAGE",
        "INTEGRATION_SINK_AWS_SNS_IMAGE",
        "DISPATCHER_IMAGE",
    ]
    extra: dict[str, dict[str, str]] = {
        "eventing-controller": {"METRICS_DOMAIN": "knative.dev/eventing"}
        | dict.fromkeys(images, IMAGE),
        "mt-broker-controller": {"METRICS_DOMAIN": "knative.dev/eventing"},
        "broker-ingress": {"NAMESPACE": SYSTEM_NS, "INGRESS_PORT": "8080"},
        "broker-filter": {"NAMESPACE": SYSTEM_NS, "FILTER_PORT": "8080"},
        "imc-controller": {
            "WEBHOOK_NAME": "inmemorychannel-webhook",
            "WEBHOOK_PORT": "8443",
            "DISPATCHER_IMAGE": IMAGE,
        },
        "imc-dispatcher": {"MAX_IDLE_CONNS": "1000", "MAX_IDLE_CONNS_PER_HOST": "1000"},
    }
    specs: dict[str, dict[str, Any]] = {
        "relay": {
            "argv": [
                sys.executable,
                str(Path(__file__).with_name("relay.py")),
                str(d / "relay.json"),
            ],
            "env": {},
        },
        "kube-proxy": {
            "argv": [
                *in_ns(d, "router"),
                str(bin_dir / "kube-proxy"),
                f"--kubeconfig={kubeconfig}",
                "--proxy-mode=iptables",
                "--hostname-override=aisvc-node",
                f"--cluster-cidr={POD_CIDR}",
                "--masquerade-all",
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256",
                "--v=1",
            ],
            "env": {},
        },
        "coredns": {
            "argv": [*in_ns(d, "coredns"), str(bin_dir / "coredns"), "-conf", str(d / "Corefile")],
            "env": {},
        },
    }
    for name, (_addr, _svc, container) in COMPONENTS.items():
        if name == "coredns":
            continue
        specs[name] = {
            "argv": [*in_ns(d, name), str(bin_dir / name)],
            "env": base
            | {"POD_NAME": f"{name}-0", "CONTAINER_NAME": container}
            | extra.get(name, {}),
        }
    return specs


def corefile(d: Path) -> str:
    return (
        ".:53 {\n    errors\n    ready 127.0.0.1:8181\n"
        f"    kubernetes cluster.local {{\n        kubeconfig {d / 'kubeconfig'}\n    }}\n}}\n"
    )


def relay_rules(d: Path, api_port: int, ingress_port: int) -> list[dict[str, Any]]:
    """The API server inside every namespace; the broker ingress's ClusterIP on the host."""
    rules = [
        {"listen": [netns(d, n), "127.0.0.1", api_port], "connect": [None, "127.0.0.1", api_port]}
        for n in ["router", *COMPONENTS]
    ]
    rules.append(
        {
            "listen": [None, "127.0.0.1", ingress_port],
            "connect": [netns(d, "router"), COMPONENTS["broker-ingress"][1], 80],
        }
    )
    return rules


def service_docs(
    name: str, ns: str, addr: str, cluster_ip: str | None, port: int = 80, target: int = 8080
) -> list[dict[str, Any]]:
    """A Service with the Endpoints and EndpointSlice a kubelet-run pod would have given it
    (no endpoints controller runs: there are no Pods)."""
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "ports": [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}]
        },
    }
    if cluster_ip:
        svc["spec"]["clusterIP"] = cluster_ip
    eps = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns},
        "subsets": [
            {
                "addresses": [{"ip": addr}],
                "ports": [{"name": "http", "port": target, "protocol": "TCP"}],
            }
        ],
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-local",
            "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": "aiservice-cluster-tier",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [addr], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": target, "protocol": "TCP"}],
    }
    return [svc, eps, slice_]


def manifests(ev_root: Path) -> list[dict[str, Any]]:
    """The in-memory channel's CRD and config maps, the Services of the data plane, and the
    imc-dispatcher Deployment its controller checks (its status is written after)."""
    import yaml

    docs: list[dict[str, Any]] = []
    imc = ev_root / "knative" / "channels" / "in-memory-channel"
    for part in ("resources", "configmaps"):
        for f in sorted((imc / part).glob("*.yaml")):
            docs += [x for x in yaml.safe_load_all(f.read_text()) if x]
    docs += service_docs("kube-dns", "kube-system", DNS_IP, "10.0.0.10")
    for name, (addr, cluster_ip, _c) in COMPONENTS.items():
        if cluster_ip:
            docs += service_docs(name, SYSTEM_NS, addr, cluster_ip)
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "imc-dispatcher", "namespace": SYSTEM_NS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "imc-dispatcher"}},
                "template": {
                    "metadata": {"labels": {"app": "imc-dispatcher"}},
                    "spec": {"containers": [{"name": "dispatcher", "image": IMAGE}]},
                },
            },
        }
    )
    return docs


DISPATCHER_STATUS = {
    "status": {
        "observedGeneration": 1,
        "replicas": 1,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "updatedReplicas": 1,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "LocalProcess",
                "message": "imc-dispatcher runs as a process in its network namespace",
            }
        ],
    }
}


def status_patch() -> str:
    return json.dumps(DISPATCHER_STATUS)
