"""Knative Eventing's own data plane (scripts/control-plane/eventing.py): the real eventing
controller, mt-broker-controller, broker ingress and filter, in-memory channel controller and
dispatcher, with CoreDNS and kube-proxy, each process in its own network namespace on the
tier's bridge. Events posted to a Broker's ingress are delivered by Knative's own code.

The one stand-in left is Knative Serving (tests/support/knative_status.py): no Envoy build
runs here, so nothing of Serving's data plane does. Opt-in: AISVC_CLUSTER_EVENTING=1."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiservice_operator.local import delivery, filters

from tests.support.cluster import REPO_ROOT, Cluster, condition, wait_for

SINK = str(REPO_ROOT / "tests" / "support" / "event_sink.py")


@pytest.fixture(autouse=True)
def _eventing(cluster: Cluster) -> None:
    if not cluster.eventing:
        pytest.skip(
            "EVENTING TIER SKIPPED: set AISVC_CLUSTER_EVENTING=1 (needs root for network "
            "namespaces); see docs/testing.md"
        )


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
    cluster: Cluster, ns: str, type_: str, data: Any, source: str = "/tests/eventing", **ext: str
) -> str:
    """A binary-mode CloudEvent posted to the Broker `default`'s ingress; returns its id."""
    event_id = str(uuid.uuid4())
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": source,
        "ce-type": type_,
        "content-type": "application/json",
    } | {f"ce-{k}": v for k, v in ext.items()}
    resp = httpx.post(
        f"{cluster.broker_ingress}/{ns}/default", headers=headers, json=data, timeout=30
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


def test_down_leaves_no_process_namespace_or_rule(tmp_path: Path) -> None:
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
