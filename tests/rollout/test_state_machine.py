"""Table-driven tick sequences through the canary state machine (pure, no clock)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiservice_functions.timestamps import rfc3339
from aiservice_operator.core import analysis
from aiservice_operator.core import rollout as ro
from aiservice_operator.core.spec import AIServiceSpec, parse

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
INTERVAL = 60


def make_spec(**rollout: Any) -> AIServiceSpec:
    settings: dict[str, Any] = {
        "canary": "v2",
        "steps": [10, 50, 100],
        "interval": f"{INTERVAL}s",
        "analysis": {
            "maxErrorRate": 0.05,
            "maxP99LatencyMs": 300,
            "maxDeadLetterRate": 0.02,
            "minEvents": 20,
            "failureLimit": 2,
        },
    }
    settings.update(rollout)
    manifest = {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "sentiment", "namespace": "shop"},
        "spec": {
            "consumes": [{"type": "com.example.review"}],
            "function": {"image": "img:1", "entrypoint": "aiservice_functions.sentiment"},
            "models": [
                {"name": "v1", "uri": "file:///models/v1.pt"},
                {"name": "v2", "uri": "file:///models/v2.pt"},
            ],
            "traffic": {"stable": "v1"},
            "rollout": settings,
        },
    }
    return parse(manifest).spec


GOOD = analysis.Observation(events=100, errors=1, p99_latency_ms=120.0, dead_letters=0)
ERRORS = analysis.Observation(events=100, errors=12, p99_latency_ms=120.0, dead_letters=0)
SLOW = analysis.Observation(events=100, errors=0, p99_latency_ms=900.0, dead_letters=0)
DEAD = analysis.Observation(events=100, errors=0, p99_latency_ms=100.0, dead_letters=7)
FEW = analysis.Observation(events=5, errors=0, p99_latency_ms=100.0, dead_letters=0)
DOWN = analysis.Observation(unavailable=("prometheus: connection refused",))
NOT_READY = analysis.Observation(canary_ready=False)


@dataclass
class Tick:
    """One tick: seconds after T0, what was observed, pending commands, what must follow."""

    at: float
    obs: analysis.Observation | None
    phase: str
    weight: int
    action: str | None
    step: int | None = None
    commands: tuple[ro.Command, ...] = ()
    spec: dict[str, Any] = field(default_factory=dict)


def run(ticks: list[Tick], **rollout: Any) -> ro.RolloutState:
    state: ro.RolloutState | None = None
    for number, tick in enumerate(ticks):
        spec = make_spec(**{**rollout, **tick.spec})
        now = T0 + timedelta(seconds=tick.at)
        state, weight, decision = ro.step(spec, state, tick.obs, now, tick.commands)
        where = f"tick {number} at +{tick.at}s"
        assert (state.phase, weight) == (tick.phase, tick.weight), f"{where}: {state.message}"
        assert (decision.action if decision else None) == tick.action, where
        if tick.step is not None:
            assert state.step == tick.step, where
        if decision is not None:
            assert decision.reason and decision.at == rfc3339(now)
    assert state is not None
    return state


START = [
    Tick(0, None, "Initializing", 0, "start", 0),
    Tick(1, GOOD, "Progressing", 10, "advance", 1),
]


def test_promotion_path_goes_through_every_step() -> None:
    state = run(
        [
            *START,
            Tick(30, GOOD, "Progressing", 10, None),  # interval not over: no analysis
            Tick(61, GOOD, "Progressing", 50, "advance", 2),
            Tick(121, GOOD, "Progressing", 100, "advance", 3),
            Tick(181, GOOD, "Promoting", 100, "promote"),
            Tick(182, None, "Succeeded", 100, "succeed"),
            Tick(999, GOOD, "Succeeded", 100, None),  # sticky
        ]
    )
    advance = [d for d in state.history if d.action == "advance"][-1]
    assert advance.metrics["events"] == 100 and advance.metrics["errorRate"] == 0.01
    assert advance.metrics["maxErrorRate"] == 0.05


@pytest.mark.parametrize(
    ("bad", "words"),
    [(ERRORS, "error rate 0.12"), (SLOW, "p99 latency 900"), (DEAD, "dead-letter rate 0.07")],
    ids=["error-rate", "p99", "dead-letter-rate"],
)
def test_rollback_when_failure_limit_reached(bad: analysis.Observation, words: str) -> None:
    state = run(
        [
            *START,
            Tick(61, GOOD, "Progressing", 50, "advance", 2),
            Tick(121, bad, "Progressing", 50, "check-failed", 2),
            Tick(181, bad, "Failed", 0, "rollback"),
            Tick(241, GOOD, "Failed", 0, None),
        ]
    )
    assert state.failures == 2
    assert words in state.history[-1].reason
    assert "2/2 failed checks" in state.history[-1].reason


def test_stepped_rollback_walks_down_one_step_per_interval() -> None:
    run(
        [
            *START,
            Tick(61, GOOD, "Progressing", 50, "advance", 2),
            Tick(121, GOOD, "Progressing", 100, "advance", 3),
            Tick(181, ERRORS, "Progressing", 100, "check-failed"),
            Tick(241, ERRORS, "RollingBack", 50, "rollback", 2),
            Tick(260, None, "RollingBack", 50, None),
            Tick(301, None, "RollingBack", 10, "rollback", 1),
            Tick(361, None, "Failed", 0, "rollback", 0),
        ],
        rollback="stepped",
    )


def test_not_enough_data_never_advances_nor_fails() -> None:
    state = run(
        [
            *START,
            Tick(61, FEW, "Progressing", 10, "hold", 1),
            Tick(121, FEW, "Progressing", 10, "hold", 1),
            Tick(181, analysis.Observation(events=0), "Progressing", 10, "hold", 1),
            Tick(241, GOOD, "Progressing", 50, "advance", 2),
        ]
    )
    assert state.failures == 0
    holds = [d for d in state.history if d.action == "hold"]
    assert len(holds) == 1 and holds[0].repeats == 3  # folded in history


def test_unreachable_metrics_pause_and_never_promote_blind() -> None:
    state = run(
        [
            *START,
            Tick(61, DOWN, "Paused", 10, "pause"),
            Tick(70, DOWN, "Paused", 10, None),
            Tick(75, GOOD, "Progressing", 10, "resume"),
            Tick(121, GOOD, "Progressing", 50, "advance", 2),
        ]
    )
    pause = next(d for d in state.history if d.action == "pause")
    assert "prometheus: connection refused" in pause.reason


def test_missing_latency_with_enough_events_pauses() -> None:
    no_p99 = analysis.Observation(events=100, errors=0, p99_latency_ms=None, dead_letters=0)
    run([*START, Tick(61, no_p99, "Paused", 10, "pause")])


def test_waits_for_the_canary_revision() -> None:
    run(
        [
            Tick(0, None, "Initializing", 0, "start"),
            Tick(1, NOT_READY, "Initializing", 0, "wait"),
            Tick(2, NOT_READY, "Initializing", 0, None),
            Tick(3, GOOD, "Progressing", 10, "advance", 1),
        ]
    )


def test_pause_resume_abort() -> None:
    state = run(
        [
            *START,
            Tick(10, GOOD, "Paused", 10, "pause", commands=("pause",)),
            Tick(100, GOOD, "Paused", 10, None),  # no analysis while paused
            Tick(101, GOOD, "Paused", 10, "ignore", commands=("pause",)),
            Tick(110, GOOD, "Progressing", 10, "resume", commands=("resume",)),
            Tick(150, GOOD, "Progressing", 10, None),  # a full interval after resume
            Tick(171, GOOD, "Progressing", 50, "advance", 2),
            Tick(172, GOOD, "Failed", 0, "abort", commands=("abort", "promote", "pause")),
            Tick(173, GOOD, "Failed", 0, "ignore", commands=("promote",)),
        ]
    )
    assert state.history[-2].command == "abort"


def test_manual_promote_skips_analysis() -> None:
    run(
        [
            *START,
            Tick(5, None, "Promoting", 100, "promote", commands=("promote",)),
            Tick(6, None, "Succeeded", 100, "succeed"),
        ]
    )


def test_spec_change_mid_rollout_restarts_cleanly() -> None:
    state = run(
        [
            *START,
            Tick(61, GOOD, "Progressing", 50, "advance", 2),
            Tick(121, ERRORS, "Progressing", 50, "check-failed"),
            Tick(130, GOOD, "Initializing", 0, "start", 0, spec={"steps": [20, 100]}),
            Tick(131, GOOD, "Progressing", 20, "advance", 1, spec={"steps": [20, 100]}),
        ]
    )
    assert state.failures == 0
    assert "spec changed" in state.history[-2].reason


def test_shadow_keeps_real_traffic_at_zero_until_promotion() -> None:
    state = run(
        [
            Tick(0, None, "Initializing", 0, "start"),
            Tick(1, GOOD, "Progressing", 0, "advance", 1),
            Tick(61, GOOD, "Progressing", 0, "advance", 2),
            Tick(121, FEW, "Progressing", 0, "hold", 2),
            Tick(181, GOOD, "Progressing", 0, "advance", 3),
            Tick(241, GOOD, "Promoting", 100, "promote"),
            Tick(242, None, "Succeeded", 100, "succeed"),
        ],
        shadow=True,
    )
    assert state.shadow
    assert "mirrored" in next(d for d in state.history if d.action == "advance").reason


def test_shadow_canary_failing_analysis_is_rolled_back() -> None:
    run(
        [
            Tick(0, None, "Initializing", 0, "start"),
            Tick(1, GOOD, "Progressing", 0, "advance", 1),
            Tick(61, ERRORS, "Progressing", 0, "check-failed"),
            Tick(121, ERRORS, "Failed", 0, "rollback"),
        ],
        shadow=True,
    )


def test_restart_mid_rollout_resumes_exactly() -> None:
    spec = make_spec()
    state, _, _ = ro.step(spec, None, None, T0)
    state, _, _ = ro.step(spec, state, GOOD, T0 + timedelta(seconds=1))
    state, _, _ = ro.step(spec, state, ERRORS, T0 + timedelta(seconds=61))
    assert (state.phase, state.step, state.failures) == ("Progressing", 1, 1)

    stored = json.loads(json.dumps(state.to_status()))  # what status.rollout holds
    restored = ro.RolloutState.from_status(stored)
    assert restored == state
    assert ro.current_state(spec, stored) == state
    assert ro.canary_weight(spec, stored) == 10

    # Continuing from the restored state behaves exactly like continuing the original.
    for obs, at in [(GOOD, 100), (GOOD, 121), (ERRORS, 181), (GOOD, 241)]:
        now = T0 + timedelta(seconds=at)
        a = ro.step(spec, state, obs, now)
        b = ro.step(spec, restored, obs, now)
        assert a == b
        state, restored = a[0], b[0]
    assert (state.phase, state.step) == ("Failed", 2)  # 2nd failed check at 50%


def test_history_is_bounded() -> None:
    spec = make_spec(analysis={"failureLimit": 100})
    state, _, _ = ro.step(spec, None, None, T0)
    for n in range(1, 60):
        obs = ERRORS if n % 2 else analysis.Observation(events=100, errors=9, p99_latency_ms=1.0)
        state, _, _ = ro.step(spec, state, obs, T0 + timedelta(seconds=n * INTERVAL))
    assert len(state.history) == ro.HISTORY_LIMIT


def test_status_from_another_spec_is_not_reused() -> None:
    spec = make_spec()
    state, _, _ = ro.step(spec, None, None, T0)
    state, _, _ = ro.step(spec, state, GOOD, T0 + timedelta(seconds=1))
    other = make_spec(steps=[50, 100])
    assert ro.canary_weight(other, state.to_status()) == 0
    assert ro.canary_weight(spec, state.to_status()) == 10
    assert ro.canary_weight(spec, {"phase": "Nonsense"}) == 0


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"phase": "Running"}, "phase"), ({"step": "2"}, "step"), ({"history": {}}, "history")],
)
def test_bad_status_names_the_field(patch: dict[str, Any], field: str) -> None:
    spec = make_spec()
    state, _, _ = ro.step(spec, None, None, T0)
    with pytest.raises(ValueError, match=f"status.rollout.{field}"):
        ro.RolloutState.from_status({**state.to_status(), **patch})


def test_analysis_due_lets_callers_skip_metric_queries() -> None:
    spec = make_spec()
    assert not ro.analysis_due(spec, None, T0)  # starting needs no metrics
    state, _, _ = ro.step(spec, None, None, T0)
    assert ro.analysis_due(spec, state, T0)  # Initializing: needs canary readiness
    state, _, _ = ro.step(spec, state, GOOD, T0 + timedelta(seconds=1))
    assert not ro.analysis_due(spec, state, T0 + timedelta(seconds=30))
    assert ro.analysis_due(spec, state, T0 + timedelta(seconds=61))


def test_mirror_only_while_a_shadow_rollout_is_unfinished() -> None:
    spec = make_spec(shadow=True)
    assert ro.mirror_active(spec, None)  # about to start
    state, _, _ = ro.step(spec, None, None, T0)
    state, _, _ = ro.step(spec, state, GOOD, T0 + timedelta(seconds=1))
    assert ro.mirror_active(spec, state.to_status())
    abort: tuple[ro.Command, ...] = ("abort",)
    failed, _, _ = ro.step(spec, state, None, T0 + timedelta(seconds=2), abort)
    assert not ro.mirror_active(spec, failed.to_status())
    assert not ro.mirror_active(make_spec(), state.to_status())  # not a shadow rollout
