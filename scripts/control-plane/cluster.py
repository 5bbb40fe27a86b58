"""A real control plane on loopback: etcd, kube-apiserver (RBAC, admission), the
kube-controller-manager (garbage collector, namespace, service-account and token
controllers) and Knative Serving's and Eventing's admission webhooks, all as local processes
built by build.sh. Knative's controllers do not run (they need pods); its CRDs, config maps
and webhook configurations are applied, and an ExternalName Service points each webhook
configuration at the local webhook process. prometheus-operator's ServiceMonitor and
PodMonitor CRDs are applied too (the chart's optional monitors).

    cluster.py up [--with-eventing]   start everything, wait until it admits, print the
                                      kubeconfig's path; --with-eventing adds Knative
                                      Eventing's data plane (eventing.py)
    cluster.py down    stop every process started by `up`, remove the state folder and every
                       network namespace `up` made
    cluster.py stop|start|restart COMPONENT...   (etcd, kube-apiserver, ...; for tests)
    cluster.py pod NAME [--service NS/SVC] -- ARGV...
        (--with-eventing) run ARGV in a new network namespace on the tier's bridge, print its
        address; --service registers it as Service NS/SVC (port 80 to the pod's 8080)

The state folder (AISVC_CLUSTER_DIR, default .cluster/ in the checkout) holds certificates,
etcd's data, logs, the admin kubeconfig and state.json. Every port is picked free at `up`,
so several control planes (and other servers) can run on one machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import eventing
import relay
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONTROLLERS = [
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
]
# Knative webhook configurations not applied: SinkBinding mutates every Deployment and Pod
# with failurePolicy Fail, and nothing here uses it.
SKIPPED_WEBHOOKS = {"sinkbindings.webhook.sources.knative.dev"}


def log(msg: str) -> None:
    print(f"control-plane: {msg}", file=sys.stderr, flush=True)


def state_dir() -> Path:
    return Path(os.environ.get("AISVC_CLUSTER_DIR", REPO / ".cluster")).resolve()


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw)


def kubectl() -> str:
    return run("bash", str(REPO / "scripts" / "helm.sh"), "kubectl").stdout.strip()


# --- certificates ----------------------------------------------------------------------


def make_certs(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        run("openssl", *args, cwd=d)

    ossl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "30",
        "-subj",
        "/CN=aiservice-test-ca",
    )

    def leaf(name: str, subj: str, ext: str) -> None:
        (d / f"{name}.ext").write_text(ext)
        ossl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subj,
        )
        ossl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "30",
            "-extfile",
            f"{name}.ext",
        )

    sans = ",".join(
        [
            "IP:127.0.0.1",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "IP:10.0.0.1",
        ]
    )
    leaf("apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    leaf("admin", "/O=system:masters/CN=admin", "extendedKeyUsage=clientAuth\n")
    ossl("genrsa", "-out", "sa.key", "2048")
    ossl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def write_kubeconfig(path: Path, server: str, certs: Path) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server, "certificate-authority": str(certs / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(certs / "admin.crt"),
                    "client-key": str(certs / "admin.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "local",
                "context": {"cluster": "local", "user": "admin", "namespace": "default"},
            }
        ],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)


# --- processes ---------------------------------------------------------------------------


def component_specs(d: Path, bin_dir: Path, ports: dict[str, int]) -> dict[str, dict[str, Any]]:
    """How each component is started: its argv and extra environment."""
    return {
        "etcd": {"argv": _etcd_argv(d, bin_dir, ports), "env": {}},
        "kube-apiserver": {"argv": _apiserver_argv(d, bin_dir, ports), "env": {}},
        "kube-controller-manager": {"argv": _kcm_argv(d, bin_dir, ports), "env": {}},
        "serving-webhook": _webhook_spec(
            d, bin_dir / "serving-webhook", ports, "serving", "knative-serving", "webhook"
        ),
        "eventing-webhook": _webhook_spec(
            d,
            bin_dir / "eventing-webhook",
            ports,
            "eventing",
            "knative-eventing",
            "eventing-webhook",
        ),
    }


def _etcd_argv(d: Path, bin_dir: Path, ports: dict[str, int]) -> list[str]:
    etcd = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    return [
        str(bin_dir / "etcd"),
        "--name",
        "n0",
        "--data-dir",
        str(d / "etcd"),
        "--listen-client-urls",
        etcd,
        "--advertise-client-urls",
        etcd,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        f"n0={peer}",
        "--unsafe-no-fsync",
        "--listen-metrics-urls",
        f"http://127.0.0.1:{ports['etcd-metrics']}",
        "--auto-compaction-retention=1",
        "--log-level=warn",
    ]


def _apiserver_argv(d: Path, bin_dir: Path, ports: dict[str, int]) -> list[str]:
    c = d / "certs"
    api = f"https://127.0.0.1:{ports['apiserver']}"
    return [
        str(bin_dir / "kube-apiserver"),
        "--etcd-servers",
        f"http://127.0.0.1:{ports['etcd']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports['apiserver']}",
        f"--tls-cert-file={c / 'apiserver.crt'}",
        f"--tls-private-key-file={c / 'apiserver.key'}",
        f"--client-ca-file={c / 'ca.crt'}",
        f"--service-account-issuer={api}",
        f"--service-account-key-file={c / 'sa.pub'}",
        f"--service-account-signing-key-file={c / 'sa.key'}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--authorization-mode=RBAC",
        "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,"
        "MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        f"--cert-dir={d / 'apiserver-certs'}",
    ]


def _kcm_argv(d: Path, bin_dir: Path, ports: dict[str, int]) -> list[str]:
    c = d / "certs"
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={d / 'kubeconfig'}",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--service-account-private-key-file={c / 'sa.key'}",
        f"--root-ca-file={c / 'ca.crt'}",
        "--leader-elect=false",
        "--use-service-account-credentials=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['kcm']}",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez",
        f"--cert-dir={d / 'kcm-certs'}",
        "--concurrent-gc-syncs=5",
    ]


def _webhook_spec(
    d: Path, binary: Path, ports: dict[str, int], part: str, namespace: str, webhook: str
) -> dict[str, Any]:
    """A Knative webhook as a local process: the environment its pod would have."""
    return {
        "argv": [str(binary), "--disable-ha"],
        "env": {
            "KUBECONFIG": str(d / "kubeconfig"),
            "CONFIG_LOGGING_NAME": "config-logging",
            "CONFIG_OBSERVABILITY_NAME": "config-observability",
            "KUBERNETES_MIN_VERSION": "v1.34.0",
            "SYSTEM_NAMESPACE": namespace,
            "WEBHOOK_NAME": webhook,
            "WEBHOOK_PORT": str(ports[f"{part}-webhook"]),
            "PROFILING_PORT": str(ports[f"{part}-profiling"]),
            "METRICS_PROMETHEUS_PORT": str(ports[f"{part}-metrics"]),
            "POD_NAME": f"{webhook}-local",
        },
    }


def load_state(d: Path) -> dict[str, Any]:
    return dict(json.loads((d / "state.json").read_text()))


def save_state(d: Path, state: dict[str, Any]) -> None:
    tmp = d / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(d / "state.json")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours is not alive
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start(d: Path, state: dict[str, Any], name: str) -> None:
    spec = state["components"][name]
    logf = (d / "logs" / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        spec["argv"],
        env={**os.environ, **spec["env"]},
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=d,
    )
    spec["pid"] = proc.pid
    save_state(d, state)


def stop(d: Path, state: dict[str, Any], name: str, grace: float = 15.0) -> None:
    pid = state["components"][name].get("pid")
    if not pid or not alive(pid):
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)
    state["components"][name]["pid"] = None
    save_state(d, state)


# --- readiness ---------------------------------------------------------------------------


def wait_for(what: str, check: Any, timeout: float, d: Path, name: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if name is not None:
            pid = load_state(d)["components"][name].get("pid")
            if pid and not alive(pid):
                raise SystemExit(
                    f"control-plane: {name} exited; see {d}/logs/{name}.log:\n"
                    + tail(d / "logs" / f"{name}.log")
                )
        try:
            if check():
                return
        except Exception as err:
            last = err
        time.sleep(0.3)
    where = f"; see {d}/logs/{name}.log:\n" + tail(d / "logs" / f"{name}.log") if name else ""
    raise SystemExit(f"control-plane: {what} not ready after {timeout:.0f}s ({last}){where}")


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def https_ok(url: str, certs: Path, client: bool = True) -> bool:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if client:
        ctx.load_cert_chain(str(certs / "admin.crt"), str(certs / "admin.key"))
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
        return bool(resp.status == 200)


def tls_listening(port: int) -> bool:
    """The webhook serves TLS once its certificate controller has filled the Secret."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw, ctx.wrap_socket(raw):
        return True


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return bool(resp.status == 200)


def kc(d: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        [load_state(d)["kubectl"], "--kubeconfig", str(d / "kubeconfig"), *args],
        input=stdin,
        text=True,
        capture_output=True,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


# --- Knative manifests -------------------------------------------------------------------


def knative_docs(bin_root: Path, repo: str, parts: list[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    core = bin_root / "knative" / repo / "core"
    for part in parts:
        path = core / part
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for f in files:
            docs += [x for x in yaml.safe_load_all(f.read_text()) if x]
    return docs


def knative_setup(bin_root: Path, ports: dict[str, int]) -> tuple[list[Any], list[Any]]:
    """What to apply before the webhooks start (namespaces, CRDs, config maps, cert secrets,
    ExternalName Services) and after (webhook configurations, pointed at the local ports)."""
    before: list[Any] = []
    after: list[Any] = []
    webhook_port = {
        "knative-serving": ports["serving-webhook"],
        "knative-eventing": ports["eventing-webhook"],
    }
    services = {"knative-serving": "webhook", "knative-eventing": "eventing-webhook"}
    for repo, crds in (("serving", "300-resources"), ("eventing", "resources")):
        ns = f"knative-{repo}"
        docs = knative_docs(bin_root, repo, ["100-namespace.yaml", crds, "configmaps"])
        for doc in docs:
            conv = (doc.get("spec") or {}).get("conversion") or {}
            svc = ((conv.get("webhook") or {}).get("clientConfig") or {}).get("service")
            if svc:
                svc["port"] = webhook_port[svc["namespace"]]
        before += docs
        before.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": services[ns], "namespace": ns},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            }
        )
        hooks = knative_docs(bin_root, repo, ["webhooks"])
        for doc in hooks:
            if doc["kind"] == "Secret":
                before.append(doc)
                continue
            if doc["metadata"]["name"] in SKIPPED_WEBHOOKS:
                continue
            for hook in doc.get("webhooks", []):
                svc = hook["clientConfig"]["service"]
                svc["port"] = webhook_port[svc["namespace"]]
            after.append(doc)
    for crd in sorted((bin_root / "crds").glob("*.yaml")):
        before += [x for x in yaml.safe_load_all(crd.read_text()) if x]
    return before, after


def apply(d: Path, docs: list[Any]) -> None:
    kc(d, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(docs))


def webhooks_admit(d: Path) -> bool:
    """The apiserver reaches both webhooks with their own certificates: a server-side dry-run
    of a Knative Service and a Trigger passes defaulting and validation."""
    probe = [
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "readiness-probe", "namespace": "default"},
            "spec": {"template": {"spec": {"containers": [{"image": "registry.example/probe:1"}]}}},
        },
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "readiness-probe", "namespace": "default"},
            "spec": {"broker": "default", "subscriber": {"uri": "http://example.invalid/"}},
        },
    ]
    out = kc(
        d, "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=yaml.safe_dump_all(probe)
    )
    # Defaulting ran: the webhook filled in the container's name and the Trigger's filter.
    return "user-container" in out or "containerConcurrency" in out


# --- commands ----------------------------------------------------------------------------


def up(with_eventing: bool = False) -> None:
    d = state_dir()
    if (d / "state.json").exists():
        state = load_state(d)
        if (
            (not with_eventing or "eventing" in state)
            and all(alive(c["pid"]) for c in state["components"].values() if c.get("pid"))
            and all(c.get("pid") for c in state["components"].values())
        ):
            print(d / "kubeconfig")
            return
        log(f"{d} holds a stopped or partial control plane; taking it down first")
        down()
    t0 = time.monotonic()
    build = subprocess.run(["bash", str(HERE / "build.sh")], text=True, stdout=subprocess.PIPE)
    if build.returncode != 0:
        raise SystemExit(build.returncode)
    bin_root = Path(build.stdout.strip().splitlines()[-1])
    d.mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)
    names = [
        "etcd",
        "etcd-peer",
        "etcd-metrics",
        "apiserver",
        "kcm",
        "serving-webhook",
        "serving-profiling",
        "serving-metrics",
        "eventing-webhook",
        "eventing-profiling",
        "eventing-metrics",
    ]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    make_certs(d / "certs")
    server = f"https://127.0.0.1:{ports['apiserver']}"
    write_kubeconfig(d / "kubeconfig", server, d / "certs")
    state: dict[str, Any] = {
        "bin": str(bin_root),
        "server": server,
        "ports": ports,
        "kubectl": kubectl(),
        "components": component_specs(d, bin_root / "bin", ports),
    }
    save_state(d, state)
    try:
        bring_up(d, state, bin_root, ports)
        if with_eventing:
            bring_up_eventing(d, state)
    except BaseException:
        down()
        raise
    log(f"up in {time.monotonic() - t0:.1f}s: {server}")
    print(d / "kubeconfig")


def wait_component(d: Path, state: dict[str, Any], name: str) -> None:
    certs = d / "certs"
    ports = state["ports"]
    if name == "etcd":
        wait_for("etcd", lambda: http_ok(f"http://127.0.0.1:{ports['etcd']}/health"), 30, d, name)
    elif name == "kube-apiserver":
        wait_for(
            "kube-apiserver", lambda: https_ok(f"{state['server']}/readyz", certs), 90, d, name
        )
    elif name == "kube-controller-manager":
        wait_for(
            "kube-controller-manager",
            lambda: https_ok(f"https://127.0.0.1:{ports['kcm']}/healthz", certs, False),
            60,
            d,
            name,
        )
    elif name in ("serving-webhook", "eventing-webhook"):
        port = ports[name]
        wait_for(name, lambda: tls_listening(port), 60, d, name)


def bring_up(d: Path, state: dict[str, Any], bin_root: Path, ports: dict[str, int]) -> None:
    for name in ["etcd", "kube-apiserver", "kube-controller-manager"]:
        start(d, state, name)
        wait_component(d, state, name)
    before, after = knative_setup(bin_root, ports)
    wait_for(
        "default ServiceAccount",
        lambda: kc(d, "get", "serviceaccount", "default", "-o", "name"),
        60,
        d,
        "kube-controller-manager",
    )
    apply(d, before)
    kc(d, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    for name in ["serving-webhook", "eventing-webhook"]:
        start(d, state, name)
    for name in ["serving-webhook", "eventing-webhook"]:
        wait_component(d, state, name)
    apply(d, after)
    wait_for("Knative webhooks admitting", lambda: webhooks_admit(d), 90, d)


def in_ns_connect(ns: str, host: str, port: int) -> bool:
    with relay.in_netns(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(3)
        s.connect((host, port))
        return True


def in_ns_resolves(d: Path, pod: str, name: str) -> bool:
    """`name` resolves inside `pod`'s namespace (its resolv.conf names CoreDNS)."""
    code = f"import socket; socket.getaddrinfo({name!r}, 80)"
    proc = subprocess.run(
        [*eventing.in_ns(d, pod), sys.executable, "-c", code], capture_output=True, timeout=10
    )
    return proc.returncode == 0


def bring_up_eventing(d: Path, state: dict[str, Any]) -> None:
    """Knative Eventing's processes, CoreDNS and kube-proxy in their network namespaces."""
    t0 = time.monotonic()
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        raise SystemExit(
            "control-plane: --with-eventing needs root (network namespaces), iproute2 and "
            f"iptables; missing: {', '.join(missing) or 'root'}"
        )
    build = subprocess.run(
        ["bash", str(HERE / "build-eventing.sh")], text=True, stdout=subprocess.PIPE
    )
    if build.returncode != 0:
        raise SystemExit(build.returncode)
    ev_root = Path(build.stdout.strip().splitlines()[-1])
    api_port = state["ports"]["apiserver"]
    ingress_port = free_ports(1)[0]
    state["ports"]["broker-ingress"] = ingress_port
    state["eventing"] = {"bin": str(ev_root), "netns": eventing.prefix(d), "pods": {}}
    state["components"].update(eventing.component_specs(d, ev_root / "bin", api_port))
    save_state(d, state)
    eventing.make_router(d)
    for name, (addr, _svc, _c) in eventing.COMPONENTS.items():
        eventing.make_pod(d, name, addr)
    (d / "relay.json").write_text(json.dumps(eventing.relay_rules(d, api_port, ingress_port)))
    (d / "Corefile").write_text(eventing.corefile(d))
    apply(d, eventing.manifests(ev_root))
    kc(d, "wait", "--for=condition=Established", "--timeout=60s",
       "crd/inmemorychannels.messaging.knative.dev")  # fmt: skip
    kc(d, "patch", "deployment", "imc-dispatcher", "-n", eventing.SYSTEM_NS,
       "--subresource=status", "--type=merge", "-p", eventing.status_patch())  # fmt: skip
    start(d, state, "relay")
    router = eventing.netns(d, "router")
    wait_for("relay", lambda: in_ns_connect(router, "127.0.0.1", api_port), 30, d, "relay")
    for name in ["kube-proxy", *eventing.COMPONENTS]:
        start(d, state, name)
    wait_for(
        "cluster DNS",
        lambda: in_ns_resolves(d, "broker-filter", "broker-ingress.knative-eventing.svc"),
        60, d, "coredns",
    )  # fmt: skip
    for name in ("broker-ingress", "broker-filter", "imc-dispatcher"):
        cluster_ip = eventing.COMPONENTS[name][1]
        assert cluster_ip
        wait_for(
            f"{name} through its ClusterIP",
            lambda ip=cluster_ip: in_ns_connect(router, ip, 80), 90, d, name,
        )  # fmt: skip
    for name in ("eventing-controller", "mt-broker-controller", "imc-controller", "kube-proxy"):
        pid = state["components"][name]["pid"]
        if not alive(pid):
            raise SystemExit(f"control-plane: {name} exited:\n" + tail(d / "logs" / f"{name}.log"))
    log(f"eventing data plane up in {time.monotonic() - t0:.1f}s")


def start_pod(name: str, argv: list[str], service: str | None = None) -> None:
    """A test's process in its own network namespace on the bridge; prints its address."""
    d = state_dir()
    state = load_state(d)
    if "eventing" not in state:
        raise SystemExit("control-plane: `pod` needs `up --with-eventing`")
    pods = state["eventing"]["pods"]
    key = f"pod-{name}"
    if key in state["components"]:
        stop(d, state, key)
        addr = pods[name]
    else:
        used = set(pods.values())
        n = next(i for i in range(eventing.FIRST_TEST_POD, 250)
                 if f"{eventing.POD_PREFIX}{i}" not in used)  # fmt: skip
        addr = f"{eventing.POD_PREFIX}{n}"
        eventing.make_pod(d, key, addr)
        pods[name] = addr
    state["components"][key] = {"argv": [*eventing.in_ns(d, key), *argv], "env": {}}
    save_state(d, state)
    start(d, state, key)
    if service:
        svc_ns, _, svc_name = service.partition("/")
        apply(d, eventing.service_docs(svc_name, svc_ns, addr, None))
    print(addr)


def down() -> None:
    d = state_dir()
    if (d / "state.json").exists():
        state = load_state(d)
        for name in reversed(list(state["components"])):
            stop(d, state, name)
        if "eventing" in state:
            eventing.remove_netns(d)
    shutil.rmtree(d, ignore_errors=True)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("up", "down", "stop", "start", "restart", "pod"):
        raise SystemExit(__doc__)
    cmd = argv[0]
    if cmd == "up":
        up(with_eventing="--with-eventing" in argv[1:])
    elif cmd == "pod":
        rest, service = argv[2:], None
        if rest[:1] == ["--service"] and len(rest) > 1:
            service, rest = rest[1], rest[2:]
        if len(rest) < 2 or rest[0] != "--" or "/" not in (service or "/"):
            raise SystemExit("usage: cluster.py pod NAME [--service NS/SVC] -- ARGV...")
        start_pod(argv[1], rest[1:], service)
    elif cmd == "down":
        down()
    else:
        d = state_dir()
        state = load_state(d)
        names = list(state["components"])
        for name in argv[1:]:
            if name not in state["components"]:
                raise SystemExit(f"control-plane: no component {name!r} (one of {names})")
        if cmd in ("stop", "restart"):
            for name in reversed([n for n in names if n in argv[1:]]):
                stop(d, state, name)
        if cmd in ("start", "restart"):
            for name in [n for n in names if n in argv[1:]]:
                start(d, state, name)
                wait_component(d, state, name)


if __name__ == "__main__":
    main(sys.argv[1:])
