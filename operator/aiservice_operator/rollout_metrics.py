"""Per-AIService rollout metrics, exported the same by the operator and by `aisvc up`.

What the rollouts dashboard draws: the canary's share of real traffic, the rollout's
phase, every decision (so started / succeeded / rolled back per AIService is the
"deployment frequency" of models), and the last analysis' values next to their limits.
Both executors call `RolloutMetrics.record` with what `rollout_tick` returned, so the
series mean the same whether a cluster or a laptop rolls the canary.

Labels are bounded: one set per AIService (`namespace`, `aiservice`), times the fixed
phases, actions and checks of the state machine; `forget` drops a deleted AIService.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Final, get_args

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from aiservice_operator.core.rollout import PHASES, Action, RolloutState

ACTIONS: Final = get_args(Action)

CHECKS: Final = {
    # check label: (value key, limit key, scale to base units)
    "error_rate": ("errorRate", "maxErrorRate", 1.0),
    "p99_latency_seconds": ("p99LatencyMs", "maxP99LatencyMs", 0.001),
    "dead_letter_rate": ("deadLetterRate", "maxDeadLetterRate", 1.0),
    # Model quality, from the decision log (a limit only where the rollout sets the check).
    "agreement": ("agreement", "minAgreement", 1.0),
    "output_drift": ("outputDrift", "maxOutputDrift", 1.0),
    "accuracy": ("accuracy", "minAccuracy", 1.0),
    "accuracy_drop": ("accuracyDrop", "maxAccuracyDrop", 1.0),
}
"""The analysis checks, keyed as in `status.rollout.lastAnalysis`."""


class RolloutMetrics:
    """The rollout metric families in one registry (the process default, or a run's own)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        labels = ["namespace", "aiservice"]
        self.weight = Gauge(
            "aisvc_rollout_canary_weight",
            "The canary's percent of real (not mirrored) traffic, as the rollout set it.",
            labels,
            registry=registry,
        )
        self.phase = Gauge(
            "aisvc_rollout_phase",
            "1 for the rollout's current phase, 0 for the others.",
            [*labels, "phase"],
            registry=registry,
        )
        self.decisions = Counter(
            "aisvc_rollout_decisions",
            "Rollout decisions by action (start, advance, hold, check-failed, rollback, "
            "promote, succeed, pause, resume, abort, wait, ignore).",
            [*labels, "action"],
            registry=registry,
        )
        self.analysis = Gauge(
            "aisvc_rollout_analysis_value",
            "The canary's value in the last analysis, by check (error_rate, "
            "p99_latency_seconds, dead_letter_rate, and from the decision log agreement, "
            "output_drift, accuracy, accuracy_drop); absent while it had no data.",
            [*labels, "check"],
            registry=registry,
        )
        self.limit = Gauge(
            "aisvc_rollout_analysis_limit",
            "The threshold each check of the analysis is held to (spec.rollout.analysis); "
            "a quality check has one only where the rollout sets it.",
            [*labels, "check"],
            registry=registry,
        )
        self._lock = threading.Lock()
        self._known: set[tuple[str, str]] = set()

    def record(
        self, namespace: str, name: str, state: RolloutState, action: str | None = None
    ) -> None:
        """The rollout's state after a tick, and the decision it made (if any)."""
        with self._lock:
            if (namespace, name) not in self._known:
                # Every action at 0 first: a counter born at 1 shows no increase, and an
                # alert on increase() would miss the first rollback.
                for each in ACTIONS:
                    self.decisions.labels(namespace, name, each)
                self._known.add((namespace, name))
            self.weight.labels(namespace, name).set(state.weight)
            for phase in PHASES:
                self.phase.labels(namespace, name, phase).set(1 if phase == state.phase else 0)
            if action is not None:
                self.decisions.labels(namespace, name, action).inc()
            self._analysis(namespace, name, state.last_analysis)

    def _analysis(self, namespace: str, name: str, last: Any) -> None:
        for check, (value_key, limit_key, scale) in CHECKS.items():
            value, limit = last.get(value_key), last.get(limit_key)
            if isinstance(limit, int | float):
                self.limit.labels(namespace, name, check).set(limit * scale)
            else:
                _remove(self.limit, namespace, name, check)
            if isinstance(value, int | float):
                self.analysis.labels(namespace, name, check).set(value * scale)
            else:
                _remove(self.analysis, namespace, name, check)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted AIService."""
        with self._lock:
            if (namespace, name) not in self._known:
                return
            self._known.discard((namespace, name))
            _remove(self.weight, namespace, name)
            for phase in PHASES:
                _remove(self.phase, namespace, name, phase)
            for action in ACTIONS:
                _remove(self.decisions, namespace, name, action)
            for check in CHECKS:
                _remove(self.analysis, namespace, name, check)
                _remove(self.limit, namespace, name, check)


def _remove(family: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set
        family.remove(*labels)
