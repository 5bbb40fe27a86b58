"""The console's pure parts: rollout history and chart, a dead letter's delivery history."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiservice_functions import contract
from aiservice_functions.event_store.console import present, rollouts
from aiservice_functions.event_store.records import StoredEvent, to_us
from aiservice_functions.timestamps import parse_time


def record(seq: int, type_: str, data: Any, **fields: Any) -> StoredEvent:
    base = StoredEvent(
        seq=seq, kind="audit", namespace="shop", name="sentiment", source="/s",
        event_id=f"e{seq}", type=type_, document={"data": data}, error_dest=None,
        error_code=None, error_data=None, revision=None, received_at=1_000_000 * seq,
        last_received_at=1_000_000 * seq, receipts=1, replay_count=0, replayed_at=None,
        last_replay_status=None, last_replay_error=None,
    )  # fmt: skip
    return replace(base, **fields)


def decision(seq: int, at: str, action: str, weight: Any, **extra: Any) -> StoredEvent:
    data = {"at": at, "action": action, "phase": "Progressing", "step": 1, "weight": weight,
            "reason": "r", "metrics": {"successRate": 0.99812, "p95": 40}}  # fmt: skip
    data.update(extra)
    return record(seq, contract.ROLLOUT_DECISION_TYPE, data)


def test_decisions_are_the_rollout_events_in_time_order_with_odd_fields_as_text() -> None:
    items = rollouts.decisions([
        decision(3, "2026-01-01T00:10:00Z", "rollback", 0),
        record(4, "com.example.reply", {"label": "negative"}),
        decision(1, "2026-01-01T00:00:00Z", "start", 5),
        decision(2, "not a time", "advance", "25"),  # a forged or broken record
        record(5, contract.ROLLOUT_DECISION_TYPE, "not an object"),
    ])  # fmt: skip
    assert [d.seq for d in items] == [2, 1, 3]  # a bad time falls back to when it arrived
    broken = items[0]
    assert broken.weight is None and broken.action == "advance"
    assert items[1].metrics == [("p95", "40"), ("successRate", "0.9981")]
    assert items[2].tone == "bad" and items[1].tone == "good"


def test_the_chart_is_a_step_line_through_every_weighted_decision() -> None:
    items = rollouts.decisions([
        decision(1, "2026-01-01T00:00:00Z", "start", 0),
        decision(2, "2026-01-01T00:05:00Z", "advance", 50),
        decision(3, "2026-01-01T00:10:00Z", "advance", 100),
    ])  # fmt: skip
    chart = rollouts.chart(items)
    assert chart is not None
    left, right = rollouts.PAD, rollouts.WIDTH - rollouts.PAD
    top, bottom = rollouts.PAD, rollouts.HEIGHT - rollouts.PAD
    middle_x, middle_y = (left + right) / 2, (top + bottom) / 2
    assert chart.points.split() == [
        f"{left:.1f},{bottom:.1f}",
        f"{middle_x:.1f},{bottom:.1f}", f"{middle_x:.1f},{middle_y:.1f}",
        f"{right:.1f},{middle_y:.1f}", f"{right:.1f},{top:.1f}",
    ]  # fmt: skip
    assert [m.tone for m in chart.markers] == ["good", "good", "good"]
    assert rollouts.chart(rollouts.decisions([decision(1, "x", "hold", None)])) is None


def test_history_tells_a_replay_that_failed_again() -> None:
    dead = record(
        7, "t", {"text": "hi"}, kind="dead-letter", error_dest="http://svc", error_code=500,
        receipts=2, replay_count=1, last_replay_status=202,
        received_at=to_us(parse_time("2026-01-01T00:00:00Z")),
    )  # fmt: skip
    steps = present.history(dead)
    assert [s.what for s in steps] == [
        "dead-lettered", "delivered again", "replayed (1x)", "failed again after the replay"
    ]  # fmt: skip
    assert steps[0].detail == "http://svc answered HTTP 500"
    assert present.state(dead) == "pending"


def test_data_is_decoded_for_reading_and_long_bodies_are_cut() -> None:
    binary = record(1, "t", None, document={"data_base64": "eyJhIjogMX0="})
    assert present.data(binary) == '{\n  "a": 1\n}'
    huge = record(2, "t", "x" * (present.MAX_SHOWN + 10))
    assert present.data(huge).endswith("(10 more characters)")


def test_the_quality_card_shows_the_latest_analysis_checks_beside_their_limits() -> None:
    quality = {"agreement": 0.417, "minAgreement": 0.85, "outputDrift": 0.05,
               "maxOutputDrift": 0.2, "accuracy": None, "minAccuracy": 0.8,
               "accuracyDrop": "forged", "maxAccuracyDrop": None, "paired": 48,
               "feedback": 3, "compare": "$.label"}  # fmt: skip
    raw = [
        decision(1, "2026-01-01T00:00:00Z", "hold", 0, metrics={**quality, "agreement": 0.9}),
        decision(2, "2026-01-01T00:05:00Z", "rollback", 0, metrics=quality),
        decision(3, "2026-01-01T00:06:00Z", "succeed", 0),  # no analysis behind it
    ]
    card = rollouts.quality(rollouts.decisions(raw), raw)
    assert card is not None and card.at.startswith("2026-01-01T00:05")
    rows = {r.check.split()[0]: (r.value, r.limit, r.verdict) for r in card.rows}
    assert rows["Agreement"] == ("0.417", "min 0.85", "failed")
    assert rows["Output"] == ("0.050", "max 0.2", "ok")
    assert rows["Feedback"] == ("no data", "min 0.8", "")
    assert rows["Accuracy"] == ("no data", "not checked", "")  # a forged value is no number
    assert "48 inputs answered by both versions, 3 canary answers" in card.note
    assert rollouts.quality(rollouts.decisions(raw[2:]), raw[2:]) is None
