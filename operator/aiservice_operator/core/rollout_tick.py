"""One tick of an active rollout: read the commands and metrics, step the state machine,
send the audit event, and hand the operator what to write back.

The operator's timer calls `rollout_tick` and then, with the result: patches
`status.rollout`, re-applies the compiled objects with `result.weights` through its normal
reconcile path, posts `result.kube_event`, and removes `result.clear_annotations`.
Keeping those writes in the operator keeps this function free of Kubernetes and Kopf; the
metric and audit I/O comes in through `observer` and `audit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiservice_operator.core import audit as audit_events
from aiservice_operator.core.analysis import Observer, QualityQuery, SourceUnavailable
from aiservice_operator.core.compile import intended_weights, revision_name
from aiservice_operator.core.rollout import (
    COMMANDS,
    TERMINAL,
    Command,
    Decision,
    RolloutState,
    analysis_due,
    annotation,
    spec_hash,
    step,
)
from aiservice_operator.core.spec import AIService, SpecError, parse_spec

log = logging.getLogger(__name__)

DEFAULT_TICK_SECONDS = 2.0
"""How often the operator looks at each active rollout; analysis itself runs once per the
rollout's `interval`, so this only bounds how late a step or a command is acted on."""


def wants_tick(body: Mapping[str, Any]) -> bool:
    """Whether the operator's rollout timer should run for this AIService: it has a
    rollout that is not finished for its current spec, or a command is waiting (acted on,
    or without a rollout removed: `ignored_commands`)."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if pending_commands(annotations):
        return True
    spec = body.get("spec") or {}
    if not spec.get("rollout"):
        return False
    state = (body.get("status") or {}).get("rollout") or {}
    if state.get("phase") not in TERMINAL:
        return True
    try:
        return bool(state.get("specHash") != spec_hash(parse_spec(spec)))
    except SpecError:
        return False  # the reconcile handler reports it


AuditSink = Callable[[str, str, Mapping[str, Any]], None]
"""(namespace, name, CloudEvent) -> None; raises `SourceUnavailable` when it cannot send."""


@dataclass(frozen=True)
class TickResult:
    state: RolloutState
    weights: dict[str, int]
    """Percent per model to compile with (`compile_aiservice(weights=...)`)."""
    decision: Decision | None
    status: dict[str, Any] | None
    """The new `status.rollout`, or `None` when nothing changed (no patch needed)."""
    clear_annotations: tuple[str, ...]
    """Command annotations this tick consumed: remove them from the AIService."""
    kube_event: audit_events.KubeEvent | None
    audit_error: str | None = None


def tick_needed(ais: AIService, status_rollout: Any, now: datetime) -> bool:
    """Whether a tick has anything to do now (cheap: no I/O), so the timer can skip the
    API reads and metric queries between analyses."""
    if pending_commands(ais.annotations):
        return True
    state = previous_state(status_rollout)
    if state is None or state.spec_hash != spec_hash(ais.spec):
        return True  # a new rollout, or a restart after a spec change
    if state.phase in ("Promoting", "RollingBack"):
        return True
    return analysis_due(ais.spec, state, now)


def ignored_commands(ais: AIService) -> tuple[tuple[str, ...], audit_events.KubeEvent | None]:
    """Command annotations on an AIService without `spec.rollout`, to remove, and the Event
    saying so. Kept, a stale one would act on a rollout added later (a `promote` skipping
    every analysis)."""
    if ais.spec.rollout is not None:
        return (), None
    keys = tuple(annotation(c) for c in pending_commands(ais.annotations))
    if not keys:
        return (), None
    message = f"{', '.join(keys)} ignored and removed: spec.rollout is not set"
    return keys, audit_events.KubeEvent("Warning", "RolloutCommandIgnored", message)


def pending_commands(annotations: Mapping[str, str]) -> tuple[Command, ...]:
    """The command annotations present on the AIService (any value counts)."""
    return tuple(c for c in COMMANDS if annotation(c) in annotations)


def previous_state(status_rollout: Any) -> RolloutState | None:
    """The state kept in status, whatever spec it was for (`step` decides about restarts);
    an unreadable one is dropped and the rollout restarts."""
    if not status_rollout:
        return None
    try:
        return RolloutState.from_status(status_rollout)
    except ValueError as err:
        log.warning("status.rollout unreadable, restarting the rollout: %s", err)
        return None


def rollout_tick(
    ais: AIService,
    status_rollout: Any,
    *,
    observer: Observer,
    now: datetime,
    canary_ready: bool,
    audit: AuditSink | None = None,
) -> TickResult:
    """Run one tick for `ais` (which must have `spec.rollout`)."""
    spec = ais.spec
    if spec.rollout is None:
        raise ValueError(f"{ais.namespace}/{ais.name} has no spec.rollout")
    canary = spec.rollout.canary
    before = previous_state(status_rollout)
    commands = pending_commands(ais.annotations)
    observation = None
    if analysis_due(spec, before, now):
        observation = observer.observe(
            namespace=ais.namespace,
            service=ais.name,
            revision=revision_name(ais, canary),
            model=canary,
            window_seconds=spec.rollout.interval_seconds,
            now=now,
            canary_ready=canary_ready,
            quality=QualityQuery.of(spec.rollout.analysis, spec.traffic.stable),
        )
    state, weight, decision = step(spec, before, observation, now, commands)
    audit_error = None
    if decision is not None and audit is not None:
        try:
            audit(
                ais.namespace,
                ais.name,
                audit_events.decision_event(ais.namespace, ais.name, state, decision),
            )
        except SourceUnavailable as err:
            audit_error = str(err)
            log.warning("audit event for %s/%s not stored: %s", ais.namespace, ais.name, err)
    consumed = decision is not None and decision.command is not None
    return TickResult(
        state=state,
        weights=intended_weights(ais, weight),
        decision=decision,
        status=state.to_status() if state != before else None,
        clear_annotations=tuple(annotation(c) for c in commands) if consumed else (),
        kube_event=audit_events.kube_event(decision) if decision else None,
        audit_error=audit_error,
    )
