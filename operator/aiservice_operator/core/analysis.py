"""Canary analysis: what one observation of a canary is, and the verdict on it.

Both executors (the cluster's Prometheus/event-store observer and the local run's own
counters) produce an `Observation` through an `Observer`; `analyze` judges it against the
rollout's thresholds. A source that cannot answer raises `SourceUnavailable`, which the
observer turns into `Observation.unavailable` and the state machine into a pause.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from aiservice_operator.core.spec import Analysis


@dataclass(frozen=True)
class Observation:
    """What the metric sources saw for the canary revision over the last interval.

    A value of `None` means "no data for it"; `unavailable` lists the sources that could
    not be read at all (each with the reason), which pauses the rollout.
    """

    events: float = 0
    """Events the canary served in the window (Prometheus' `increase()` extrapolates, so
    not always a whole number)."""
    errors: float = 0
    p99_latency_ms: float | None = None
    dead_letters: int | None = 0
    window_seconds: float = 0.0
    canary_ready: bool = True
    """Whether the canary revision exists and is ready (traffic can only go to it then)."""
    unavailable: tuple[str, ...] = ()
    source: str = ""
    """Which series the numbers came from (e.g. `queue-proxy`, `function`)."""

    @property
    def available(self) -> bool:
        return not self.unavailable


@dataclass(frozen=True)
class Verdict:
    """The outcome of one analysis, with every value and threshold behind it."""

    result: Literal["pass", "fail", "insufficient", "unavailable"]
    reasons: tuple[str, ...]
    metrics: Mapping[str, Any]


def analyze(analysis: Analysis, obs: Observation) -> Verdict:
    """Judge one interval of canary metrics against the thresholds."""
    error_rate = obs.errors / obs.events if obs.events else None
    dl_rate = obs.dead_letters / obs.events if obs.events and obs.dead_letters is not None else None
    metrics: dict[str, Any] = {
        "events": _round(obs.events),
        "errors": _round(obs.errors),
        "errorRate": _round(error_rate),
        "p99LatencyMs": _round(obs.p99_latency_ms),
        "deadLetters": obs.dead_letters,
        "deadLetterRate": _round(dl_rate),
        "windowSeconds": _round(obs.window_seconds),
        "source": obs.source,
        "minEvents": analysis.min_events,
        "maxErrorRate": analysis.max_error_rate,
        "maxP99LatencyMs": analysis.max_p99_latency_ms,
        "maxDeadLetterRate": analysis.max_dead_letter_rate,
    }
    if obs.unavailable:
        return Verdict("unavailable", obs.unavailable, metrics)
    if obs.events < analysis.min_events:
        reason = f"{obs.events:.4g} canary events in the interval < minEvents {analysis.min_events}"
        return Verdict("insufficient", (reason,), metrics)
    missing = []
    if obs.p99_latency_ms is None:
        missing.append("p99 latency: no data")
    if obs.dead_letters is None:
        missing.append("dead letters: no data")
    if missing:
        return Verdict("unavailable", tuple(missing), metrics)
    assert error_rate is not None and dl_rate is not None and obs.p99_latency_ms is not None
    failed = []
    if error_rate > analysis.max_error_rate:
        failed.append(f"error rate {error_rate:.4g} > maxErrorRate {analysis.max_error_rate:g}")
    if obs.p99_latency_ms > analysis.max_p99_latency_ms:
        failed.append(
            f"p99 latency {obs.p99_latency_ms:.4g} ms > maxP99LatencyMs "
            f"{analysis.max_p99_latency_ms:g}"
        )
    if dl_rate > analysis.max_dead_letter_rate:
        failed.append(
            f"dead-letter rate {dl_rate:.4g} > maxDeadLetterRate {analysis.max_dead_letter_rate:g}"
        )
    if failed:
        return Verdict("fail", tuple(failed), metrics)
    summary = (
        f"{obs.events:.4g} events, error rate {error_rate:.4g}, p99 {obs.p99_latency_ms:.4g} ms, "
        f"dead-letter rate {dl_rate:.4g}: within thresholds"
    )
    return Verdict("pass", (summary,), metrics)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


class SourceUnavailable(Exception):
    """A metric source could not answer; the message says which and why."""


class Observer(Protocol):
    def observe(
        self,
        *,
        namespace: str,
        service: str,
        revision: str,
        model: str,
        window_seconds: float,
        now: datetime,
        canary_ready: bool,
    ) -> Observation: ...
