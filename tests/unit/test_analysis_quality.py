"""The model-quality checks of a canary analysis: agreement, output drift (Jensen-Shannon
distance), feedback accuracy and its drop, and when too little data holds the rollout."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from aiservice_operator.core.analysis import (
    Observation,
    Quality,
    QualityQuery,
    SourceUnavailable,
    Traffic,
    VersionQuality,
    analyze,
    js_distance,
    observation,
)
from aiservice_operator.core.spec import Analysis

TRAFFIC = Observation(events=100, errors=0, p99_latency_ms=50, dead_letters=0)
LIMITS = Analysis(
    max_error_rate=0.05,
    max_p99_latency_ms=5000,
    max_dead_letter_rate=0.05,
    min_events=20,
    min_agreement=0.85,
    max_output_drift=0.2,
    min_accuracy=0.8,
    max_accuracy_drop=0.05,
    min_feedback=10,
)
HALF = {"positive": 50, "negative": 50}


def quality(
    canary: dict[str, int] = HALF,
    stable: dict[str, int] = HALF,
    paired: int = 100,
    agreed: int = 95,
    feedback: tuple[int, int, int, int] = (20, 18, 20, 18),
) -> Quality:
    """`feedback`: canary (labelled, correct), stable (labelled, correct)."""
    cl, cc, sl, sc = feedback
    return Quality(
        canary=VersionQuality(sum(canary.values()), canary, cl, cc),
        stable=VersionQuality(sum(stable.values()), stable, sl, sc),
        paired=paired,
        agreed=agreed,
    )


def judge(q: Quality | None, analysis: Analysis = LIMITS) -> tuple[str, str, dict[str, object]]:
    verdict = analyze(analysis, replace(TRAFFIC, quality=q))
    return verdict.result, "; ".join(verdict.reasons), dict(verdict.metrics)


def test_js_distance_is_zero_for_equal_one_for_disjoint_and_symmetric() -> None:
    assert js_distance(HALF, {"positive": 5, "negative": 5}) == pytest.approx(0)
    assert js_distance({"a": 3}, {"b": 7}) == pytest.approx(1)
    p, q = {"positive": 100}, HALF
    assert js_distance(p, q) == pytest.approx(js_distance(q, p))
    # Always "positive" against a 50/50 stable, M = (3/4, 1/4):
    # KL(P||M) = log2(4/3), KL(Q||M) = 0.5 log2(2/3) + 0.5 log2(2); distance = sqrt(mean).
    expected = math.sqrt((math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5) / 2)
    assert js_distance(p, q) == pytest.approx(expected)
    assert js_distance({}, q) is None


def test_a_good_canary_passes_with_every_value_and_limit_in_the_metrics() -> None:
    result, reason, metrics = judge(quality())
    assert result == "pass", reason
    assert "agreement 0.95" in reason and "output drift 0" in reason
    assert metrics["agreement"] == 0.95 and metrics["minAgreement"] == 0.85
    assert metrics["outputDrift"] == 0 and metrics["maxOutputDrift"] == 0.2
    assert (metrics["accuracy"], metrics["stableAccuracy"], metrics["accuracyDrop"]) == (
        0.9, 0.9, 0.0)  # fmt: skip
    assert (metrics["feedback"], metrics["minFeedback"], metrics["paired"]) == (20, 10, 100)


def test_low_agreement_fails() -> None:
    result, reason, metrics = judge(quality(agreed=50))
    assert result == "fail" and "agreement 0.5 < minAgreement 0.85" in reason
    assert metrics["agreement"] == 0.5


def test_a_head_answering_one_label_fails_on_drift() -> None:
    result, reason, metrics = judge(quality(canary={"positive": 100}))
    assert result == "fail" and "output drift 0.5" in reason and "> maxOutputDrift 0.2" in reason
    assert metrics["outputDrift"] == pytest.approx(0.5579, abs=1e-4)


def test_accuracy_below_the_limit_fails_and_so_does_a_drop() -> None:
    result, reason, _ = judge(quality(feedback=(20, 12, 20, 19)))
    assert result == "fail"
    assert "accuracy 0.6 < minAccuracy 0.8" in reason
    assert "accuracy drop 0.35 (stable 0.95) > maxAccuracyDrop 0.05" in reason


def test_too_little_feedback_holds_the_rollout_and_never_passes() -> None:
    result, reason, _ = judge(quality(feedback=(9, 0, 20, 20)))
    assert result == "insufficient"
    assert "9 canary answers with feedback < minFeedback 10" in reason
    only_drop = replace(LIMITS, min_accuracy=None)
    assert judge(quality(feedback=(20, 20, 3, 3)), only_drop)[0] == "insufficient"


def test_too_few_pairs_or_answers_hold_the_rollout() -> None:
    result, reason, _ = judge(quality(paired=19, agreed=19))
    assert result == "insufficient" and "19 inputs answered by both versions" in reason
    few = {"positive": 5, "negative": 5}
    assert judge(quality(canary=few))[0] == "insufficient"


def test_a_failed_check_wins_over_too_little_data() -> None:
    result, reason, _ = judge(quality(agreed=10, feedback=(0, 0, 0, 0)))
    assert result == "fail" and "minFeedback" not in reason


def test_traffic_checks_alone_report_no_quality_figures() -> None:
    traffic_only = Analysis(max_error_rate=0.05, max_p99_latency_ms=5000, min_events=20)
    result, _, metrics = judge(None, traffic_only)
    assert result == "pass" and "agreement" not in metrics


def test_quality_that_cannot_be_read_pauses_the_rollout() -> None:
    down = SourceUnavailable("event store at http://127.0.0.1:1: refused")
    obs = observation(
        Traffic(100, 0, 50.0, "function"), 0, window_seconds=60, canary_ready=True, quality=down
    )
    assert obs.unavailable == (str(down),)
    verdict = analyze(LIMITS, obs)
    assert verdict.result == "unavailable" and verdict.metrics["agreement"] is None
    # Asked for, but not supplied by the observer: unavailable, never a pass.
    assert judge(None)[0] == "unavailable"


def test_the_query_is_asked_only_with_quality_checks() -> None:
    assert QualityQuery.of(Analysis(), "v1") is None
    numeric = replace(LIMITS, compare="$.score", tolerance=0.1)
    assert QualityQuery.of(numeric, "v1") == QualityQuery("v1", "$.score", 0.1)
