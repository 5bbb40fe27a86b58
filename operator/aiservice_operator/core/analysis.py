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

Model quality comes from the decision log through the same observation (`Quality`, read
by both observers from the event store's quality query): agreement with the stable on
inputs both answered, Jensen-Shannon distance between their output distributions, and
accuracy on answers that received feedback. Too little data for a check holds the
rollout (`insufficient`), never advances it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    quality: Quality | None = None
    """The decision log's figures, when the rollout has quality checks."""

    @property
    def available(self) -> bool:
        return not self.unavailable


@dataclass(frozen=True)
class VersionQuality:
    """One model version's answers in the window, as the decision log counts them."""

    answers: int = 0
    outputs: Mapping[str, int] = field(default_factory=dict)
    """Answers per output bucket (a label, or a decile of a numeric output)."""
    labelled: int = 0
    """Answers to inputs that received feedback."""
    correct: int = 0
    """... of which the answer's label equals the feedback's."""

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclass(frozen=True)
class Quality:
    """The canary against the stable over one window, from the event store's quality query."""

    canary: VersionQuality = VersionQuality()
    stable: VersionQuality = VersionQuality()
    paired: int = 0
    """Inputs both versions answered."""
    agreed: int = 0

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.paired if self.paired else None

    @property
    def drift(self) -> float | None:
        """Jensen-Shannon distance (base 2: 0 same, 1 disjoint) between the two versions'
        output distributions; `None` unless both answered."""
        return js_distance(self.canary.outputs, self.stable.outputs)


def js_distance(p: Mapping[str, int], q: Mapping[str, int]) -> float | None:
    """Jensen-Shannon distance of two histograms over the same buckets, base 2: symmetric,
    bounded by 1 and defined where one side has a bucket the other lacks (where the
    population stability index is infinite)."""
    p_total, q_total = sum(p.values()), sum(q.values())
    if not p_total or not q_total:
        return None
    divergence = 0.0
    for bucket in set(p) | set(q):
        pi, qi = p.get(bucket, 0) / p_total, q.get(bucket, 0) / q_total
        mi = (pi + qi) / 2
        for x in (pi, qi):
            if x > 0:
                divergence += 0.5 * x * math.log2(x / mi)
    return math.sqrt(max(0.0, divergence))


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
    if analysis.quality:
        metrics.update(_quality_metrics(analysis, obs.quality))
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
    if analysis.quality and obs.quality is None:
        missing.append("decision log: no quality figures")
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
    outcomes = judge_quality(analysis, obs.quality) if obs.quality is not None else []
    failed += [text for kind, text in outcomes if kind == "fail"]
    short = [text for kind, text in outcomes if kind == "short"]
    passed = [text for kind, text in outcomes if kind == "pass"]
    if failed:
        return Verdict("fail", tuple(failed), metrics)
    if short:
        return Verdict("insufficient", tuple(short), metrics)
    summary = (
        f"{obs.events:.4g} events, error rate {error_rate:.4g}, p99 {obs.p99_latency_ms:.4g} ms, "
        f"dead-letter rate {dl_rate:.4g}{''.join(', ' + p for p in passed)}: within thresholds"
    )
    return Verdict("pass", (summary,), metrics)


def _quality_metrics(analysis: Analysis, q: Quality | None) -> dict[str, Any]:
    """The quality checks' values and limits, for the history, audit, console and CLI."""
    q = q or Quality()
    stable, canary = q.stable.accuracy, q.canary.accuracy
    drop = stable - canary if stable is not None and canary is not None else None
    return {
        "compare": analysis.compare,
        "paired": q.paired,
        "agreement": _round(q.agreement),
        "minAgreement": analysis.min_agreement,
        "outputDrift": _round(q.drift),
        "maxOutputDrift": analysis.max_output_drift,
        "canaryAnswers": q.canary.answers,
        "stableAnswers": q.stable.answers,
        "feedback": q.canary.labelled,
        "accuracy": _round(canary),
        "stableAccuracy": _round(stable),
        "accuracyDrop": _round(drop),
        "minAccuracy": analysis.min_accuracy,
        "maxAccuracyDrop": analysis.max_accuracy_drop,
        "minFeedback": analysis.min_feedback,
    }


Outcome = tuple[Literal["fail", "short", "pass"], str]
"""One quality check's outcome: failed, too little data (hold), or passed; and why."""


def judge_quality(analysis: Analysis, q: Quality) -> list[Outcome]:
    """Each configured quality check's outcome. Agreement needs `minEvents` inputs both
    versions answered, drift `minEvents` answers of each version, the accuracy checks
    `minFeedback` labelled answers (of each version, for the drop)."""
    a = analysis
    out: list[Outcome] = []
    if a.min_agreement is not None:
        if q.paired < a.min_events or q.agreement is None:
            out.append(("short", f"{q.paired} inputs answered by both versions < minEvents "
                        f"{a.min_events}"))  # fmt: skip
        elif q.agreement < a.min_agreement:
            out.append(("fail", f"agreement {q.agreement:.4g} < minAgreement {a.min_agreement:g}"))
        else:
            out.append(("pass", f"agreement {q.agreement:.4g}"))
    if a.max_output_drift is not None:
        fewest = min(q.canary.answers, q.stable.answers)
        if fewest < a.min_events or q.drift is None:
            out.append(("short", f"{fewest} answers of a version < minEvents {a.min_events}"))
        elif q.drift > a.max_output_drift:
            out.append(("fail", f"output drift {q.drift:.4g} > maxOutputDrift "
                        f"{a.max_output_drift:g}"))  # fmt: skip
        else:
            out.append(("pass", f"output drift {q.drift:.4g}"))
    if a.accuracy:
        out += _judge_accuracy(a, q)
    return out


def _judge_accuracy(a: Analysis, q: Quality) -> list[Outcome]:
    canary, stable = q.canary.accuracy, q.stable.accuracy
    if q.canary.labelled < a.min_feedback or canary is None:
        return [("short", f"{q.canary.labelled} canary answers with feedback < minFeedback "
                 f"{a.min_feedback}")]  # fmt: skip
    out: list[Outcome] = []
    if a.min_accuracy is not None:
        if canary < a.min_accuracy:
            out.append(("fail", f"accuracy {canary:.4g} < minAccuracy {a.min_accuracy:g}"))
        else:
            out.append(("pass", f"accuracy {canary:.4g}"))
    if a.max_accuracy_drop is not None:
        if q.stable.labelled < a.min_feedback or stable is None:
            out.append(("short", f"{q.stable.labelled} stable answers with feedback < "
                        f"minFeedback {a.min_feedback}"))  # fmt: skip
        elif stable - canary > a.max_accuracy_drop:
            out.append(("fail", f"accuracy drop {stable - canary:.4g} (stable {stable:.4g}) > "
                        f"maxAccuracyDrop {a.max_accuracy_drop:g}"))  # fmt: skip
        else:
            out.append(("pass", f"accuracy drop {stable - canary:.4g}"))
    return out


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
    quality: Quality | SourceUnavailable | None = None,
) -> Observation:
    """One observation, the same way for both executors. `dead_letters` is the count,
    the reason it could not be read, or `None` without an event store; the last two make
    the observation unavailable (dead letters cannot be judged without their count).
    `quality`: the decision log's figures when the rollout asked for them (`QualityQuery`),
    or the reason they could not be read (unavailable too)."""
    unavailable = list(traffic.unavailable)
    count: int | None = None
    if dead_letters is None:
        unavailable.append(NO_EVENT_STORE)
    elif isinstance(dead_letters, SourceUnavailable):
        unavailable.append(str(dead_letters))
    else:
        count = dead_letters
    figures: Quality | None = None
    if isinstance(quality, SourceUnavailable):
        unavailable.append(str(quality))
    else:
        figures = quality
    return Observation(
        events=traffic.events,
        errors=traffic.errors,
        p99_latency_ms=traffic.p99_latency_ms,
        dead_letters=count,
        window_seconds=window_seconds,
        canary_ready=canary_ready,
        unavailable=tuple(unavailable),
        source=traffic.source,
        quality=figures,
    )


@dataclass(frozen=True)
class QualityQuery:
    """What an observer asks the decision log for, when the rollout has quality checks."""

    stable: str
    """The stable model version the canary is compared with."""
    compare: str
    tolerance: float | None

    @classmethod
    def of(cls, analysis: Analysis, stable: str) -> QualityQuery | None:
        if not analysis.quality:
            return None
        return cls(stable, analysis.compare, analysis.tolerance)


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
        quality: QualityQuery | None = None,
    ) -> Observation: ...
