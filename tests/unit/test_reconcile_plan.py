"""The reconcile plan: from what a reconcile read to the objects, status and Events it
writes, and the one observation policy both executors use."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from aiservice_operator.core import reconcile
from aiservice_operator.core.analysis import (
    NO_EVENT_STORE,
    SourceUnavailable,
    Traffic,
    observation,
    p99_from_buckets,
)
from aiservice_operator.core.compile import CompileOptions, compile_aiservice
from aiservice_operator.core.conditions import READY, find_condition
from aiservice_operator.core.spec import parse

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
OPTIONS = CompileOptions()


def body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "reviews", "namespace": "shop", "uid": "u", "generation": 3},
        "spec": {
            "consumes": [{"type": "com.example.in"}],
            "function": {"image": "img:1", "entrypoint": "pkg.fn"},
            "models": [
                {"name": "v1", "uri": "file:///v1.pt"},
                {"name": "v2", "uri": "file:///v2.pt"},
            ],
            **spec,
        },
    }


def ready(condition_of: dict[str, Any]) -> dict[str, Any]:
    return dict(find_condition(condition_of.get("conditions") or (), READY) or {})


def test_an_invalid_spec_applies_nothing_and_says_why_once() -> None:
    bad = body(models=[])
    plan = reconcile.plan(reconcile.Read(bad), now=NOW, options=OPTIONS)
    assert plan.desired is None and plan.invalid_spec is not None
    assert plan.refusal is not None and plan.refusal.startswith("invalid spec: ")
    assert ready(plan.status)["status"] == "False"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "InvalidSpec")]
    again = reconcile.plan(reconcile.Read({**bad, "status": plan.status}), now=NOW, options=OPTIONS)
    assert again.events == ()  # the same refusal is not announced twice


def test_a_new_aiservice_creates_its_children_and_is_not_ready_yet() -> None:
    plan = reconcile.plan(reconcile.Read(body()), now=NOW, options=OPTIONS)
    assert plan.desired is not None and plan.refusal is None
    assert plan.service_action == "created"
    assert set(plan.trigger_actions.values()) == {"created"}
    assert ready(plan.status)["status"] != "True"
    assert [e.reason for e in plan.events] == ["Created"]


def test_what_is_already_there_is_unchanged_and_foreign_triggers_go() -> None:
    first = reconcile.plan(reconcile.Read(body()), now=NOW, options=OPTIONS)
    assert first.desired is not None
    live = copy.deepcopy(first.desired.service)
    live["metadata"].update(generation=1, resourceVersion="9")
    stray = copy.deepcopy(first.desired.triggers[0])
    stray["metadata"]["name"] = "old-trigger"
    read = reconcile.Read(
        {**body(), "status": first.status},
        live,
        (),
        (*copy.deepcopy(first.desired.triggers), stray),
    )
    plan = reconcile.plan(read, now=NOW, options=OPTIONS)
    assert plan.service_action == "unchanged"
    assert plan.trigger_actions["old-trigger"] == "deleted"
    assert {a for n, a in plan.trigger_actions.items() if n != "old-trigger"} == {"unchanged"}


def test_the_weight_comes_from_the_rollout_in_status() -> None:
    rolled = body(rollout={"canary": "v2", "steps": [25, 100], "interval": "1m"})
    ais = parse(rolled)
    assert reconcile.weights(ais, None) == {"v1": 100, "v2": 0}  # not started: canary at 0
    assert reconcile.weights(parse(body()), None) is None  # no rollout: the spec's traffic
    desired = reconcile.desired_objects(
        ais, status_rollout=None, ready_revisions=(), options=OPTIONS
    )
    assert desired == compile_aiservice(
        ais, weights={"v1": 100, "v2": 0}, ready_revisions=(), options=OPTIONS
    )


def test_p99_is_prometheus_histogram_quantile() -> None:
    # rank 99 of 100 falls in (0.1, 0.2], 49 of its 50 observations in: interpolated.
    assert p99_from_buckets([(0.1, 50), (0.2, 100), (math.inf, 100)]) == pytest.approx(0.198)
    # in +Inf: the highest finite bound, as Prometheus answers.
    assert p99_from_buckets([(0.1, 0), (0.5, 5), (math.inf, 100)]) == 0.5
    assert p99_from_buckets([(0.1, 0), (math.inf, 0)]) is None  # nothing observed
    assert p99_from_buckets([(math.inf, 10)]) is None  # no finite bucket to answer with


@pytest.mark.parametrize(
    ("dead", "count", "reasons"),
    [
        (3, 3, ()),
        (None, None, (NO_EVENT_STORE,)),
        (SourceUnavailable("store down"), None, ("store down",)),
    ],
)
def test_one_observation_policy(dead: Any, count: int | None, reasons: tuple[str, ...]) -> None:
    """Without an event store, or with one that cannot be read, the dead letters are
    unknown: the observation is unavailable and the rollout pauses, in both executors."""
    seen = observation(
        Traffic(100, 1, 12.0, "function"), dead, window_seconds=60, canary_ready=True
    )
    assert seen.dead_letters == count and seen.unavailable == reasons
    assert seen.available is (not reasons)
