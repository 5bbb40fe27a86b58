"""The pure parts of `aisvc status|list|promote|abort`: the machine-readable summary, the
health verdict behind the exit codes, the list table, and the polling loop (on a fake
clock, so nothing here waits)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiservice_operator.cli.rollout_view import (
    EXIT_CODES,
    answered,
    format_table,
    health,
    human_age,
    list_row,
    poll,
    status_view,
    summary,
)
from rich.console import Console

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def aiservice(
    phase: str | None = None,
    *,
    rollout: bool = True,
    conditions: dict[str, str] | None = None,
    reason: str = "",
    history: list[dict[str, Any]] | None = None,
    canary: str = "v2",
    generation: int | None = None,
    observed: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"traffic": {"stable": "v1"}}
    if rollout:
        spec["rollout"] = {"canary": "v2", "steps": [10, 50, 100], "analysis": {"failureLimit": 3}}
    status: dict[str, Any] = {
        "conditions": [
            {"type": t, "status": s, "reason": reason, "message": f"{t} is {s}"}
            for t, s in (conditions or {}).items()
        ]
    }
    if phase is not None:
        status["rollout"] = {
            "phase": phase, "canary": canary, "stable": "v1", "step": 2, "weight": 50,
            "failures": 1, "message": "why", "history": history or [], "pausedBy": "",
        }  # fmt: skip
    if observed is not None:
        status["observedGeneration"] = observed
    meta: dict[str, Any] = {
        "name": "svc",
        "namespace": "shop",
        "creationTimestamp": "2026-01-01T09:00:00Z",
    }
    if generation is not None:
        meta["generation"] = generation
    return {"metadata": meta, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("obj", "verdict"),
    [
        (aiservice("Succeeded"), "healthy"),
        (aiservice("Failed"), "degraded"),
        (aiservice("RollingBack"), "degraded"),
        (aiservice("Progressing"), "progressing"),
        (aiservice("Paused"), "progressing"),
        (aiservice("Promoting"), "progressing"),
        (aiservice(None), "progressing"),  # the operator has not started it yet
        # A Succeeded state left from an earlier canary: the new one has not started.
        (aiservice("Succeeded", canary="v0"), "progressing"),
        # The operator has not yet seen the latest spec.
        (aiservice("Succeeded", generation=3, observed=2), "progressing"),
        (aiservice("Succeeded", generation=3, observed=3), "healthy"),
        (aiservice("Progressing", conditions={"Degraded": "True"}), "degraded"),
        (aiservice(rollout=False, conditions={"Ready": "True"}), "healthy"),
        (aiservice(rollout=False, conditions={"Ready": "Unknown"}), "progressing"),
        (aiservice(rollout=False), "progressing"),
        (
            aiservice(rollout=False, conditions={"Ready": "False"}, reason="RevisionPending"),
            "progressing",
        ),
        (aiservice(rollout=False, conditions={"Ready": "False"}, reason="InvalidSpec"), "degraded"),
    ],
)
def test_health_decides_the_exit_code(obj: dict[str, Any], verdict: str) -> None:
    assert health(obj) == verdict


def test_exit_codes_are_distinct() -> None:
    assert EXIT_CODES == {"healthy": 0, "degraded": 1, "usage": 2, "timeout": 3}


def test_summary_is_the_machine_readable_state() -> None:
    history = [{"at": "2026-01-01T11:00:00.000Z", "action": "start", "weight": 0}]
    out = summary(aiservice("Progressing", conditions={"Ready": "True"}, history=history))
    assert out == {
        "name": "svc",
        "namespace": "shop",
        "health": "progressing",
        "rollout": True,
        "phase": "Progressing",
        "step": 2,
        "steps": 3,
        "weight": 50,
        "stable": "v1",
        "canary": "v2",
        "failures": 1,
        "failureLimit": 3,
        "pausedBy": "",
        "message": "why",
        "history": history,
        "quality": [],  # no quality checks in this rollout
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "", "message": "Ready is True"}
        ],
    }
    plain = summary(aiservice(rollout=False, conditions={"Ready": "True"}))
    assert (plain["rollout"], plain["phase"], plain["canary"], plain["weight"]) == (
        False,
        None,
        None,
        0,
    )
    assert plain["stable"] == "v1" and plain["health"] == "healthy"


def test_list_rows_and_table() -> None:
    rows = [
        list_row(aiservice("Progressing", conditions={"Ready": "True"}), NOW, namespaced=True),
        list_row(aiservice(rollout=False), NOW, namespaced=True),
    ]
    assert rows == [
        ["svc", "shop", "Progressing", "2/3", "v1", "v2", "50%", "True", "3h"],
        ["svc", "shop", "-", "-", "v1", "-", "-", "-", "3h"],
    ]
    assert list_row(aiservice("Failed"), NOW, namespaced=False)[:2] == ["svc", "Failed"]
    table = format_table(["NAME", "PHASE"], [["a-long-name", "Succeeded"], ["b", "-"]])
    assert table.splitlines() == [
        "NAME          PHASE",
        "a-long-name   Succeeded",
        "b             -",
    ]


@pytest.mark.parametrize(
    ("created", "shown"),
    [
        ("2026-01-01T11:59:15Z", "45s"),
        ("2026-01-01T11:55:00Z", "5m"),
        ("2026-01-01T09:00:00Z", "3h"),
        ("2025-12-29T12:00:00Z", "3d"),
        ("", "-"),
        ("garbage", "-"),
    ],
)
def test_human_age(created: str, shown: str) -> None:
    assert human_age(created, NOW) == shown


def test_answered_finds_the_operators_decision_on_a_command() -> None:
    old = {"at": "t1", "action": "promote", "command": "promote", "weight": 100}
    before = aiservice("Progressing", history=[old])
    assert answered("promote", before["status"]["rollout"]["history"], before) is None
    new = {"at": "t2", "action": "abort", "command": "abort", "weight": 0}
    after = aiservice("Failed", history=[old, new])
    assert answered("abort", [old], after) == new
    assert answered("promote", [old], after) is None  # the old promote is not an answer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_poll_shows_each_change_and_stops_when_finished() -> None:
    states = iter(["Progressing", "Progressing", "Promoting", "Succeeded", "Failed"])
    shown: list[str] = []
    fake = FakeClock()
    obj, finished = poll(
        lambda: aiservice(next(states)),
        lambda o: health(o) != "progressing",
        timeout=None,
        on_change=lambda o: shown.append(o["status"]["rollout"]["phase"]),
        interval=1.0,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    assert finished and obj["status"]["rollout"]["phase"] == "Succeeded"
    assert shown == ["Progressing", "Promoting", "Succeeded"]  # redrawn on change only
    assert fake.sleeps == [1.0, 1.0, 1.0]


def test_poll_gives_up_at_the_timeout() -> None:
    fake = FakeClock()
    obj, finished = poll(
        lambda: aiservice("Progressing"),
        lambda o: health(o) != "progressing",
        timeout=2.5,
        on_change=lambda o: None,
        interval=1.0,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    assert not finished and obj["status"]["rollout"]["phase"] == "Progressing"
    assert fake.sleeps == [1.0, 1.0, 0.5] and fake.now == 2.5  # never sleeps past it


QUALITY_ANALYSIS = {
    "errorRate": 0.0, "agreement": 0.417, "minAgreement": 0.85, "outputDrift": 0.558,
    "maxOutputDrift": 0.2, "accuracy": None, "minAccuracy": None, "accuracyDrop": None,
    "maxAccuracyDrop": None, "paired": 48, "feedback": 0,
}  # fmt: skip


def test_status_shows_each_quality_check_beside_its_limit() -> None:
    obj = aiservice("Failed")
    obj["status"]["rollout"]["lastAnalysis"] = QUALITY_ANALYSIS
    rows = {q["check"]: q for q in summary(obj)["quality"]}
    assert rows["agreement"] == {"check": "agreement", "value": 0.417, "limit": 0.85,
                                 "bound": "min"}  # fmt: skip
    assert rows["accuracy"]["limit"] is None
    console = Console(width=120, record=True)
    console.print(status_view(obj))
    text = console.export_text()
    line = {k: next(x for x in text.splitlines() if x.startswith(k + " "))
            for k in ("agreement", "output drift", "accuracy")}  # fmt: skip
    assert "0.417" in line["agreement"] and "min 0.85" in line["agreement"]
    assert "FAILED" in line["agreement"]
    assert "max 0.2" in line["output drift"] and "FAILED" in line["output drift"]
    assert "no data" in line["accuracy"] and "not checked" in line["accuracy"]
    assert "48 inputs answered by both, 0 canary answers with feedback" in text
