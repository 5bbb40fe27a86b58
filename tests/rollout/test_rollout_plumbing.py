"""The pure pieces around the state machine: audit CloudEvents, Kubernetes Event texts,
when the operator's timer runs, and the operator's metric settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from aiservice_operator.cluster.config import ENV_PROMETHEUS_QUERIES, Config, ConfigError
from aiservice_operator.core import analysis, audit
from aiservice_operator.core import rollout as ro
from aiservice_operator.core.rollout_tick import tick_needed, wants_tick
from aiservice_operator.core.spec import parse
from aiservice_operator.sources.canary import Queries

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def body(annotations: dict[str, str] | None = None, **rollout: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "svc", "namespace": "ns", "annotations": annotations or {}},
        "spec": {
            "consumes": [{"type": "com.example.a"}],
            "function": {"image": "img:1", "entrypoint": "aiservice_functions.sentiment"},
            "models": [
                {"name": "v1", "uri": "file:///m/v1.pt"},
                {"name": "v2", "uri": "file:///m/v2.pt"},
            ],
            "traffic": {"stable": "v1"},
            "rollout": {"canary": "v2", "steps": [50, 100], "interval": "30s", **rollout},
        },
    }


def started() -> tuple[ro.RolloutState, ro.Decision]:
    spec = parse(body()).spec
    state, _, _ = ro.step(spec, None, None, T0)
    obs = analysis.Observation(events=40, errors=4, p99_latency_ms=90.0, dead_letters=0)
    state, _, _ = ro.step(spec, state, obs, T0 + timedelta(seconds=1))
    state, _, decision = ro.step(spec, state, obs, T0 + timedelta(seconds=31))
    assert decision is not None and decision.action == "check-failed"
    return state, decision


def test_audit_event_is_a_cloudevent_with_the_numbers_and_a_stable_id() -> None:
    state, decision = started()
    event = audit.decision_event("ns", "svc", state, decision)
    assert event["specversion"] == "1.0" and event["type"] == "dev.aiservice.rollout.decision"
    assert event["source"] == "/apis/aiservice.dev/v1alpha1/namespaces/ns/aiservices/svc"
    assert event["time"] == decision.at and event["subject"] == "rollout/v2"
    assert event["data"]["metrics"]["errorRate"] == 0.1
    assert event["data"]["specHash"] == state.spec_hash and event["data"]["failures"] == 1
    assert audit.decision_event("ns", "svc", state, decision)["id"] == event["id"]
    other = audit.decision_event("ns", "svc2", state, decision)
    assert other["id"] != event["id"]


def test_kube_event_type_reason_and_message() -> None:
    _, decision = started()
    event = audit.kube_event(decision)
    assert (event.type, event.reason) == ("Warning", "RolloutCheckFailed")
    assert "error rate 0.1 > maxErrorRate 0.02" in event.message
    assert "events=40" in event.message and len(event.message) <= 1024
    assert set(audit.REASONS) == set(get_args(ro.Action))


def test_timer_runs_only_for_unfinished_rollouts_or_pending_commands() -> None:
    spec = parse(body()).spec
    assert wants_tick(body())  # not started yet
    assert not wants_tick({"spec": {}})
    state, _, _ = ro.step(spec, None, None, T0)
    abort: tuple[ro.Command, ...] = ("abort",)
    aborted, _, _ = ro.step(spec, state, None, T0, abort)
    done = {**body(), "status": {"rollout": aborted.to_status()}}
    assert not wants_tick(done)  # Failed for this very spec
    assert wants_tick({**done, "metadata": {"annotations": {"aiservice.dev/promote": "x"}}})
    changed = body(steps=[20, 100])
    assert wants_tick({**changed, "status": {"rollout": aborted.to_status()}})  # restarts


def test_ticks_between_analyses_are_skipped_cheaply() -> None:
    ais = parse(body())
    assert tick_needed(ais, None, T0)
    state, _, _ = ro.step(ais.spec, None, None, T0)
    obs = analysis.Observation(events=40, p99_latency_ms=1.0)
    state, _, _ = ro.step(ais.spec, state, obs, T0 + timedelta(seconds=1))
    assert not tick_needed(ais, state.to_status(), T0 + timedelta(seconds=10))
    assert tick_needed(ais, state.to_status(), T0 + timedelta(seconds=31))
    paused = parse(body(annotations={"aiservice.dev/pause": "x"}))
    assert tick_needed(paused, state.to_status(), T0 + timedelta(seconds=10))


def test_operator_metric_settings() -> None:
    observer = Config.from_env(
        {
            "AISVC_PROMETHEUS_URL": "http://prom:9090",
            ENV_PROMETHEUS_QUERIES: '{"errors": "sum(my_errors)"}',
            "AISVC_EVENT_STORE_TOKEN": "t",
            "AISVC_EVENT_STORE_URL": "http://store",
            "AISVC_ANALYSIS_MIN_WINDOW_SECONDS": "20",
        }
    ).observer()
    assert observer.prometheus.url == "http://prom:9090"
    assert observer.prometheus.queries.errors == "sum(my_errors)"
    assert observer.prometheus.queries.requests == Queries().requests
    assert observer.event_store is not None and observer.event_store.token == "t"
    assert observer.event_store.url == "http://store" and observer.min_window_seconds == 20
    with pytest.raises(ConfigError, match=f"{ENV_PROMETHEUS_QUERIES}: unknown metric queries"):
        Config.from_env({ENV_PROMETHEUS_QUERIES: '{"p99": "x"}'})
    with pytest.raises(ConfigError, match="is not JSON"):
        Config.from_env({ENV_PROMETHEUS_QUERIES: "{"})
    with pytest.raises(ConfigError, match="AISVC_ROLLOUT_TICK_SECONDS='0' must be positive"):
        Config.from_env({"AISVC_ROLLOUT_TICK_SECONDS": "0"})
    assert Config.from_env({}).rollout_tick_seconds == 2.0
