"""Knative Eventing's own data plane (scripts/control-plane/eventing.py): the real eventing
controller, mt-broker-controller, broker ingress and filter, in-memory channel controller and
dispatcher, with CoreDNS and kube-proxy, each process in its own network namespace on the
tier's bridge. Events posted to a Broker's ingress are delivered by Knative's own code.

The one stand-in left is Knative Serving (tests/support/knative_status.py): no Envoy build
runs here, so nothing of Serving's data plane does. Opt-in: AISVC_CLUSTER_EVENTING=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiservice_functions import contract
from aiservice_operator.local import delivery, filters
from aiservice_operator.local.supervisor import LaunchSpec

from tests.support.cluster import (
    REPO_ROOT,
    Cluster,
    binaries_built,
    condition,
    go_available,
    wait_for,
)
from tests.support.knative_status import KnativeStatus
from tests.support.operator_process import RELEASE, SYSTEM_NS, OperatorProcess, start_operator

SINK = str(REPO_ROOT / "tests" / "support" / "event_sink.py")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A control plane of this module's own, up --with-eventing (it overrides the tier's
    session `cluster`, so the rest of the tier never runs next to Eventing's controllers)."""
    if os.environ.get("AISVC_CLUSTER_EVENTING") != "1":
        pytest.skip(
            "EVENTING TIER SKIPPED: opt-in, set AISVC_CLUSTER_EVENTING=1 (needs root for "
            "network namespaces, and iptables); see docs/testing.md"
        )
    if not binaries_built() and not go_available():
        reason = "EVENTING TIER SKIPPED: no Go toolchain (>= 1.26) to build the control plane"
        if os.environ.get("CI") == "true":
            pytest.fail(reason.replace("SKIPPED", "FAILED"))
        pytest.skip(reason)
    c = Cluster(tmp_path_factory.mktemp("eventing-plane") / "state").up(with_eventing=True)
    try:
        yield c
    finally:
        c.down()


def ready(cluster: Cluster, kind: str, name: str, ns: str, timeout: float = 120) -> Any:
    def check() -> dict[str, Any] | None:
        obj = cluster.get(kind, name, ns)
        cond = condition(obj, "Ready")
        return obj if cond and cond.get("status") == "True" else None

    try:
        return wait_for(check, timeout, f"{kind} {ns}/{name} Ready")
    except AssertionError as err:
        raise AssertionError(
            f"{err}\n{json.dumps(cluster.get(kind, name, ns), indent=1)}"
        ) from None


def broker(cluster: Cluster, ns: str, name: str = "default", **spec: Any) -> dict[str, Any]:
    cluster.apply(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
    )
    return dict(ready(cluster, "broker", name, ns))


def trigger(cluster: Cluster, ns: str, name: str, service: str, **spec: Any) -> dict[str, Any]:
    body = {"broker": "default", "subscriber": {"ref": {
        "apiVersion": "v1", "kind": "Service", "name": service}}} | spec  # fmt: skip
    cluster.apply(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": ns},
            "spec": body,
        }
    )
    return dict(ready(cluster, "trigger", name, ns))


def sink(cluster: Cluster, ns: str, name: str, out: Path, *args: str) -> Path:
    out.touch()
    out.chmod(0o666)
    cluster.pod(f"{ns}-{name}", [sys.executable, SINK, str(out), *args], service=f"{ns}/{name}")
    return out


def received(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def post(
    cluster: Cluster,
    ns: str,
    type_: str,
    data: Any,
    source: str = "/tests/eventing",
    id_: str | None = None,
    timeout: float = 60,
    **ext: str,
) -> str:
    """A binary-mode CloudEvent posted to the Broker `default`'s ingress; returns its id.
    With the in-memory channel the ingress answers once the whole fan-out is done (every
    Trigger's delivery, retries and replies included): its fan-out is synchronous."""
    event_id = id_ or str(uuid.uuid4())
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": source,
        "ce-type": type_,
        "content-type": "application/json",
    } | {f"ce-{k}": v for k, v in ext.items()}
    resp = httpx.post(
        f"{cluster.broker_ingress}/{ns}/default", headers=headers, json=data, timeout=timeout
    )
    assert resp.status_code == 202, resp.text
    return event_id


def test_broker_delivers_to_a_trigger_exactly_once(
    cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    b = broker(cluster, ns)
    assert b["status"]["address"]["url"] == (
        f"http://broker-ingress.knative-eventing.svc.cluster.local/{ns}/default"
    )
    pings = sink(cluster, ns, "pings", tmp_path / "pings.jsonl")
    every = sink(cluster, ns, "every", tmp_path / "every.jsonl")
    trigger(cluster, ns, "pings", "pings", filter={"attributes": {"type": "com.example.ping"}})
    trigger(cluster, ns, "every", "every")

    wanted = [post(cluster, ns, "com.example.ping", {"n": i}) for i in range(3)]
    others = [post(cluster, ns, "com.example.other", {"n": i}) for i in range(2)]

    wait_for(lambda: len(received(every)) >= 5, 60, "every event at the catch-all Trigger")
    wait_for(lambda: len(received(pings)) >= 3, 60, "the pings at the filtered Trigger")
    assert sorted(r["headers"]["ce-id"] for r in received(every)) == sorted(wanted + others)
    got = received(pings)
    assert sorted(r["headers"]["ce-id"] for r in got) == sorted(wanted)
    assert all(r["headers"]["ce-type"] == "com.example.ping" for r in got)
    assert sorted(json.loads(r["body"])["n"] for r in got) == [0, 1, 2]


def test_down_leaves_no_process_namespace_or_rule(cluster: Cluster, tmp_path: Path) -> None:
    """`down` stops every process, and deletes every network namespace (with the bridge,
    addresses and kube-proxy's iptables rules inside them) and /etc/netns entry `up` made;
    the host's own iptables rules are the same as before."""
    host_rules = iptables_save()
    c = Cluster(tmp_path / "state").up(with_eventing=True)
    prefix = c.state["eventing"]["netns"] + "-"
    pids = [p["pid"] for p in c.state["components"].values()]
    spaces = [n for n in netns_names() if n.startswith(prefix)]
    assert {"router", "broker-ingress", "coredns"} <= {n[len(prefix) :] for n in spaces}
    router = f"{prefix}router"
    rules = subprocess.run(
        ["ip", "netns", "exec", router, "iptables-save"], capture_output=True, text=True
    ).stdout
    assert "KUBE-SERVICES" in rules  # kube-proxy's rules live in the router namespace

    c.down()

    assert [pid for pid in pids if running(pid)] == []
    assert [n for n in netns_names() if n.startswith(prefix)] == []
    assert list(Path("/etc/netns").glob(prefix + "*")) == []
    assert iptables_save() == host_rules


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def iptables_save() -> str:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("#"))


def test_retries_then_dead_letter_as_aisvc_up_decides(
    cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    """Knative's channel dispatcher retries per `spec.delivery`, then dead-letters with the
    `knativeerror*` extensions; `aisvc up`'s delivery core (operator/.../local/delivery.py)
    must make the same decisions and write the same extensions."""
    broker(cluster, ns)
    answer = '{"error": "model failed"}'
    failing = sink(cluster, ns, "failing", tmp_path / "failing.jsonl", "--status", "500",
                   "--body", answer)  # fmt: skip
    dead = sink(cluster, ns, "dead", tmp_path / "dead.jsonl")
    spec = {
        "retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.2S",
        "deadLetterSink": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "dead"}},
    }  # fmt: skip
    t = trigger(cluster, ns, "scores", "failing", delivery=spec)
    event_id = post(cluster, ns, "com.example.review.submitted", {"text": "x"})

    wait_for(lambda: received(dead), 60, "the dead letter")
    policy = delivery.DeliveryPolicy.from_knative(spec)
    attempts = received(failing)
    assert [a["headers"]["ce-id"] for a in attempts] == [event_id] * (policy.retry + 1)
    assert delivery.decide(policy, policy.retry + 1, 500) == "dead-letter"
    (letter,) = received(dead)
    assert letter["headers"]["ce-id"] == event_id
    got = {k[3:]: v for k, v in letter["headers"].items() if k.startswith("ce-knativeerror")}
    want = delivery.dead_letter_extensions(t["status"]["subscriberUri"], 500, answer.encode())
    assert got == want
    assert json.loads(letter["body"]) == {"text": "x"}


# Every filter dialect the CRD admits, each as one Trigger; the events below exercise each.
FILTERS: dict[str, dict[str, Any]] = {
    "legacy": {"filter": {"attributes": {"type": "com.example.a", "source": ""}}},
    "legacy-ext": {"filter": {"attributes": {"tier": "gold"}}},
    "exact": {"filters": [{"exact": {"type": "com.example.a"}}]},
    "prefix": {"filters": [{"prefix": {"type": "com.example."}}]},
    "suffix": {"filters": [{"suffix": {"source": "/eu"}}]},
    "ext-prefix": {"filters": [{"prefix": {"tier": "go"}}]},
    "all": {"filters": [{"all": [{"exact": {"type": "com.example.b"}},
                                 {"suffix": {"source": "/us"}}]}]},
    "any": {"filters": [{"any": [{"exact": {"type": "com.example.b"}},
                                 {"exact": {"tier": "gold"}}]}]},
    "not": {"filters": [{"not": {"exact": {"tier": "gold"}}}]},
    "two-filters": {"filters": [{"prefix": {"type": "com.example"}},
                                {"not": {"suffix": {"source": "/eu"}}}]},
    "filters-win": {"filter": {"attributes": {"type": "com.example.a"}},
                    "filters": [{"exact": {"type": "com.example.b"}}]},
}  # fmt: skip
EVENTS: list[dict[str, str]] = [
    {"type": "com.example.a", "source": "/shop/eu"},
    {"type": "com.example.a", "source": "/shop/us", "tier": "gold"},
    {"type": "com.example.b", "source": "/shop/us"},
    {"type": "com.example.b", "source": "/shop/eu", "tier": "golden"},
    {"type": "org.other.c", "source": "/shop/eu", "tier": "gold"},
    {"type": "com.exampleX", "source": "/x"},
]


def test_filters_select_what_aisvc_up_selects(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    """Each filter dialect, evaluated by Knative's broker filter, delivers exactly the events
    that `aisvc up`'s filter (operator/.../local/filters.py) selects."""
    broker(cluster, ns)
    outs = {}
    for i, (name, spec) in enumerate(FILTERS.items()):
        outs[name] = sink(cluster, ns, f"f{i}", tmp_path / f"{name}.jsonl")
        trigger(cluster, ns, name, f"f{i}", **spec)
    every = sink(cluster, ns, "every", tmp_path / "every.jsonl")
    trigger(cluster, ns, "every", "every")
    ids = []
    for i, attrs in enumerate(EVENTS):
        ids.append(post(cluster, ns, data={"i": i}, type_=attrs["type"], **without_type(attrs)))

    wait_for(lambda: len(received(every)) >= len(EVENTS), 60, "every event at the catch-all")
    knative: dict[str, list[int]] = {}
    local: dict[str, list[int]] = {}
    for name, spec in FILTERS.items():
        matches = filters.compile_trigger(spec)
        local[name] = [i for i, a in enumerate(EVENTS) if matches(attributes(a, ids[i]))]
        if local[name]:
            wait_for(lambda n=name: len(received(outs[n])) >= len(local[n]), 30, name)
        knative[name] = sorted(json.loads(r["body"])["i"] for r in received(outs[name]))
    assert knative == local


def without_type(attrs: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in attrs.items() if k != "type"}


def attributes(attrs: dict[str, str], event_id: str) -> dict[str, str]:
    """The context attributes of an event `post` sent, as `aisvc up`'s filter sees them."""
    ce = {"specversion": "1.0", "id": event_id, "datacontenttype": "application/json"}
    return filters.attribute_strings(ce | attrs)


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_replies_route_through_the_broker(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    """A subscriber's answer that is a CloudEvent goes back into the Broker and reaches the
    Triggers matching it; Knative stamps every event it accepts with `knativearrivaltime`,
    does not de-duplicate ids, and adds no hop count to replies."""
    broker(cluster, ns)
    asked = sink(cluster, ns, "asked", tmp_path / "asked.jsonl", "--reply-type", "com.example.a")
    final = sink(cluster, ns, "final", tmp_path / "final.jsonl")
    trigger(cluster, ns, "ask", "asked", filter={"attributes": {"type": "com.example.q"}})
    trigger(cluster, ns, "answers", "final", filter={"attributes": {"type": "com.example.a"}})
    ids = [post(cluster, ns, "com.example.q", {"n": i}) for i in range(3)]
    again = post(cluster, ns, "com.example.q", {"n": 3})
    post(cluster, ns, "com.example.q", {"n": 3}, id_=again)  # the same event once more

    wait_for(lambda: len(received(final)) >= 5, 60, "the replies at the final Trigger")
    assert sorted(r["headers"]["ce-id"] for r in received(asked)) == sorted([*ids, again, again])
    got = received(final)
    assert sorted(r["headers"]["ce-id"] for r in got) == sorted(
        f"reply-{i}" for i in [*ids, again, again]
    )
    assert sorted(json.loads(r["body"])["n"] for r in got) == [0, 1, 2, 3, 3]
    for r in got:
        attrs = {k[3:] for k in r["headers"] if k.startswith("ce-")}
        assert attrs == {"specversion", "id", "source", "type", "knativearrivaltime"}


CESQL = {
    "cesql-like": ("type LIKE 'com.example.%' AND source LIKE '%/us'", [1, 2]),
    "cesql-exists": ("EXISTS tier AND tier <> 'gold'", [3]),
    "cesql-missing": ("tier = 'gold'", [1, 4]),
}


def test_cesql_filters_knative_evaluates_and_aisvc_up_refuses(
    cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    """Knative's broker filter evaluates CESQL (an attribute an event lacks makes the
    expression false); `aisvc up` refuses such a Trigger when it loads it, naming the field."""
    broker(cluster, ns)
    outs = {}
    for i, (name, (expr, _)) in enumerate(CESQL.items()):
        outs[name] = sink(cluster, ns, f"q{i}", tmp_path / f"{name}.jsonl")
        trigger(cluster, ns, name, f"q{i}", filters=[{"cesql": expr}])
        with pytest.raises(filters.UnsupportedFilter, match=r"spec\.filters\[0\]\.cesql"):
            filters.compile_trigger({"filters": [{"cesql": expr}]})
    every = sink(cluster, ns, "every", tmp_path / "every.jsonl")
    trigger(cluster, ns, "every", "every")
    for i, attrs in enumerate(EVENTS):
        post(cluster, ns, data={"i": i}, type_=attrs["type"], **without_type(attrs))

    wait_for(lambda: len(received(every)) >= len(EVENTS), 60, "every event at the catch-all")
    for name, (_, want) in CESQL.items():
        wait_for(lambda n=name, w=want: len(received(outs[n])) >= len(w), 30, name)
    got = {n: sorted(json.loads(r["body"])["i"] for r in received(o)) for n, o in outs.items()}
    assert got == {name: want for name, (_, want) in CESQL.items()}


def test_dead_letters_reach_the_event_store_as_knative_sends_them(
    cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    """Knative's dispatcher dead-letters to the real event store; `aisvc dlq list` shows the
    knativeerror* extensions as Knative sent them, and a replay reaches the Broker again."""
    broker(cluster, ns)
    token = tmp_path / "token"
    token.write_text("s3cret-eventing-token\n")
    store = f"{ns}-store"
    ingress = "http://broker-ingress.knative-eventing.svc.cluster.local"  # + /<ns>/<broker>
    cluster.pod(
        store,
        [sys.executable, "-m", "aiservice_functions.event_store", "serve",
         "--db", f"sqlite:///{tmp_path / 'events.db'}", "--host", "0.0.0.0", "--port", "8080",
         "--token-file", str(token), "--broker-url", ingress],
        service=f"{ns}/store",
    )  # fmt: skip
    answer = '{"error": "model failed"}'
    sink(cluster, ns, "scorer", tmp_path / "scorer.jsonl", "--status", "503", "--body", answer)
    every = sink(cluster, ns, "every", tmp_path / "every.jsonl")
    trigger(cluster, ns, "every", "every")
    dls = f"http://store.{ns}.svc.cluster.local" + contract.dead_letter_path(ns, "scorer")
    t = trigger(
        cluster,
        ns,
        "scorer",
        "scorer",
        filter={"attributes": {"type": "com.example.s"}},
        delivery={"retry": 1, "backoffDelay": "PT0.1S", "deadLetterSink": {"uri": dls}},
    )
    event_id = post(cluster, ns, "com.example.s", {"text": "x"})

    def dlq(*args: str) -> Any:
        argv = [
            str(REPO_ROOT / ".venv/bin/aisvc"),
            "dlq",
            *args,
            "--url",
            "http://127.0.0.1:8080",
            "--token",
            "s3cret-eventing-token",
            "--output",
            "json",
        ]
        proc = cluster.pod_exec(store, argv)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        return json.loads(proc.stdout)

    items = wait_for(lambda: dlq("list")["items"], 60, "the dead letter in the event store")
    assert len(items) == 1, items
    shown = dlq("show", str(items[0]["seq"]))
    want = delivery.dead_letter_extensions(t["status"]["subscriberUri"], 503, answer.encode())
    flat = json.dumps(shown)
    for value in want.values():
        assert value in flat
    assert event_id in flat

    assert dlq("replay", str(items[0]["seq"]))["replayed"] == 1
    wait_for(lambda: len(received(every)) >= 2, 60, "the replayed event at the Broker")
    first, again = received(every)
    assert first["headers"]["ce-id"] == again["headers"]["ce-id"] == event_id
    # The store strips what Knative added on the way to the dead-letter sink (knativeerror*,
    # knativebrokerttl) and marks the replay; Knative's ingress stamps a new arrival time.
    attrs = {k[3:] for k in again["headers"] if k.startswith("ce-")}
    assert attrs == {"specversion", "id", "source", "type", "knativearrivaltime", "aisvcreplay"}


# --- the real operator's AIServices on Knative's data plane -----------------------------


@pytest.fixture(scope="module")
def knative(cluster: Cluster) -> Iterator[KnativeStatus]:
    """Knative Serving's controllers' part (the tier's one stand-in), on this module's plane."""
    with cluster.http() as client, KnativeStatus(client) as standin:
        yield standin


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, knative: KnativeStatus, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    cluster.helm(
        "install", RELEASE, str(REPO_ROOT / "charts" / "aiservice-operator"),
        "-n", SYSTEM_NS, "--create-namespace",
    )  # fmt: skip
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/aiservices.aiservice.dev"
    )
    op = start_operator(cluster, tmp_path_factory.mktemp("operator"))
    yield op
    op.stop()
    cluster.helm("uninstall", RELEASE, "-n", SYSTEM_NS)


def serve_revision(cluster: Cluster, ns: str, name: str) -> str:
    """THE BOUNDARY: Knative Serving's data plane cannot run here (no Envoy build), so the
    Knative Service's ready revision runs as a process in a network namespace, the way
    `aisvc up` launches it (LaunchSpec), registered as the Service `name` its URL names."""
    ksvc = ready(cluster, "ksvc", name, ns, timeout=180)
    assert ksvc["status"]["address"]["url"] == f"http://{name}.{ns}.svc.cluster.local"
    spec = LaunchSpec.from_template(ksvc["spec"]["template"], ns)
    argv = spec.command(8080)
    argv[argv.index("--host") + 1] = "0.0.0.0"  # a pod's address, as on a cluster
    env = {k: v for k, v in spec.environment(8080).items() if os.environ.get(k) != v}
    pod = f"{ns}-{name}"
    addr = cluster.pod(pod, ["env", *(f"{k}={v}" for k, v in env.items()), *argv], f"{ns}/{name}")
    # The kubelet's part: no traffic before the container's readinessProbe passes.
    (container,) = ksvc["spec"]["template"]["spec"]["containers"]
    path = container["readinessProbe"]["httpGet"]["path"]
    probe = f"import urllib.request as u; u.urlopen('http://127.0.0.1:8080{path}', timeout=2)"
    wait_for(
        lambda: cluster.pod_exec(pod, [sys.executable, "-c", probe]).returncode == 0,
        180,
        f"{name}'s readinessProbe",
    )
    return addr


def test_pipeline_replies_flow_through_knative(
    cluster: Cluster, operator: OperatorProcess, ns: str, tmp_path: Path
) -> None:
    """examples/pipeline.yaml applied through the real operator: reviews posted to the
    Broker reach sentiment-stage through the operator's Trigger, its replies reach
    topic-stage through the Broker, and topic-stage's replies reach a plain Trigger."""
    text = (REPO_ROOT / "examples/pipeline.yaml").read_text()
    # topic-stage's filter names sentiment-stage's reply source, which names the namespace.
    text = text.replace("/aiservices/shop/", f"/aiservices/{ns}/")
    docs = list(yaml.safe_load_all(text))
    for doc in docs:
        doc["metadata"]["namespace"] = ns
        doc["spec"].pop("decisionLog", None)  # no event store in this test
        doc["spec"].pop("deadLetter", None)
    broker(cluster, ns)
    routed = sink(cluster, ns, "routed", tmp_path / "routed.jsonl")
    trigger(cluster, ns, "routed", "routed",
            filter={"attributes": {"type": "com.example.review.routed"}})  # fmt: skip
    cluster.apply(*docs)
    for doc in docs:
        serve_revision(cluster, ns, doc["metadata"]["name"])
    for doc in docs:
        for t in cluster.list("trigger", ns, f"aiservice.dev/name={doc['metadata']['name']}"):
            ready(cluster, "trigger", t["metadata"]["name"], ns)

    texts = ["great product, works perfectly", "broke after a day, refund please", "okay"]
    # The first review waits for both models to load: the ingress answers after the fan-out.
    ids = [
        post(cluster, ns, "com.example.review.submitted", {"text": t}, timeout=300) for t in texts
    ]
    wait_for(lambda: len(received(routed)) >= len(ids), 180, "the routed replies")
    got = received(routed)
    assert len(got) == len(ids)
    assert {r["headers"]["ce-type"] for r in got} == {"com.example.review.routed"}
    assert all(r["headers"]["ce-source"].startswith(f"/aiservices/{ns}/topic-stage") for r in got)
