"""The Helm chart renders valid, hardened Kubernetes objects with default and other values.

Uses a real helm binary; every core object is validated strictly (unknown fields are errors)
by kubernetes-validate against a pinned Kubernetes version.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from aiservice_operator.core.compile import CompileOptions

from tests.support.chart import CHART, NAMESPACE, ROOT, RenderFn

KUBERNETES_VERSION = "1.35.0"
"""The Kubernetes version the rendered objects are validated against (helm's own client is 1.35)."""

# Kinds that are not part of Kubernetes itself: they are checked by the tests below instead.
CUSTOM_KINDS = {"Broker", "ClusterKopfPeering", "PodMonitor", "ServiceMonitor"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "ha-postgresql": {
        "image": {"repository": "registry.internal/aisvc/operator", "tag": "1.2.3"},
        "imagePullSecrets": [{"name": "regcred"}],
        "clusterDomain": "corp.local",
        "operator": {
            "replicas": 3,
            "logLevel": "debug",
            "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
            "podAnnotations": {"example.com/team": "ml"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml"}],
            "priorityClassName": "system-cluster-critical",
        },
        "serviceAccount": {"annotations": {"example.com/role": "operator"}},
        "eventStore": {
            "replicas": 2,
            "image": {"repository": "registry.internal/aisvc/event-store", "tag": "1.2.3"},
            "service": {"name": "dead-letters", "port": 8080},
            "database": {"type": "postgresql", "postgresql": {"existingSecret": "pg-dsn"}},
            "token": {"existingSecret": "store-token", "key": "bearer"},
        },
        "rollout": {
            "prometheus": {"url": "http://prometheus-operated.monitoring:9090"},
            "queries": {"requests": 'sum(rate(my_requests{{revision="{revision}"}}[{interval}]))'},
        },
        "metrics": {
            "podMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        },
        "podDisruptionBudget": {"maxUnavailable": 2},
    },
    "minimal": {
        "operator": {"peering": {"enabled": False}},
        "serviceAccount": {"create": False, "name": "preexisting"},
        "eventStore": {"enabled": False, "externalUrl": "http://events.elsewhere:8090"},
        "podDisruptionBudget": {"enabled": False},
    },
}


def _pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    ]


def _operator(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    assert len(found) == 1
    return found[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_passes_strictly(helm: str, tmp_path: Path, name: str) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUE_SETS[name]))
    proc = subprocess.run(
        [helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--values", str(values)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_core_object_is_valid_kubernetes(render: RenderFn, name: str) -> None:
    rendered = render(VALUE_SETS[name])
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.objects
    for obj in rendered.objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    unexpected = {o["kind"] for o in rendered.objects} - _known_kinds()
    assert not unexpected, f"kinds without a validation rule here: {unexpected}"


def _known_kinds() -> set[str]:
    core = {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "Secret",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    return core | CUSTOM_KINDS


def test_the_validator_rejects_unknown_fields(render: RenderFn) -> None:
    """Guards the strict validation above: a misspelt field must not pass unnoticed."""
    deployment = copy.deepcopy(_operator(render().objects))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_is_hardened(render: RenderFn, name: str) -> None:
    pods = _pod_specs(render(VALUE_SETS[name]).objects)
    assert pods
    for pod_name, pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True, pod_name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, pod_name
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            where = f"{pod_name}/{container['name']}"
            assert sc["runAsNonRoot"] is True, where
            assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where
            assert container["livenessProbe"] and container["readinessProbe"], where
            assert ":" in container["image"] and not container["image"].endswith(":latest")


def test_operator_probes_kopf_liveness_endpoint(render: RenderFn) -> None:
    container = _operator(render().objects)["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0]
    assert "--liveness=http://0.0.0.0:8080/healthz" in script
    assert "-m aiservice_operator.cluster.handlers" in script
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


def test_more_replicas_are_safe_through_kopf_peering(render: RenderFn) -> None:
    rendered = render(VALUE_SETS["ha-postgresql"])
    operator = _operator(rendered.objects)
    assert operator["spec"]["replicas"] == 3
    peering = rendered.one("ClusterKopfPeering")
    script = operator["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert f"--peering={peering['metadata']['name']}" in script
    # Equal priorities pause every replica: each takes one from its own pod name.
    assert '--priority="$$(printf' in script and "$POD_NAME" in script
    assert "--debug" in script
    assert "--standalone" not in script


def test_without_peering_the_operator_runs_standalone(render: RenderFn) -> None:
    rendered = render(VALUE_SETS["minimal"])
    assert not rendered.of_kind("ClusterKopfPeering")
    script = _operator(rendered.objects)["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--standalone" in script and "--peering" not in script
    assert not rendered.of_kind("ServiceAccount")
    assert _operator(rendered.objects)["spec"]["template"]["spec"]["serviceAccountName"] == (
        "preexisting"
    )
    for kind in (
        "PodDisruptionBudget",
        "Secret",
        "PersistentVolumeClaim",
        "NetworkPolicy",
    ):
        assert not rendered.of_kind(kind), kind
    services = [s["metadata"]["name"] for s in rendered.of_kind("Service")]
    assert services == ["aisvc-aiservice-operator-metrics"]  # the operator's own, no store


def test_event_store_defaults_to_sqlite_on_a_volume(render: RenderFn) -> None:
    rendered = render()
    store = rendered.one("Deployment", "aisvc-aiservice-operator-event-store")
    assert store["spec"]["replicas"] == 1
    assert store["spec"]["strategy"] == {"type": "Recreate"}
    pod = store["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True  # auth.mode kubernetes (test_rbac)
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "aiservice_functions.event_store"]
    assert container["args"] == [
        "serve",
        "--host=0.0.0.0",
        "--port=8080",
        "--workers=1",
        "--broker-url=http://broker-ingress.knative-eventing.svc.cluster.local",
    ]
    assert _env(container)["AISVC_EVENT_STORE_DB"] == "sqlite:///data/events.db"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    pvc = rendered.one("PersistentVolumeClaim")
    assert {"name": "data", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}} in (
        pod["volumes"]
    )
    token = rendered.one("Secret")
    assert len(token["data"]["token"]) > 40  # base64 of a generated 40-character token
    assert token["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    service = rendered.one("Service", "aiservice-event-store")
    assert service["spec"]["selector"] == store["spec"]["selector"]["matchLabels"]


def test_operator_reaches_the_event_store_where_the_compiler_expects_it(render: RenderFn) -> None:
    """The default dead-letter sink the compiler writes must be the chart's event store."""
    env = _env(_operator(render().objects)["spec"]["template"]["spec"]["containers"][0])
    assert env["AISVC_EVENT_STORE_URL"] == CompileOptions().event_store_url
    assert env["AISVC_CLUSTER_DOMAIN"] == CompileOptions().cluster_domain
    # auth.mode kubernetes (the default): the operator reads the store as itself.
    assert env["AISVC_EVENT_STORE_TOKEN_FILE"] == (
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )
    token_mode = render({"eventStore": {"auth": {"mode": "token"}}}).objects
    env = _env(_operator(token_mode)["spec"]["template"]["spec"]["containers"][0])
    assert env["AISVC_EVENT_STORE_TOKEN_FILE"] == "/var/run/secrets/aiservice/event-store/token"


def test_event_store_on_postgresql_from_a_secret(render: RenderFn) -> None:
    rendered = render(VALUE_SETS["ha-postgresql"])
    assert not rendered.of_kind("PersistentVolumeClaim")
    assert not rendered.of_kind("Secret"), "existing token Secret: none generated"
    store = rendered.one("Deployment", "aisvc-aiservice-operator-event-store")
    assert store["spec"]["replicas"] == 2
    assert "strategy" not in store["spec"]
    container = store["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.internal/aisvc/event-store:1.2.3"
    assert not [a for a in container["args"] if a.startswith("--db")]
    assert "--broker-url=http://broker-ingress.knative-eventing.svc.corp.local" in container["args"]
    assert _env(container)["AISVC_EVENT_STORE_DB"] == {
        "secretKeyRef": {"name": "pg-dsn", "key": "url"}
    }
    operator = _operator(rendered.objects)["spec"]["template"]["spec"]
    assert _env(operator["containers"][0])["AISVC_EVENT_STORE_URL"] == (
        "http://dead-letters.aiservice-system.svc.corp.local:8080"
    )
    assert operator["containers"][0]["image"] == "registry.internal/aisvc/operator:1.2.3"
    token_volumes = [v for v in operator["volumes"] if "secret" in v]
    assert token_volumes[0]["secret"]["secretName"] == "store-token"


def test_pdb_covers_the_operator_pods(render: RenderFn) -> None:
    rendered = render()
    pdb = rendered.one("PodDisruptionBudget")
    labels = _operator(rendered.objects)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def _notes(helm: str, *extra: str) -> str:
    """The NOTES `helm install` prints (a client-side dry run)."""
    proc = subprocess.run(
        [helm, "install", "aisvc", str(CHART), "--dry-run=client", "-n", NAMESPACE, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_notes_tell_how_to_check_the_install(helm: str) -> None:
    notes = _notes(helm)
    assert "rollout status deployment/aisvc-aiservice-operator" in notes
    assert "kubectl aisvc status" in notes
    assert "kubectl aisvc list -A" in notes
    assert "kubectl get ais" in notes
    # The console URL is on the local port the notes forward.
    forwarded = re.search(r"port-forward \S+ (\d+):", notes)
    assert forwarded, notes
    assert f"http://127.0.0.1:{forwarded.group(1)}/console/" in notes


def test_notes_tell_gitops_users_to_bring_their_own_token_secret(helm: str) -> None:
    """`helm template` cannot see the Secret in the cluster: each render makes new tokens."""
    generated = " ".join(_notes(helm).split())
    assert "helm template" in generated
    assert "eventStore.token.existingSecret" in generated
    own = " ".join(_notes(helm, "--set", "eventStore.token.existingSecret=store-token").split())
    assert "helm template" not in own
    assert "secret store-token" in own.lower()  # the keys are read from the user's Secret


def test_chart_crds_are_the_project_crds() -> None:
    source = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    if not source:
        pytest.skip("the project has no CRD in crds/ yet")
    chart_crds = CHART / "crds"
    for name in source:
        assert (chart_crds / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/aiservice-operator/crds/{name} differs from crds/{name}: copy it again"
        )
    extra = {p.name for p in chart_crds.glob("*.yaml")} - set(source)
    assert extra == {"kopf-peering.yaml"}, f"CRDs only in the chart: {extra}"


def test_kopf_peering_crd_serves_the_peering_object(render: RenderFn) -> None:
    crds = list(yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text()))
    for crd in crds:
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)
    assert [c["spec"]["names"]["kind"] for c in crds] == ["ClusterKopfPeering"]
    cluster = crds[0]
    assert cluster["spec"]["scope"] == "Cluster"
    assert cluster["metadata"]["name"] == "clusterkopfpeerings.kopf.dev"
    peering = render().one("ClusterKopfPeering")
    group_version = f"{cluster['spec']['group']}/{cluster['spec']['versions'][0]['name']}"
    assert peering["apiVersion"] == group_version


@pytest.mark.parametrize("name", VALUE_SETS)
def test_operator_command_is_a_valid_kopf_run(render: RenderFn, name: str) -> None:
    """The container's shell line, run by a real shell as the kubelet would hand it over,
    yields arguments that Kopf's own command line accepts."""
    from kopf.cli import main as kopf_cli

    container = _operator(render(VALUE_SETS[name]).objects)["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["command"] == ["/bin/sh", "-c"]
    script = container["args"][0].replace("$$(", "$(")  # the kubelet's escape for a literal $(
    assert script.startswith("exec kopf run ")
    echo = f"exec {sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"
    proc = subprocess.run(
        ["/bin/sh", "-c", script.replace("exec kopf run", echo, 1)],
        env={"POD_NAME": "aisvc-aiservice-operator-7d9c5b6f4-x2x9z", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    argv = json.loads(proc.stdout)
    run_command = kopf_cli.commands["run"]
    ctx = run_command.make_context("run", list(argv))
    assert ctx.params["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"
    assert ctx.params["modules"] == ("aiservice_operator.cluster.handlers",)
    assert ctx.params["clusterwide"] is True
    if VALUE_SETS[name].get("operator", {}).get("peering", {}).get("enabled", True):
        assert isinstance(ctx.params["priority"], int) and ctx.params["priority"] > 0
        assert ctx.params["peering_name"] == "aisvc-aiservice-operator"
    else:
        assert ctx.params["standalone"] is True


def test_only_the_eventing_data_plane_and_the_operator_reach_the_event_store(
    render: RenderFn,
) -> None:
    rendered = render()
    policy = rendered.one("NetworkPolicy")
    store = rendered.deployment("event-store")
    assert policy["spec"]["podSelector"]["matchLabels"] == store["spec"]["selector"]["matchLabels"]
    sources = policy["spec"]["ingress"][0]["from"]
    operator_labels = _operator(rendered.objects)["spec"]["template"]["metadata"]["labels"]
    assert sources[0]["podSelector"]["matchLabels"].items() <= operator_labels.items()
    assert sources[1:] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-eventing"}}}
    ]
    assert not render({"eventStore": {"networkPolicy": {"enabled": False}}}).of_kind(
        "NetworkPolicy"
    )


@pytest.mark.parametrize(
    "values",
    [{}, {"eventStore": {"retention": {"maxAge": "30d", "maxCount": 5000}}}],
    ids=["default", "retention"],
)
def test_event_store_arguments_are_accepted_by_the_server(
    render: RenderFn, values: dict[str, Any]
) -> None:
    from aiservice_functions.event_store.__main__ import ENV_DB, parser

    container = render(values).deployment("event-store")["spec"]["template"]["spec"]["containers"][
        0
    ]
    args = parser().parse_args(container["args"])
    assert args.command == "serve"
    assert args.port == 8080
    assert args.host == "0.0.0.0"  # the server's own default is loopback
    assert _env(container)[ENV_DB] == "sqlite:///data/events.db"
    if values:
        assert args.retention_max_age == 30 * 86400
        assert args.retention_max_count == 5000


def test_the_event_store_may_send_only_to_dns_and_the_broker_ingress(render: RenderFn) -> None:
    policy = render().one("NetworkPolicy")["spec"]
    assert "Egress" in policy["policyTypes"]
    egress = policy["egress"]
    ports = {(p["port"], p["protocol"]) for p in egress[0]["ports"]}
    assert ports == {(53, "UDP"), (53, "TCP")}
    assert egress[1]["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-eventing"}}}
    ]
    assert len(egress) == 2  # nothing else: no metadata service, no other pods
    extra = {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}]}
    store_values = {
        "networkPolicy": {"egress": {"extra": [extra]}},
        "replay": {"allowTargets": ["10.1.2.3/32"]},
    }
    custom = render({"eventStore": store_values})
    assert custom.one("NetworkPolicy")["spec"]["egress"][-1] == extra
    args = custom.deployment("event-store")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--replay-allow-target=10.1.2.3/32" in args


@pytest.mark.parametrize("name", VALUE_SETS)
def test_no_event_store_egress_rule_is_open_to_every_host(render: RenderFn, name: str) -> None:
    for policy in render(VALUE_SETS[name]).of_kind("NetworkPolicy"):
        for rule in policy["spec"]["egress"]:
            assert rule.get("to"), f"egress to any host: {rule}"


POSTGRESQL = {"type": "postgresql", "postgresql": {"existingSecret": "pg-dsn"}}


def test_the_event_store_reaches_postgresql_only_where_the_values_say(render: RenderFn) -> None:
    """In the cluster by default (any namespace, or the ones named); outside it, the CIDRs."""
    in_cluster = render({"eventStore": {"database": POSTGRESQL}})
    assert in_cluster.one("NetworkPolicy")["spec"]["egress"][-1] == {
        "ports": [{"port": 5432, "protocol": "TCP"}],
        "to": [{"namespaceSelector": {}}],
    }
    egress = {"postgresqlNamespaces": ["databases"]}
    named = render({"eventStore": {"database": POSTGRESQL, "networkPolicy": {"egress": egress}}})
    assert named.one("NetworkPolicy")["spec"]["egress"][-1]["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "databases"}}}
    ]
    egress = {"postgresqlCidrs": ["10.20.0.5/32", "fd00:db::/64"], "postgresqlPort": 6432}
    outside = render({"eventStore": {"database": POSTGRESQL, "networkPolicy": {"egress": egress}}})
    assert outside.returncode == 0, outside.stderr
    assert outside.one("NetworkPolicy")["spec"]["egress"][-1] == {
        "ports": [{"port": 6432, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}, {"ipBlock": {"cidr": "fd00:db::/64"}}],
    }


def test_the_documented_uninstall_never_deletes_the_shared_kopf_peering_crds() -> None:
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    deletes = [line for line in page.splitlines() if line.lstrip().startswith("kubectl delete")]
    assert deletes, "docs/operations.md shows how to uninstall"
    for line in deletes:
        assert "kopf" not in line.lower(), line
        # A whole crds/ directory holds the Kopf peering CRDs too.
        assert "crds/" not in line, line


def test_a_disabled_event_store_needs_an_external_one(render: RenderFn) -> None:
    refused = render({"eventStore": {"enabled": False}})
    assert refused.returncode != 0
    assert "externalUrl" in refused.stderr
    rendered = render(VALUE_SETS["minimal"])
    env = _env(_operator(rendered.objects)["spec"]["template"]["spec"]["containers"][0])
    assert env["AISVC_EVENT_STORE_URL"] == "http://events.elsewhere:8090"


def test_a_read_only_token_is_generated_and_handed_to_the_event_store(render: RenderFn) -> None:
    plain = render().one("Deployment", "aisvc-aiservice-operator-event-store")
    assert "AISVC_EVENT_STORE_READ_TOKEN_FILE" not in _env(
        plain["spec"]["template"]["spec"]["containers"][0]
    )
    rendered = render({"eventStore": {"token": {"readKey": "read-token"}}})
    secret = rendered.one("Secret")
    assert len(secret["data"]["read-token"]) > 40
    assert secret["data"]["read-token"] != secret["data"]["token"]
    pod = rendered.one("Deployment", "aisvc-aiservice-operator-event-store")["spec"]["template"][
        "spec"
    ]
    path = _env(pod["containers"][0])["AISVC_EVENT_STORE_READ_TOKEN_FILE"]
    volume = next(v for v in pod["volumes"] if v["name"] == "token")
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "token")
    assert {"key": "read-token", "path": "read-token"} in volume["secret"]["items"]
    assert path == f"{mount['mountPath']}/read-token"


@pytest.mark.parametrize(
    "values",
    [
        {"token": {"readKey": "token"}},
        {"token": {"readKey": "sink-key"}},
        {"token": {"key": "bearer", "readKey": "bearer"}},
        {"token": {"key": "shared", "sinkKey": "shared"}},
        {
            "enabled": False,
            "externalUrl": "http://events.elsewhere:8090",
            "token": {"existingSecret": "store-token", "sinkKey": "token"},
        },
    ],
    ids=["read-is-token", "read-is-sink-key", "read-is-custom-key", "sink-is-token", "external"],
)
def test_each_credential_has_its_own_secret_entry(render: RenderFn, values: dict[str, Any]) -> None:
    """One entry for two credentials would make the read-only token the full one (or the
    ingest key): refused, naming the fields and why."""
    refused = render({"eventStore": values})
    assert refused.returncode != 0, "accepted"
    assert "eventStore.token" in refused.stderr
    assert "must differ" in refused.stderr, refused.stderr
