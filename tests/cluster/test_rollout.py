"""A canary rollout on the real control plane: the operator process under the chart's RBAC,
a real Prometheus scraping the queue-proxy stand-in of tests/rollout (request counts per
revision, since no pod runs here), the real event store, and `aisvc status/pause/resume/
abort/promote/list` acting through the admin kubeconfig. A good canary is promoted across an
operator restart in the middle of the rollout (resumed at the same step); a bad one is
rolled back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiservice_operator.core.compile import revision_name
from aiservice_operator.core.spec import parse

from tests.support.cluster import REPO_ROOT, Cluster, wait_for
from tests.support.operator_process import OperatorProcess, start_operator
from tests.support.rollout import EventStore, Prometheus, Standin, event_store, prometheus, standin

__all__ = ["event_store", "prometheus", "standin"]
pytestmark = pytest.mark.prometheus
NS = "shop"  # the namespace the queue-proxy stand-in labels its series with
CANARIES = {"good": 0.0, "bad": 0.4}


def manifest(name: str, interval: str = "1s", **analysis: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "consumes": [{"type": "com.example.review"}],
            "function": {
                "image": "registry.example/aiservice-functions:1",
                "entrypoint": "aiservice_functions.sentiment",
            },
            "models": [
                {"name": "v1", "uri": "file:///models/v1.pt"},
                {"name": "v2", "uri": "file:///models/v2.pt"},
            ],
            "traffic": {"stable": "v1"},
            "rollout": {
                "canary": "v2",
                "steps": [50, 100],
                "interval": interval,
                "analysis": {"minEvents": 10, "maxErrorRate": 0.05, **analysis},
            },
        },
    }


class Traffic:
    """Events through the canary revisions for as long as the test runs."""

    def __init__(self, standin: Standin, revisions: list[str]) -> None:
        self.standin, self.revisions = standin, revisions
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client() as client:
            while not self.stop.wait(0.02):
                for revision in self.revisions:
                    client.post(f"{self.standin.url}/qp/{revision}", content=b"{}")


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    installed: None,
    standin: Standin,
    prometheus: Prometheus,
    event_store: EventStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    cluster.namespace(NS)
    revisions = []
    for name, error_rate in CANARIES.items():
        revision = revision_name(parse(manifest(name)), "v2")
        standin.register(revision, error_rate=error_rate, delay_ms=1, namespace=NS)
        revisions.append(revision)
    traffic = Traffic(standin, revisions)
    traffic.thread.start()
    op = start_operator(
        cluster,
        tmp_path_factory.mktemp("rollout-operator"),
        {
            "AISVC_PROMETHEUS_URL": prometheus.url,
            "AISVC_EVENT_STORE_URL": event_store.url,
            "AISVC_EVENT_STORE_TOKEN": event_store.token,
            "AISVC_ANALYSIS_MIN_WINDOW_SECONDS": "6",
        },
    )
    try:
        yield op
    finally:
        op.stop()
        traffic.stop.set()
        traffic.thread.join(5)


def rollout_when(
    cluster: Cluster,
    op: OperatorProcess,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 90,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = cluster.get("aiservice", name, NS) or {}
        state = dict((obj.get("status") or {}).get("rollout") or {})
        return state if state and check(state) else None

    try:
        return wait_for(probe, timeout, what)
    except AssertionError as err:
        raise AssertionError(f"{err}\noperator log:\n{op.tail()}") from None


def split(cluster: Cluster, name: str) -> dict[str, int]:
    svc = cluster.get("ksvc", name, NS) or {}
    return {
        t["tag"]: t["percent"]
        for t in (svc.get("spec") or {}).get("traffic") or []
        if t.get("tag") in ("stable", "canary")
    }


def aisvc(cluster: Cluster, *args: str, code: int = 0, namespace: bool = True) -> str:
    where = ["-n", NS] if namespace else []
    proc = subprocess.run(
        [sys.executable, "-c", "from aiservice_operator.cli.main import main; main()", *args,
         *where, "--cluster", "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, timeout=180, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc.stdout


def test_good_canary_promoted_across_a_restart_and_bad_one_rolled_back(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    cluster.apply(manifest("good"), manifest("bad", failureLimit=1))
    first = rollout_when(cluster, operator, "good", lambda r: r.get("step") == 1, "good at 1")
    operator.stop()
    stopped = rollout_when(cluster, operator, "good", lambda r: True, "good's rollout")
    assert stopped["startedAt"] == first["startedAt"] and stopped["step"] >= 1
    operator.start()
    done = rollout_when(
        cluster, operator, "good", lambda r: r["phase"] == "Succeeded", "good promoted", 120
    )
    failed = rollout_when(cluster, operator, "bad", lambda r: r["phase"] == "Failed", "bad back")
    wait_for(lambda: split(cluster, "good").get("canary") == 100, 60, "good: all on v2")
    wait_for(lambda: split(cluster, "bad").get("stable") == 100, 60, "bad: all on v1")

    actions = [h["action"] for h in done["history"]]
    assert actions.count("start") == 1, actions  # resumed, not restarted
    assert done["startedAt"] == first["startedAt"]
    assert [h["weight"] for h in done["history"] if h["action"] == "advance"] == [50, 100]
    advance = next(h for h in done["history"] if h["action"] == "advance" and h["weight"] == 100)
    assert advance["metrics"]["source"] == "queue-proxy"
    assert failed["history"][-1]["action"] == "rollback"
    assert failed["history"][-1]["metrics"]["errorRate"] > 0.05


def test_aisvc_commands_steer_a_rollout(cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.apply(manifest("manual", interval="1h"))
    rollout_when(cluster, operator, "manual", lambda r: r.get("weight") == 50, "manual at 50%")
    assert "manual" in aisvc(cluster, "status", "manual")
    shown = json.loads(aisvc(cluster, "status", "manual", "-o", "json"))
    assert (shown["namespace"], shown["phase"], shown["weight"]) == (NS, "Progressing", 50)
    assert (shown["stable"], shown["canary"], shown["health"]) == ("v1", "v2", "progressing")
    assert {c["type"] for c in shown["conditions"]} >= {"Ready", "Degraded"}
    listed = json.loads(aisvc(cluster, "list", "-A", "-o", "json", namespace=False))
    assert ("manual", NS) in {(i["name"], i["namespace"]) for i in listed["items"]}
    table = aisvc(cluster, "list", "--all-namespaces", namespace=False).splitlines()
    assert table[0].split()[:3] == ["NAME", "NAMESPACE", "PHASE"]
    assert any(line.split()[:3] == ["manual", NS, "Progressing"] for line in table[1:])
    aisvc(cluster, "pause", "manual")
    rollout_when(cluster, operator, "manual", lambda r: r.get("pausedBy") == "user", "paused")
    aisvc(cluster, "resume", "manual")
    rollout_when(cluster, operator, "manual", lambda r: not r.get("pausedBy"), "resumed")
    promoted = aisvc(cluster, "promote", "manual", "--wait", "--timeout", "2m")
    assert f"{NS}/manual: Succeeded, v2 at 100%" in promoted  # waited for the operator
    wait_for(lambda: split(cluster, "manual").get("canary") == 100, 60, "manual: all on v2")


def test_aisvc_abort_rolls_back(cluster: Cluster, operator: OperatorProcess) -> None:
    cluster.apply(manifest("stop", interval="1h"))
    rollout_when(cluster, operator, "stop", lambda r: r.get("weight") == 50, "stop at 50%")
    stopped = aisvc(cluster, "abort", "stop", "--wait", "--timeout", "2m", code=1)  # degraded
    assert f"{NS}/stop: Failed, v2 at 0%" in stopped
    aborted = rollout_when(cluster, operator, "stop", lambda r: r["phase"] == "Failed", "aborted")
    assert aborted["weight"] == 0 and aborted["history"][-1]["command"] == "abort"
    wait_for(lambda: split(cluster, "stop").get("stable") == 100, 60, "stop: all on v1")
