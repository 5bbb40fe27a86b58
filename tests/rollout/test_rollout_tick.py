"""`rollout_tick` end to end against the real sources: Prometheus scraping the queue-proxy
stand-in, and the event store for dead letters and the audit log.

Prometheus answers for "now"; the ticks are given times in the recent past, one analysis
interval apart, so the whole rollout runs in a few seconds of wall-clock time while every
analysis still reads the real series of the canary revision.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiservice_operator.core.compile import revision_name
from aiservice_operator.core.rollout_tick import TickResult, rollout_tick
from aiservice_operator.core.spec import AIService, parse
from aiservice_operator.sources.canary import MetricsObserver, PrometheusSource
from aiservice_operator.sources.event_store import EventStoreClient

from tests.support.rollout import NAMESPACE, EventStore, Prometheus, Standin, free_port

pytestmark = pytest.mark.prometheus
INTERVAL = 20
CANARIES = {"good": 0.0, "bad": 0.5, "dlq": 0.0, "blind": 0.0}
"""AIService name -> error rate of its canary revision; 40 events each."""
EVENTS = 40


def make_ais(name: str, annotations: dict[str, str] | None = None, **analysis: Any) -> AIService:
    return parse(
        {
            "apiVersion": "aiservice.dev/v1alpha1",
            "kind": "AIService",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations or {}},
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
                    "interval": f"{INTERVAL}s",
                    "analysis": {"minEvents": 20, "maxErrorRate": 0.05, **analysis},
                },
            },
        }
    )


@pytest.fixture(scope="module")
def canaries(standin: Standin, prometheus: Prometheus) -> dict[str, str]:
    """Serve 40 events through the canary revision of each AIService in `CANARIES` (at
    its error rate) and wait until Prometheus has them; name -> canary revision."""
    revisions = {name: revision_name(make_ais(name), "v2") for name in CANARIES}
    for name, revision in revisions.items():
        standin.register(revision, error_rate=CANARIES[name], delay_ms=1)
    selector = f'revision_app_request_count{{revision_name=~"{"|".join(revisions.values())}"}}'
    prometheus.wait_value(f"count({selector})", 2 * len(revisions))  # every series at 0
    for revision in revisions.values():
        standin.send(revision, EVENTS)
    prometheus.wait_settled(selector, EVENTS * len(revisions))
    return revisions


class Operator:
    """Plays the operator's timer: keeps status the way the API server would (as JSON)."""

    def __init__(self, ais: AIService, observer: MetricsObserver, store: EventStoreClient) -> None:
        self.ais = ais
        self.observer = observer
        self.store = store
        self.status: Any = None

    def tick(self, at: datetime, ais: AIService | None = None) -> TickResult:
        result = rollout_tick(
            ais or self.ais,
            self.status,
            observer=self.observer,
            now=at,
            canary_ready=True,
            audit=self.store.send_audit,
        )
        if result.status is not None:
            self.status = json.loads(json.dumps(result.status))
        return result


def observer_for(prometheus: Prometheus, event_store: EventStore) -> MetricsObserver:
    return MetricsObserver(
        PrometheusSource(prometheus.url), EventStoreClient(event_store.url, event_store.token)
    )


def times(count: int) -> list[datetime]:
    """`count` tick times, the first two a second apart (start, then first step), the rest
    one interval apart, ending now."""
    end = datetime.now(UTC)
    rest = [end - timedelta(seconds=INTERVAL * n) for n in range(count - 2)][::-1]
    first = rest[0] - timedelta(seconds=INTERVAL)
    return [first - timedelta(seconds=1), first, *rest]


def test_good_canary_is_promoted_through_every_step(
    canaries: dict[str, str], prometheus: Prometheus, event_store: EventStore
) -> None:
    ais = make_ais("good")
    store = EventStoreClient(event_store.url, event_store.token)
    op = Operator(ais, observer_for(prometheus, event_store), store)
    t = times(4)
    seen = [op.tick(at) for at in [*t, t[-1] + timedelta(seconds=1)]]
    assert [(r.state.phase, r.weights["v2"]) for r in seen] == [
        ("Initializing", 0),
        ("Progressing", 50),
        ("Progressing", 100),
        ("Promoting", 100),
        ("Succeeded", 100),
    ]
    assert seen[2].weights == {"v1": 0, "v2": 100}
    analysis = seen[2].state.last_analysis
    assert analysis["source"] == "queue-proxy" and analysis["errorRate"] == 0.0
    assert analysis["deadLetters"] == 0 and EVENTS <= analysis["events"] <= EVENTS * 1.5

    audit = event_store.audit("good")
    assert len(audit) == 5
    assert {a["type"] for a in audit} == {"dev.aiservice.rollout.decision"}
    assert all(r.audit_error is None for r in seen)
    assert seen[2].kube_event is not None and seen[2].kube_event.reason == "RolloutAdvanced"


def test_canary_with_errors_is_rolled_back(
    canaries: dict[str, str], prometheus: Prometheus, event_store: EventStore
) -> None:
    ais = make_ais("bad")
    op = Operator(ais, observer_for(prometheus, event_store), EventStoreClient(event_store.url))
    seen = [op.tick(at) for at in times(4)]
    assert [(r.state.phase, r.weights["v2"]) for r in seen] == [
        ("Initializing", 0),
        ("Progressing", 50),
        ("Progressing", 50),
        ("Failed", 0),
    ]
    assert seen[-1].weights == {"v1": 100, "v2": 0}
    assert seen[-1].kube_event is not None and seen[-1].kube_event.type == "Warning"
    assert "error rate 0.5" in seen[-1].state.message


def test_dead_letters_of_the_canary_roll_it_back(
    canaries: dict[str, str], prometheus: Prometheus, event_store: EventStore
) -> None:
    ais = make_ais("dlq", failureLimit=1, maxDeadLetterRate=0.05)
    for n in range(6):
        event_store.dead_letter("dlq", canaries["dlq"], f"dlq-{n}")
    op = Operator(ais, observer_for(prometheus, event_store), EventStoreClient(event_store.url))
    seen = [op.tick(at) for at in times(3)]
    assert seen[-1].state.phase == "Failed"
    assert seen[-1].state.last_analysis["deadLetters"] == 6
    assert seen[-1].state.last_analysis["deadLetterRate"] > 0.05
    assert "dead-letter rate" in seen[-1].state.message


def test_unreachable_event_store_pauses_and_commands_are_consumed(
    canaries: dict[str, str], prometheus: Prometheus
) -> None:
    ais = make_ais("blind")
    gone = EventStoreClient(f"http://127.0.0.1:{free_port()}")
    op = Operator(ais, MetricsObserver(PrometheusSource(prometheus.url), gone), gone)
    t = times(3)
    seen = [op.tick(at) for at in t]
    assert seen[-1].state.phase == "Paused" and seen[-1].weights["v2"] == 50
    message = seen[-1].state.message
    assert message.startswith(
        "metrics unavailable: cannot reach the event store at http://127.0.0.1"
    )
    assert seen[-1].audit_error is not None  # the audit log is down too; status still tells

    # A restarted operator reads status back and obeys `aisvc abort`.
    aborted = make_ais("blind", annotations={"aiservice.dev/abort": "2026-01-01T00:00:00Z"})
    result = op.tick(t[-1] + timedelta(seconds=1), aborted)
    assert (result.state.phase, result.weights["v2"]) == ("Failed", 0)
    assert result.clear_annotations == ("aiservice.dev/abort",)
    assert op.tick(t[-1] + timedelta(seconds=2)).status is None  # nothing left to change
