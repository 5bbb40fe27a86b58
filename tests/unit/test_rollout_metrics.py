"""The per-AIService rollout series: what a tick's state and decision set, and that a
deleted AIService leaves none behind."""

from __future__ import annotations

from aiservice_operator.core.rollout import RolloutState
from aiservice_operator.rollout_metrics import RolloutMetrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

ANALYSIS = {
    "errorRate": 0.25,
    "p99LatencyMs": 120.0,
    "deadLetterRate": None,  # no data for it this time
    "maxErrorRate": 0.1,
    "maxP99LatencyMs": 500,
    "maxDeadLetterRate": 0.05,
}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"namespace": "shop", "aiservice": "reviews", **labels}.items()))


def test_a_tick_sets_weight_phase_decision_and_analysis() -> None:
    registry = CollectorRegistry()
    metrics = RolloutMetrics(registry)
    state = RolloutState("Progressing", "v2", "v1", "h", step=1, weight=20, last_analysis=ANALYSIS)
    metrics.record("shop", "reviews", state, "advance")
    metrics.record("shop", "reviews", state, None)  # a tick without a decision counts none
    got = samples(registry)
    assert got[key("aisvc_rollout_canary_weight")] == 20
    assert got[key("aisvc_rollout_phase", phase="Progressing")] == 1
    assert got[key("aisvc_rollout_phase", phase="Succeeded")] == 0
    assert got[key("aisvc_rollout_decisions_total", action="advance")] == 1
    assert got[key("aisvc_rollout_decisions_total", action="rollback")] == 0  # there, at 0
    assert got[key("aisvc_rollout_analysis_value", check="error_rate")] == 0.25
    assert got[key("aisvc_rollout_analysis_value", check="p99_latency_seconds")] == 0.12
    assert key("aisvc_rollout_analysis_value", check="dead_letter_rate") not in got
    assert got[key("aisvc_rollout_analysis_limit", check="p99_latency_seconds")] == 0.5
    assert got[key("aisvc_rollout_analysis_limit", check="dead_letter_rate")] == 0.05


def test_forget_drops_every_series_of_the_aiservice() -> None:
    registry = CollectorRegistry()
    metrics = RolloutMetrics(registry)
    state = RolloutState("Failed", "v2", "v1", "h", last_analysis=ANALYSIS)
    metrics.record("shop", "reviews", state, "rollback")
    metrics.record("shop", "other", state, "rollback")
    metrics.forget("shop", "reviews")
    metrics.forget("shop", "never-seen")
    names = {labels for _, labels in samples(registry)}
    assert names and all(("aiservice", "other") in labels for labels in names)


def test_quality_checks_have_values_and_only_the_limits_the_rollout_sets() -> None:
    registry = CollectorRegistry()
    metrics = RolloutMetrics(registry)
    quality = {**ANALYSIS, "agreement": 0.42, "minAgreement": 0.85, "outputDrift": 0.56,
               "maxOutputDrift": None, "accuracy": None, "minAccuracy": 0.8}  # fmt: skip
    state = RolloutState("Failed", "v2", "v1", "h", last_analysis=quality)
    metrics.record("shop", "reviews", state, "rollback")
    got = samples(registry)
    assert got[key("aisvc_rollout_analysis_value", check="agreement")] == 0.42
    assert got[key("aisvc_rollout_analysis_limit", check="agreement")] == 0.85
    assert got[key("aisvc_rollout_analysis_value", check="output_drift")] == 0.56
    assert key("aisvc_rollout_analysis_limit", check="output_drift") not in got  # not checked
    assert key("aisvc_rollout_analysis_value", check="accuracy") not in got  # no feedback yet
    assert got[key("aisvc_rollout_analysis_limit", check="accuracy")] == 0.8
    # The next rollout drops the check: its limit goes with it.
    metrics.record(
        "shop", "reviews", RolloutState("Failed", "v2", "v1", "h2", last_analysis=ANALYSIS)
    )
    assert key("aisvc_rollout_analysis_limit", check="agreement") not in samples(registry)
