"""Canary analysis: what one observation of a canary is, and the verdict on it.

Both executors (the cluster's Prometheus/event-store observer and the local run's own
counters) produce an `Observation` through an `Observer`, and both build it with
`observation`, so one policy decides when data is missing: a source that cannot answer
raises `SourceUnavailable`; a dead-letter count that cannot be read, or no event store at
all, is `unavailable` too; the state machine turns every `unavailable` into a pause, so a
rollout never promotes on missing data. Both compute p99 the same way, as Prometheus'
`histogram_quantile(0.99, ...)` over the latency buckets (`p99_from_buckets` is that
computation, for counters read directly). `analyze` judges an observation against the
rollout's thresholds.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


NO_EVENT_STORE = "no event store configured for dead-letter counts"


@dataclass(frozen=True)
class Traffic:
    """What the canary served in the window, from whichever series had it."""

    events: float = 0
    errors: float = 0
    p99_latency_ms: float | None = None
    source: str = "none"
    unavailable: tuple[str, ...] = ()
    """Reasons part of the traffic numbers could not be read (each pauses the rollout)."""


def observation(
    traffic: Traffic,
    dead_letters: int | SourceUnavailable | None,
    *,
    window_seconds: float,
    canary_ready: bool,
) -> Observation:
    """One observation, the same way for both executors. `dead_letters` is the count,
    the reason it could not be read, or `None` without an event store; the last two make
    the observation unavailable (dead letters cannot be judged without their count)."""
    unavailable = list(traffic.unavailable)
    count: int | None = None
    if dead_letters is None:
        unavailable.append(NO_EVENT_STORE)
    elif isinstance(dead_letters, SourceUnavailable):
        unavailable.append(str(dead_letters))
    else:
        count = dead_letters
    return Observation(
        events=traffic.events,
        errors=traffic.errors,
        p99_latency_ms=traffic.p99_latency_ms,
        dead_letters=count,
        window_seconds=window_seconds,
        canary_ready=canary_ready,
        unavailable=tuple(unavailable),
        source=traffic.source,
    )


def p99_from_buckets(buckets: Sequence[tuple[float, float]]) -> float | None:
    """The 99th percentile of cumulative histogram buckets `(upper bound, count)`, ascending,
    exactly as Prometheus' `histogram_quantile(0.99, ...)` computes it: linear within the
    bucket the rank falls in, the lowest bucket starting at 0, and the highest finite bound
    when the rank falls in `+Inf`. `None` without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = 0.99 * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower if below or lower else None  # no finite bucket: no figure
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return None


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
