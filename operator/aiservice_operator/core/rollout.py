"""The canary rollout state machine: metrics in, traffic weight and an explained decision out.

`step(spec, state, observation, now)` is called on every operator tick. It moves a rollout
through Flagger's phases::

    Initializing -> Progressing -> Promoting -> Succeeded
                        |  ^            (analysis passes at every step)
                        v  |
                       Paused           (by a user, or while a metric source is unreachable)
                        |
                        v
                   RollingBack -> Failed  (failure limit reached; `rollback: stepped` only)
                   Failed                 (`rollback: instant`, or `aisvc abort`)

Rules it keeps:

- Analysis runs once per `interval`, over the metrics of that interval, and only a full
  interval after each weight change, so every verdict is about the current weight.
- Too little data (fewer than `minEvents` canary events in the interval) never advances
  and never counts as a failure: the rollout holds.
- A metric source that cannot be read pauses the rollout with the reason; it resumes by
  itself once the source answers. It never promotes blind.
- Failed analyses count up over the whole rollout (Flagger's `failedChecks`); at
  `failureLimit` the canary is rolled back, at once or one step per interval.
- A change of anything that makes the stable or canary revision, or of the rollout
  settings, restarts the rollout from the first step (`specHash`).
- Shadow rollouts send the canary a mirror of every event; its share of real traffic stays
  0 through every step (each step is still an analysis gate) and jumps to 100 at promotion.
- Promotion is recorded in status, never written to the spec: a `Succeeded` rollout keeps
  100% on the canary for as long as the spec still names it (GitOps tools are not fought
  over `spec`). Setting `spec.traffic.stable` to the canary and removing `spec.rollout`
  makes it permanent without moving traffic.

The state (`rollout_state`, re-exported here) is a frozen value that round-trips through
`status.rollout` (JSON, RFC 3339 timestamps), so a restarted operator resumes exactly
where it was.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiservice_functions.timestamps import parse_time, rfc3339

from aiservice_operator.core.analysis import Observation, analyze
from aiservice_operator.core.rollout_state import (
    ANNOTATION_PREFIX,
    COMMANDS,
    HISTORY_LIMIT,
    PHASES,
    TERMINAL,
    Action,
    Command,
    Decision,
    PausedBy,
    Phase,
    RolloutState,
    annotation,
)
from aiservice_operator.core.spec import AIServiceSpec, Rollout

__all__ = [
    "ANNOTATION_PREFIX",
    "COMMANDS",
    "HISTORY_LIMIT",
    "PHASES",
    "TERMINAL",
    "Action",
    "Command",
    "Decision",
    "PausedBy",
    "Phase",
    "RolloutState",
    "analysis_due",
    "annotation",
    "canary_weight",
    "current_state",
    "mirror_active",
    "spec_hash",
    "step",
]

# --- Spec identity -------------------------------------------------------------------


def spec_hash(spec: AIServiceSpec) -> str:
    """Hash of everything a rollout depends on: the two models, what builds their revisions
    (function, autoscaling) and the rollout settings. Any change restarts the rollout."""
    rollout = _rollout(spec)
    relevant = {
        "rollout": asdict(rollout),
        "stable": asdict(spec.model(spec.traffic.stable)),
        "canary": asdict(spec.model(rollout.canary)),
        "function": asdict(spec.function),
        "autoscaling": asdict(spec.autoscaling),
    }
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rollout(spec: AIServiceSpec) -> Rollout:
    if spec.rollout is None:
        raise ValueError("spec.rollout is not set: there is no rollout to step")
    return spec.rollout


def current_state(spec: AIServiceSpec, status_rollout: Any) -> RolloutState | None:
    """The rollout state in `status.rollout` if it belongs to this spec, else `None`."""
    if spec.rollout is None or not status_rollout:
        return None
    try:
        state = RolloutState.from_status(status_rollout)
    except ValueError:
        return None
    return state if state.spec_hash == spec_hash(spec) else None


def canary_weight(spec: AIServiceSpec, status_rollout: Any) -> int | None:
    """The canary weight to compile with (`compile.intended_weights(ais, w)`): the weight of
    the rollout in status while it belongs to this spec, 0 for a rollout not started yet,
    `None` when the spec has no rollout. Every reconcile must use it, so that an update of
    the AIService never moves traffic behind the rollout's back."""
    if spec.rollout is None:
        return None
    state = current_state(spec, status_rollout)
    return 0 if state is None else state.weight


def mirror_active(spec: AIServiceSpec, status_rollout: Any) -> bool:
    """Whether a shadow rollout should still mirror events to the canary: from its start
    until it finishes. A Failed canary must stop receiving copies; a Succeeded one gets the
    real events. (The compiler needs this to drop the shadow Trigger after a rollback.)"""
    if spec.rollout is None or not spec.rollout.shadow:
        return False
    state = current_state(spec, status_rollout)
    return state is None or not state.terminal


# --- The machine ---------------------------------------------------------------------


def analysis_due(spec: AIServiceSpec, state: RolloutState | None, now: datetime) -> bool:
    """Whether this tick needs an observation (callers may skip querying metrics if not).
    A tick that starts (or restarts) a rollout does not: it only records the start."""
    if state is None or state.spec_hash != spec_hash(spec):
        return False
    if state.phase == "Initializing":
        return True
    if state.phase == "Paused":
        return state.paused_by == "analysis"
    if state.phase == "Progressing":
        return now >= _next_analysis(_rollout(spec), state)
    return False


def _next_analysis(rollout: Rollout, state: RolloutState) -> datetime:
    marks = [parse_time(t) for t in (state.last_step_at, state.last_analysis_at) if t]
    base = max(marks) if marks else datetime.min.replace(tzinfo=UTC)
    return base + timedelta(seconds=rollout.interval_seconds)


def step(
    spec: AIServiceSpec,
    state: RolloutState | None,
    observation: Observation | None,
    now: datetime,
    commands: Collection[Command] = (),
) -> tuple[RolloutState, int, Decision | None]:
    """Advance the rollout by one tick: `(new state, canary weight, decision or None)`.

    `observation` may be `None` when `analysis_due` said no metrics are needed. `commands`
    are the pending user commands; a decision with `command` set consumed them all (the
    highest-priority one acted, the rest were superseded), so the caller clears them.
    """
    rollout = _rollout(spec)
    at = rfc3339(now)
    digest = spec_hash(spec)
    if state is None or state.spec_hash != digest:
        return _start(spec, rollout, state, digest, at)
    pending = [c for c in COMMANDS if c in commands]
    if pending:
        return _command(rollout, state, pending[0], at)
    obs = observation
    if state.phase == "Initializing":
        if obs is None or not obs.canary_ready:
            return _decide(
                state,
                at=at,
                action="wait",
                phase=state.phase,
                step=state.step,
                weight=state.weight,
                reason=f"waiting for the {state.canary} revision to become ready",
            )
        return _advance_to(rollout, state, 1, at, "advance", "canary revision ready", {})
    if state.phase == "Paused":
        if state.paused_by == "analysis" and obs is not None and obs.available:
            return _decide(
                replace(state, paused_by=""),
                at=at,
                action="resume",
                phase="Progressing",
                step=state.step,
                weight=state.weight,
                reason="metric sources answer again",
            )
        return state, state.weight, None
    if state.phase == "Progressing":
        if obs is None or now < _next_analysis(rollout, state):
            return state, state.weight, None
        return _analyze(rollout, state, obs, at)
    if state.phase == "RollingBack":
        if now < _next_analysis(rollout, state):
            return state, state.weight, None
        lower = _lower_weight(rollout, state.weight)
        phase: Phase = "RollingBack" if lower > 0 else "Failed"
        nxt = replace(state, last_step_at=at, step=max(state.step - 1, 0))
        return _decide(
            nxt,
            at=at,
            action="rollback",
            phase=phase,
            step=nxt.step,
            weight=lower,
            reason=f"stepped rollback: canary weight {state.weight}% -> {lower}%"
            + ("" if lower else f"; all traffic on {state.stable}"),
        )
    if state.phase == "Promoting":
        return _decide(
            state,
            at=at,
            action="succeed",
            phase="Succeeded",
            step=state.step,
            weight=100,
            reason=f"{state.canary} serves all traffic; make it permanent by setting "
            f"spec.traffic.stable: {state.canary} and removing spec.rollout",
        )
    return state, state.weight, None  # Succeeded, Failed: sticky until the spec changes


def _start(
    spec: AIServiceSpec, rollout: Rollout, old: RolloutState | None, digest: str, at: str
) -> tuple[RolloutState, int, Decision | None]:
    fresh = RolloutState(
        phase="Initializing",
        canary=rollout.canary,
        stable=spec.traffic.stable,
        spec_hash=digest,
        shadow=rollout.shadow,
        started_at=at,
        history=old.history if old else (),
    )
    if old is None:
        reason = f"rollout of {rollout.canary} over {spec.traffic.stable} started"
    else:
        reason = (
            f"spec changed during a {old.phase} rollout (hash {old.spec_hash} -> {digest}): "
            f"restarting {rollout.canary} from the first step"
        )
    mode = "shadow: mirrored events only until promotion" if rollout.shadow else "real traffic"
    steps = ", ".join(f"{s}%" for s in rollout.steps)
    return _decide(
        fresh,
        at=at,
        action="start",
        phase="Initializing",
        step=0,
        weight=0,
        reason=f"{reason}; steps {steps} every {rollout.interval_seconds:g}s ({mode})",
    )


def _command(
    rollout: Rollout, state: RolloutState, command: Command, at: str
) -> tuple[RolloutState, int, Decision | None]:
    def ignore(why: str) -> tuple[RolloutState, int, Decision | None]:
        return _decide(
            state,
            at=at,
            action="ignore",
            phase=state.phase,
            step=state.step,
            weight=state.weight,
            reason=f"{command} ignored: {why}",
            command=command,
        )

    if state.terminal:
        return ignore(f"the rollout already {state.phase}")
    if command == "abort":
        return _decide(
            replace(state, paused_by=""),
            at=at,
            action="abort",
            phase="Failed",
            step=state.step,
            weight=0,
            reason="aborted by a user: all traffic back to stable",
            command=command,
        )
    if command == "promote":
        return _decide(
            replace(state, paused_by=""),
            at=at,
            action="promote",
            phase="Promoting",
            step=state.step,
            weight=100,
            reason="promoted by a user: remaining analysis skipped",
            command=command,
        )
    if command == "pause":
        if state.phase in ("RollingBack", "Promoting"):
            return ignore(f"a {state.phase} rollout cannot be paused")
        if state.paused_by == "user":
            return ignore("already paused")
        return _decide(
            replace(state, paused_by="user"),
            at=at,
            action="pause",
            phase="Paused",
            step=state.step,
            weight=state.weight,
            reason="paused by a user: weights held, no analysis",
            command=command,
        )
    if state.phase != "Paused":
        return ignore("the rollout is not paused")
    phase: Phase = "Progressing" if state.step > 0 else "Initializing"
    # Analysis starts over: the next verdict covers a full interval after the resume.
    resumed = replace(state, paused_by="", last_analysis_at=at)
    return _decide(
        resumed,
        at=at,
        action="resume",
        phase=phase,
        step=state.step,
        weight=state.weight,
        reason="resumed by a user",
        command=command,
    )


def _analyze(
    rollout: Rollout, state: RolloutState, obs: Observation, at: str
) -> tuple[RolloutState, int, Decision | None]:
    verdict = analyze(rollout.analysis, obs)
    analysed = replace(
        state,
        last_analysis_at=at,
        last_analysis={**verdict.metrics, "at": at, "result": verdict.result},
    )
    reason = "; ".join(verdict.reasons)
    if verdict.result == "unavailable":
        return _decide(
            replace(analysed, paused_by="analysis"),
            at=at,
            action="pause",
            phase="Paused",
            step=state.step,
            weight=state.weight,
            reason=f"metrics unavailable: {reason}",
            metrics=verdict.metrics,
        )
    if verdict.result == "insufficient":
        return _decide(
            analysed,
            at=at,
            action="hold",
            phase="Progressing",
            step=state.step,
            weight=state.weight,
            reason=f"not enough data: {reason}",
            metrics=verdict.metrics,
        )
    if verdict.result == "fail":
        return _failed_check(rollout, state, analysed, reason, verdict.metrics, at)
    if state.step >= len(rollout.steps):
        return _decide(
            analysed,
            at=at,
            action="promote",
            phase="Promoting",
            step=state.step,
            weight=100,
            reason=f"all {len(rollout.steps)} steps passed; {reason}",
            metrics=verdict.metrics,
        )
    return _advance_to(rollout, analysed, state.step + 1, at, "advance", reason, verdict.metrics)


def _failed_check(
    rollout: Rollout,
    state: RolloutState,
    analysed: RolloutState,
    reason: str,
    metrics: Mapping[str, Any],
    at: str,
) -> tuple[RolloutState, int, Decision | None]:
    """A failed analysis: hold until `failureLimit`, then roll back (stepped or at once)."""
    failures = state.failures + 1
    limit = rollout.analysis.failure_limit
    failed = replace(analysed, failures=failures)
    if failures < limit:
        return _decide(
            failed,
            at=at,
            action="check-failed",
            phase="Progressing",
            step=state.step,
            weight=state.weight,
            reason=f"{reason} ({failures}/{limit} failed checks)",
            metrics=metrics,
        )
    if rollout.rollback == "stepped":
        lower = _lower_weight(rollout, state.weight)
        if lower > 0:
            return _decide(
                replace(failed, last_step_at=at, step=state.step - 1),
                at=at,
                action="rollback",
                phase="RollingBack",
                step=state.step - 1,
                weight=lower,
                reason=f"{reason} ({failures}/{limit} failed checks): stepped rollback, "
                f"canary weight {state.weight}% -> {lower}%",
                metrics=metrics,
            )
    return _decide(
        failed,
        at=at,
        action="rollback",
        phase="Failed",
        step=state.step,
        weight=0,
        reason=f"{reason} ({failures}/{limit} failed checks): rolled back to {state.stable}",
        metrics=metrics,
    )


def _advance_to(
    rollout: Rollout,
    state: RolloutState,
    step_no: int,
    at: str,
    action: Action,
    why: str,
    metrics: Mapping[str, Any],
) -> tuple[RolloutState, int, Decision | None]:
    percent = rollout.steps[step_no - 1]
    weight = 0 if rollout.shadow else percent
    target = f"step {step_no}/{len(rollout.steps)}: "
    target += (
        f"shadow gate {percent}% (mirrored events, 0% real traffic)"
        if rollout.shadow
        else f"canary weight {weight}%"
    )
    moved = replace(state, last_step_at=at)
    return _decide(
        moved,
        at=at,
        action=action,
        phase="Progressing",
        step=step_no,
        weight=weight,
        reason=f"{why}; {target}",
        metrics=metrics,
    )


def _lower_weight(rollout: Rollout, weight: int) -> int:
    lower = [s for s in rollout.steps if s < weight]
    return lower[-1] if lower else 0


def _decide(
    state: RolloutState,
    *,
    at: str,
    action: Action,
    phase: Phase,
    step: int,
    weight: int,
    reason: str,
    metrics: Mapping[str, Any] | None = None,
    command: Command | None = None,
) -> tuple[RolloutState, int, Decision | None]:
    """Apply a decision to the state and record it (identical repeats are folded).
    Keyword-only: a call names the phase, step and weight it moves to."""
    decision = Decision(
        at=at,
        action=action,
        phase=phase,
        step=step,
        weight=weight,
        reason=reason,
        metrics=dict(metrics or {}),
        command=command,
    )
    history = list(state.history)
    last = history[-1] if history else None
    same_reason = action in ("hold", "wait") or (last is not None and last.reason == reason)
    if (
        last is not None
        and same_reason
        and (last.action, last.phase, last.weight) == (action, phase, weight)
    ):
        history[-1] = replace(decision, repeats=last.repeats + 1)
        if action == "wait":  # nothing new to tell anyone while waiting
            return state, state.weight, None
    else:
        history.append(decision)
    new = replace(
        state,
        phase=phase,
        step=step,
        weight=weight,
        message=reason,
        history=tuple(history[-HISTORY_LIMIT:]),
    )
    return new, weight, decision
