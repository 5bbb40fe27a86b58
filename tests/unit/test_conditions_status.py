"""Status conditions keep their transition time; the status summary reads Knative right."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiservice_operator.core import conditions
from aiservice_operator.core.compile import compile_aiservice, intended_weights, revision_name
from aiservice_operator.core.conditions import (
    REASON_INVALID_SPEC,
    REASON_KNATIVE_NOT_READY,
    REASON_READY,
    REASON_REVISION_PENDING,
    condition,
    find_condition,
    invalid_spec_status,
    knative_state,
    merge_conditions,
    summarize_status,
    timestamp,
)
from aiservice_operator.core.spec import AIService, SpecError, parse

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def ais() -> AIService:
    return parse(
        {
            "apiVersion": "aiservice.dev/v1alpha1",
            "kind": "AIService",
            "metadata": {"name": "reviews", "namespace": "shop", "uid": "u", "generation": 7},
            "spec": {
                "consumes": [{"type": "com.example.in"}],
                "function": {"image": "img:1", "entrypoint": "pkg.fn"},
                "models": [
                    {"name": "v1", "uri": "file:///v1.pt"},
                    {"name": "v2", "uri": "file:///v2.pt"},
                ],
                "rollout": {"canary": "v2"},
            },
        }
    )


def ready_status(service: AIService, **extra: Any) -> dict[str, Any]:
    v1, v2 = (revision_name(service, m) for m in ("v1", "v2"))
    return {
        "conditions": [{"type": "Ready", "status": "True"}],
        "url": "http://reviews.shop.example.com",
        "latestReadyRevisionName": v1,
        "traffic": [
            {"revisionName": v1, "percent": 90, "tag": "stable", "url": "http://stable-reviews"},
            {"revisionName": v2, "percent": 10, "tag": "canary"},
            {"revisionName": "reviews-v0-0123abcd", "percent": 0, "tag": "v0"},
        ],
        **extra,
    }


def test_timestamp_is_rfc3339_utc() -> None:
    assert timestamp(T0) == "2026-05-01T12:00:00Z"
    assert timestamp(datetime(2026, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-05-01T12:00:00Z"
    )
    assert timestamp(datetime(2026, 5, 1, 12, 0, 0)) == "2026-05-01T12:00:00Z"


def test_same_status_keeps_last_transition_time_even_with_a_new_reason() -> None:
    first = merge_conditions(
        [], [condition("Ready", "False", "A", "a", now=T0, observed_generation=1)]
    )
    again = merge_conditions(
        first, [condition("Ready", "False", "B", "b", now=T1, observed_generation=2)]
    )
    (ready,) = again
    assert ready["lastTransitionTime"] == timestamp(T0)
    assert (ready["reason"], ready["message"], ready["observedGeneration"]) == ("B", "b", 2)


def test_status_change_moves_last_transition_time() -> None:
    first = merge_conditions(
        [], [condition("Ready", "False", "A", "", now=T0, observed_generation=1)]
    )
    flipped = merge_conditions(
        first, [condition("Ready", "True", "Ready", "", now=T1, observed_generation=1)]
    )
    assert flipped[0]["lastTransitionTime"] == timestamp(T1)


def test_other_condition_types_are_kept_and_sorted() -> None:
    previous = [
        {"type": "RolloutProgressing", "status": "True", "lastTransitionTime": "x"},
        {"type": "Degraded", "status": "False", "lastTransitionTime": "y"},
    ]
    merged = merge_conditions(
        previous, [condition("Ready", "True", "Ready", "", now=T0, observed_generation=1)]
    )
    assert [c["type"] for c in merged] == ["Degraded", "Ready", "RolloutProgressing"]
    assert find_condition(merged, "Degraded") == previous[1]


def test_knative_state_collects_ready_revisions() -> None:
    service = ais()

    def revision(name: str, ready: str) -> dict[str, Any]:
        conditions = [{"type": "Ready", "status": ready}]
        return {"metadata": {"name": name}, "status": {"conditions": conditions}}

    revision_objects = [
        revision("reviews-v3-aaaa0000", "True"),
        revision("reviews-v4-bbbb0000", "False"),
    ]
    state = knative_state(ready_status(service), revision_objects)
    assert state.ready
    assert state.url == "http://reviews.shop.example.com"
    assert state.ready_revisions == {
        revision_name(service, "v1"),
        revision_name(service, "v2"),
        "reviews-v0-0123abcd",
        "reviews-v3-aaaa0000",
    }
    empty = knative_state(None)
    assert not empty.ready and empty.ready_revisions == frozenset() and empty.url == ""


def test_summary_when_everything_is_ready() -> None:
    service = ais()
    status = ready_status(service)
    desired = compile_aiservice(
        service,
        weights=intended_weights(service, 10),
        ready_revisions=knative_state(status).ready_revisions,
    )
    summary = summarize_status(service, desired, status, T0)
    assert summary["observedGeneration"] == 7
    assert summary["url"] == "http://reviews.shop.example.com"
    (ready,) = summary["conditions"]
    assert (ready["status"], ready["reason"]) == ("True", REASON_READY)
    assert summary["traffic"] == [
        {"model": "v1", "revisionName": revision_name(service, "v1"), "percent": 90,
         "tag": "stable", "url": "http://stable-reviews"},
        {"model": "v2", "revisionName": revision_name(service, "v2"), "percent": 10,
         "tag": "canary"},
        {"model": "v0", "revisionName": "reviews-v0-0123abcd", "percent": 0, "tag": "v0"},
    ]  # fmt: skip
    assert "rollout" not in summary and "deadLetters" not in summary


def test_summary_while_a_revision_is_pending() -> None:
    service = ais()
    desired = compile_aiservice(service, ready_revisions=[revision_name(service, "v1")])
    previous = {
        "conditions": [{"type": "RolloutProgressing", "status": "True", "lastTransitionTime": "t"}]
    }
    summary = summarize_status(service, desired, ready_status(service), T0, previous)
    ready = find_condition(summary["conditions"], "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", REASON_REVISION_PENDING)
    assert revision_name(service, "v2") in ready["message"]
    assert find_condition(summary["conditions"], "RolloutProgressing") == previous["conditions"][0]


@pytest.mark.parametrize(
    ("knative", "status"),
    [
        (None, "Unknown"),
        ({"conditions": [{"type": "Ready", "status": "False", "reason": "RevisionFailed",
                          "message": "image pull"}]}, "False"),
    ],
)  # fmt: skip
def test_summary_when_knative_is_not_ready(knative: Any, status: str) -> None:
    service = ais()
    names = [revision_name(service, m) for m in ("v1", "v2")]
    desired = compile_aiservice(service, ready_revisions=names)
    (ready,) = summarize_status(service, desired, knative, T0)["conditions"]
    assert (ready["status"], ready["reason"]) == (status, REASON_KNATIVE_NOT_READY)
    if knative:
        assert "image pull" in ready["message"]


def test_summary_keeps_transition_time_across_reconciles() -> None:
    service = ais()
    names = [revision_name(service, m) for m in ("v1", "v2")]
    desired = compile_aiservice(service, ready_revisions=names)
    first = summarize_status(service, desired, ready_status(service), T0)
    second = summarize_status(service, desired, ready_status(service), T1, first)
    assert second == first


def test_invalid_spec_status_names_the_fields() -> None:
    error = SpecError([("spec.models[0].uri", "is not valid"), ("spec.traffic.stable", "unknown")])
    status = invalid_spec_status(error, 3, T0, {"url": "http://kept"})
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", REASON_INVALID_SPEC)
    assert "spec.models[0].uri" in ready["message"] and "spec.traffic.stable" in ready["message"]
    assert status["observedGeneration"] == 3
    assert "url" not in status


@pytest.mark.parametrize(
    ("phase", "progressing", "degraded"),
    [
        ("Progressing", ("True", "Progressing"), ("False", "AsExpected")),
        ("Paused", ("Unknown", "Paused"), ("False", "AsExpected")),
        ("RollingBack", ("True", "RollingBack"), ("True", "RolloutRollingBack")),
        ("Succeeded", ("False", "Succeeded"), ("False", "AsExpected")),
        ("Failed", ("False", "Failed"), ("True", "RolloutFailed")),
    ],
)
def test_rollout_conditions_follow_the_recorded_phase(
    phase: str, progressing: tuple[str, str], degraded: tuple[str, str]
) -> None:
    service = ais()
    desired = compile_aiservice(service, ready_revisions=[revision_name(service, "v1")])
    previous = {"rollout": {"phase": phase, "step": 2, "weight": 25, "message": "p99 ok"}}
    summary = summarize_status(service, desired, ready_status(service), T0, previous)
    got = {c["type"]: (c["status"], c["reason"]) for c in summary["conditions"]}
    assert got["RolloutProgressing"] == progressing
    assert got["Degraded"] == degraded
    message = find_condition(summary["conditions"], "RolloutProgressing")
    assert message is not None and "25%" in message["message"] and "p99 ok" in message["message"]


def test_rollout_removed_from_the_spec_stops_progressing() -> None:
    m = {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {
            "consumes": [{"type": "com.example.in"}],
            "function": {"image": "img:1", "entrypoint": "pkg.fn"},
            "models": [{"name": "v1", "uri": "file:///v1.pt"}],
        },
    }
    service = parse(m)
    desired = compile_aiservice(service, ready_revisions=[revision_name(service, "v1")])
    assert [c["type"] for c in summarize_status(service, desired, None, T0)["conditions"]] == [
        "Ready"
    ]
    previous = {"conditions": [{"type": "RolloutProgressing", "status": "True"}]}
    summary = summarize_status(service, desired, None, T0, previous)
    rollout = find_condition(summary["conditions"], "RolloutProgressing")
    assert rollout is not None and (rollout["status"], rollout["reason"]) == ("False", "NoRollout")


# --- Kubernetes Events -----------------------------------------------------------------


def _status(traffic: list[tuple[str, int, str]], ready: tuple[str, str] | None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "traffic": [
            {"model": r.split("-")[1], "revisionName": r, "percent": p, "tag": t}
            for r, p, t in traffic
        ]
    }
    if ready:
        status["conditions"] = [{"type": "Ready", "status": ready[0], "reason": ready[1],
                                 "message": f"{ready[1]} message"}]  # fmt: skip
    return status


def test_a_new_service_tells_its_story_in_three_events() -> None:
    pending = _status([], ("False", conditions.REASON_REVISION_PENDING))
    created = conditions.transition_events(
        {}, pending, service_action="created", trigger_actions={"svc-1a2b": "created"}
    )
    assert [(e.type, e.reason) for e in created] == [("Normal", "Created")]
    assert "svc-1a2b" in created[0].message
    routed = _status([("svc-v1-aaaa", 100, "stable"), ("svc-v1-aaaa", 0, "v1")], ("True", "Ready"))
    ready = conditions.transition_events(
        pending, routed, service_action="updated", trigger_actions={"svc-1a2b": "unchanged"}
    )
    # One RevisionReady per revision (not per tag), no TrafficShifted for the first routing.
    assert [(e.type, e.reason) for e in ready] == [("Normal", "RevisionReady"), ("Normal", "Ready")]


def test_traffic_shifts_and_failures_are_events_routine_waits_are_not() -> None:
    before = _status([("svc-v1-aaaa", 100, "stable")], ("True", "Ready"))
    shifted = _status(
        [("svc-v1-aaaa", 90, "stable"), ("svc-v2-bbbb", 10, "canary")], ("True", "Ready")
    )
    events = conditions.transition_events(
        before, shifted, service_action="updated", trigger_actions={}
    )
    assert [e.reason for e in events] == ["RevisionReady", "TrafficShifted"]
    assert events[1].message == "v1: 90%, v2: 10%"
    waiting = _status([("svc-v1-aaaa", 100, "stable")], ("Unknown", "KnativeNotReady"))
    assert not conditions.transition_events(
        before, waiting, service_action="updated", trigger_actions={}
    )
    failed = _status([("svc-v1-aaaa", 100, "stable")], ("False", "KnativeNotReady"))
    (warning,) = conditions.transition_events(
        before, failed, service_action="updated", trigger_actions={}, knative_failed=True
    )
    assert (warning.type, warning.reason) == ("Warning", "KnativeNotReady")


def test_rollout_removed_after_a_failure_is_no_longer_degraded() -> None:
    """Removing spec.rollout ends a failed rollout: Degraded must not stay True for good."""
    failed = ais()
    desired = compile_aiservice(failed, ready_revisions=[revision_name(failed, "v1")])
    previous = {"rollout": {"phase": "Failed", "step": 1, "weight": 0, "message": "p99 high"}}
    after_failure = summarize_status(failed, desired, ready_status(failed), T0, previous)
    assert find_condition(after_failure["conditions"], "Degraded")["status"] == "True"  # type: ignore[index]

    m = {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "reviews", "namespace": "shop", "uid": "u", "generation": 8},
        "spec": {
            "consumes": [{"type": "com.example.in"}],
            "function": {"image": "img:1", "entrypoint": "pkg.fn"},
            "models": [
                {"name": "v1", "uri": "file:///v1.pt"},
                {"name": "v2", "uri": "file:///v2.pt"},
            ],
        },
    }
    plain = parse(m)
    desired = compile_aiservice(plain, ready_revisions=[revision_name(plain, "v1")])
    summary = summarize_status(
        plain, desired, ready_status(plain), T1, {**previous, **after_failure}
    )
    got = {c["type"]: (c["status"], c["reason"]) for c in summary["conditions"]}
    assert got["RolloutProgressing"] == ("False", "NoRollout")
    assert got["Degraded"][0] == "False"
