"""Rollout history from the audit log: decisions in time order and the canary weight chart.

Pure: takes stored audit records, returns values for the templates. The chart is drawn as
inline SVG coordinates computed here, so the page needs no script and no chart library.
Audit data is untrusted like any event: every field is checked for its type, and anything
odd is shown as text rather than trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiservice_functions import contract
from aiservice_functions.event_store.records import StoredEvent, to_us, us_text
from aiservice_functions.timestamps import parse_time

WIDTH: Final = 720
HEIGHT: Final = 180
PAD: Final = 32
BAD: Final = frozenset({"rollback", "abort", "check-failed"})
GOOD: Final = frozenset({"advance", "promote", "succeed", "start"})


@dataclass(frozen=True)
class Decision:
    seq: int
    at: str
    at_us: int
    action: str
    phase: str
    step: str
    weight: int | None
    reason: str
    metrics: list[tuple[str, str]]
    command: str
    canary: str
    stable: str

    @property
    def tone(self) -> str:
        """A CSS class for the action: bad, good or neutral."""
        return "bad" if self.action in BAD else "good" if self.action in GOOD else "neutral"


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    tone: str
    label: str


@dataclass(frozen=True)
class Chart:
    points: str
    """``x,y`` pairs of the weight as a step line (SVG ``polyline``)."""
    markers: list[Marker]
    width: int
    height: int
    start: str
    end: str
    y_ticks: list[tuple[float, int]]


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _text(value)


def _time_us(value: Any, fallback: int) -> int:
    if isinstance(value, str):
        try:
            return to_us(parse_time(value))
        except ValueError:
            return fallback
    return fallback


def decisions(records: Iterable[StoredEvent]) -> list[Decision]:
    """The rollout decisions among ``records``, oldest first."""
    out = []
    for record in records:
        if record.type != contract.ROLLOUT_DECISION_TYPE:
            continue
        data = record.document.get("data")
        if not isinstance(data, Mapping):
            continue
        at_us = _time_us(data.get("at"), record.received_at)
        weight = data.get("weight")
        metrics = data.get("metrics")
        out.append(
            Decision(
                seq=record.seq,
                at=us_text(at_us) or "",
                at_us=at_us,
                action=_text(data.get("action")),
                phase=_text(data.get("phase")),
                step=_text(data.get("step")),
                weight=weight if isinstance(weight, int) and not isinstance(weight, bool) else None,
                reason=_text(data.get("reason")),
                metrics=sorted((str(k), _metric(v)) for k, v in metrics.items())
                if isinstance(metrics, Mapping)
                else [],
                command=_text(data.get("command")),
                canary=_text(data.get("canary")),
                stable=_text(data.get("stable")),
            )
        )
    out.sort(key=lambda d: (d.at_us, d.seq))
    return out


QUALITY_CHECKS: Final = (
    # (shown as, value key, limit key, bound), keyed as in the decision's metrics
    ("Agreement with the stable", "agreement", "minAgreement", "min"),
    ("Output drift (Jensen-Shannon)", "outputDrift", "maxOutputDrift", "max"),
    ("Feedback accuracy", "accuracy", "minAccuracy", "min"),
    ("Accuracy drop against the stable", "accuracyDrop", "maxAccuracyDrop", "max"),
)


@dataclass(frozen=True)
class QualityRow:
    check: str
    value: str
    limit: str
    verdict: str
    """``ok``, ``failed``, or empty (not checked, or no data yet)."""


@dataclass(frozen=True)
class Quality:
    """The model-quality checks of the latest analysis that judged them."""

    at: str
    rows: list[QualityRow]
    note: str


def quality(items: list[Decision], raw: Iterable[StoredEvent]) -> Quality | None:
    """The newest decision's quality checks (``None`` when no analysis had any)."""
    by_seq = {r.seq: r for r in raw}
    for d in reversed(items):
        data = by_seq[d.seq].document.get("data") if d.seq in by_seq else None
        metrics = data.get("metrics") if isinstance(data, Mapping) else None
        if not isinstance(metrics, Mapping) or "agreement" not in metrics:
            continue
        rows = []
        for shown, value_key, limit_key, bound in QUALITY_CHECKS:
            value, limit = _number(metrics.get(value_key)), _number(metrics.get(limit_key))
            verdict = ""
            if value is not None and limit is not None:
                ok = value >= limit if bound == "min" else value <= limit
                verdict = "ok" if ok else "failed"
            rows.append(
                QualityRow(
                    shown,
                    "no data" if value is None else f"{value:.3f}",
                    "not checked" if limit is None else f"{bound} {limit:g}",
                    verdict,
                )
            )
        note = (f"{_metric(metrics.get('paired'))} inputs answered by both versions, "
                f"{_metric(metrics.get('feedback'))} canary answers with feedback; "
                f"compared: {_text(metrics.get('compare'))}")  # fmt: skip
        return Quality(d.at, rows, note)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def chart(items: list[Decision]) -> Chart | None:
    """The canary weight over time as SVG coordinates (``None`` without weights)."""
    weighted = [d for d in items if d.weight is not None]
    if not weighted:
        return None
    t0, t1 = weighted[0].at_us, weighted[-1].at_us
    span = max(t1 - t0, 1)
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(at: int) -> float:
        return round(PAD + (at - t0) / span * inner_w, 1)

    def y(weight: int) -> float:
        return round(PAD + (100 - max(0, min(weight, 100))) / 100 * inner_h, 1)

    coords: list[str] = []
    markers = []
    previous: float | None = None
    for d in weighted:
        assert d.weight is not None
        px, py = x(d.at_us), y(d.weight)
        if previous is not None:
            coords.append(f"{px},{previous}")  # a step: the weight held until this decision
        coords.append(f"{px},{py}")
        previous = py
        markers.append(Marker(px, py, d.tone, f"{d.at} {d.action}: weight {d.weight}%"))
    return Chart(
        points=" ".join(coords),
        markers=markers,
        width=WIDTH,
        height=HEIGHT,
        start=_short(weighted[0].at),
        end=_short(weighted[-1].at),
        y_ticks=[(y(w), w) for w in (0, 50, 100)],
    )


def _short(stamp: str) -> str:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp
