"""Canary rollouts driven by the real Kopf operator: the API emulator and its Knative
Serving stand-in (tests/support), a real Prometheus scraping the queue-proxy stand-in, and
the real event store. A good canary is promoted through every step, across an operator
restart in the middle; a bad one is rolled back; a shadow canary gets a mirror of the events
until it is promoted; `aisvc abort`'s annotation is obeyed.

Why the emulator: the shadow rollout, audit and decision-metric cases; promotion, rollback
and a restart mid-rollout run for real in tests/cluster/test_rollout.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiservice_operator.cluster.config import Config
from aiservice_operator.core.compile import revision_name
from aiservice_operator.core.spec import parse

from tests.support.knative import KnativeServing
from tests.support.kubeemu import (
    AISERVICES,
    EVENTS,
    KSERVICES,
    TRIGGERS,
    EmulatorThread,
    wait_for,
)
from tests.support.operator import OperatorThread
from tests.support.rollout import EventStore, Prometheus, Standin

pytestmark = pytest.mark.prometheus
NS = "canary"
ABORT = "aiservice.dev/abort"


def manifest(
    name: str, interval: str = "1s", shadow: bool = False, **analysis: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "consumes": [{"type": "com.example.review"}],
            "function": {"image": "img:1", "entrypoint": "aiservice_functions.sentiment"},
            "models": [
                {"name": "v1", "uri": "file:///models/v1.pt"},
                {"name": "v2", "uri": "file:///models/v2.pt"},
            ],
            "traffic": {"stable": "v1"},
            "rollout": {
                "canary": "v2",
                "steps": [50, 100],
                "interval": interval,
                "shadow": shadow,
                "analysis": {"minEvents": 10, "maxErrorRate": 0.05, **analysis},
            },
        },
    }


CANARIES = {"good": 0.0, "bad": 0.4, "shadow": 0.0}
"""AIService name -> error rate of its canary revision."""


class Traffic:
    """Events flowing through the canary revisions for as long as the test runs."""

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
def cluster(
    standin: Standin, prometheus: Prometheus, event_store: EventStore
) -> Iterator[tuple[EmulatorThread, Config]]:
    revisions = []
    for name, error_rate in CANARIES.items():
        revision = revision_name(parse(manifest(name)), "v2")
        standin.register(revision, error_rate=error_rate, delay_ms=1, namespace=NS)
        revisions.append(revision)
    traffic = Traffic(standin, revisions)
    traffic.thread.start()
    with EmulatorThread() as kube:
        KnativeServing(kube).start()
        config = Config(
            retry_delay=0.3,
            watch_timeout=60,
            event_store_url=event_store.url,
            event_store_token=event_store.token,
            prometheus_url=prometheus.url,
            analysis_min_window=6,
        )
        try:
            yield kube, config
        finally:
            traffic.stop.set()
            traffic.thread.join(5)


def rollout_of(kube: EmulatorThread, name: str) -> dict[str, Any]:
    obj = kube.find(AISERVICES, NS, name) or {}
    return dict((obj.get("status") or {}).get("rollout") or {})


def rollout_when(
    kube: EmulatorThread,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 20,
) -> dict[str, Any]:
    """Wait until the AIService's `status.rollout` satisfies `check`; return it."""

    def probe() -> dict[str, Any] | None:
        state = rollout_of(kube, name)
        return state if state and check(state) else None

    found = wait_for(probe, timeout=timeout, what=what)
    assert found is not None
    return found


def split_when(
    kube: EmulatorThread, name: str, check: Callable[[dict[str, int]], bool], what: str
) -> dict[str, int]:
    """Wait until the Knative Service's traffic by tag satisfies `check`; return it."""

    def probe() -> dict[str, int] | None:
        now = split(kube, name)
        return now if check(now) else None

    found = wait_for(probe, what=what)
    assert found is not None
    return found


def shadow_triggers(kube: EmulatorThread, name: str) -> list[dict[str, Any]]:
    return kube.list(TRIGGERS, NS, f"aiservice.dev/name={name},aiservice.dev/role=shadow")


def split(kube: EmulatorThread, name: str) -> dict[str, int]:
    service = kube.get(KSERVICES, NS, name)
    return {
        t["tag"]: t["percent"] for t in service["spec"]["traffic"] if t.get("tag") in ("v1", "v2")
    } | {
        t["tag"]: t["percent"]
        for t in service["spec"]["traffic"]
        if t.get("tag") in ("stable", "canary")
    }


def test_good_canary_promoted_across_a_restart_and_bad_one_rolled_back(
    cluster: tuple[EmulatorThread, Config], event_store: EventStore
) -> None:
    kube, config = cluster
    decisions_before = _decisions()
    with OperatorThread(kube.url, config):
        for name in ("good", "bad"):
            kube.create(AISERVICES, manifest(name, failureLimit=1))
        kube.create(AISERVICES, manifest("shadow", shadow=True))
        kube.create(AISERVICES, manifest("manual", interval="1h"))
        first = rollout_when(kube, "good", lambda r: r.get("step") == 1, "good at step 1")
        mirror = wait_for(lambda: shadow_triggers(kube, "shadow"), what="the shadow Trigger")
    # The operator is down: status holds the rollout where it stood.
    stopped = rollout_of(kube, "good")
    assert stopped["startedAt"] == first["startedAt"] and stopped["step"] >= 1

    with OperatorThread(kube.url, config):
        rollout_when(kube, "manual", lambda r: r.get("weight") == 50, "manual at 50%")
        kube.patch(AISERVICES, NS, "manual", {"metadata": {"annotations": {ABORT: "now"}}})
        aborted = rollout_when(kube, "manual", lambda r: r["phase"] == "Failed", "manual aborted")
        wait_for(
            lambda: (
                ABORT
                not in (kube.get(AISERVICES, NS, "manual")["metadata"].get("annotations") or {})
            ),
            what="the abort annotation consumed",
        )
        done = rollout_when(
            kube, "good", lambda r: r["phase"] == "Succeeded", "good promoted", timeout=30
        )
        failed = rollout_when(kube, "bad", lambda r: r["phase"] == "Failed", "bad rolled back")
        good_split = split_when(kube, "good", lambda t: t.get("canary") == 100, "good: all on v2")
        bad_split = split_when(kube, "bad", lambda t: t.get("stable") == 100, "bad: all on v1")

        mirrored = rollout_when(
            kube, "shadow", lambda r: r["phase"] == "Succeeded", "shadow promoted", timeout=30
        )
        shadow_split = split_when(kube, "shadow", lambda t: t.get("canary") == 100, "v2 at 100%")
        wait_for(lambda: not shadow_triggers(kube, "shadow"), what="the mirror removed")

    assert mirror[0]["spec"]["subscriber"]["uri"].endswith("/shadow")
    assert [h["weight"] for h in mirrored["history"] if h["action"] == "advance"] == [0, 0]
    assert shadow_split["stable"] == 0

    actions = [h["action"] for h in done["history"]]
    assert actions.count("start") == 1, actions  # resumed, not restarted
    assert done["startedAt"] == first["startedAt"]
    steps = [h["weight"] for h in done["history"] if h["action"] == "advance"]
    assert steps == [50, 100], actions
    assert actions[-2:] == ["promote", "succeed"]
    assert good_split["stable"] == 0
    advance = next(h for h in done["history"] if h["action"] == "advance" and h["weight"] == 100)
    assert advance["metrics"]["source"] == "queue-proxy"
    assert advance["metrics"]["events"] >= 10 and advance["metrics"]["errorRate"] == 0

    assert aborted["weight"] == 0 and aborted["history"][-1]["command"] == "abort"
    assert split(kube, "manual")["stable"] == 100

    assert failed["history"][-1]["action"] == "rollback"
    assert failed["history"][-1]["metrics"]["errorRate"] > 0.05
    assert bad_split["canary"] == 0

    reasons = {
        (e.get("reason"), e.get("type"))
        for e in kube.list(EVENTS, NS)
        if (e.get("involvedObject") or {}).get("name") == "bad"
    }
    assert ("RolloutRolledBack", "Warning") in reasons
    audit = event_store.audit("good", NS)
    assert {a["type"] for a in audit} == {"dev.aiservice.rollout.decision"}
    assert len(audit) >= len(done["history"])
    # The operator's metrics count the decisions by action and phase.
    by_action: dict[str, float] = {}
    for (action, phase), count in _decisions().items():
        earlier = decisions_before.get((action, phase), 0)
        by_action[action] = by_action.get(action, 0) + count - earlier
    assert by_action["rollback"] >= 1 and by_action["abort"] >= 1
    assert by_action["succeed"] >= 2  # good and shadow


def _decisions() -> dict[tuple[str, str], float]:
    """The operator's rollout decision counter, from this process's registry."""
    from aiservice_operator.cluster.operator_metrics import ROLLOUT_DECISIONS

    return {
        (s.labels["action"], s.labels["phase"]): s.value
        for metric in ROLLOUT_DECISIONS.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }
