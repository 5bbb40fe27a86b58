"""The state of a canary rollout, as kept in `status.rollout`, and its decisions.

A frozen value that round-trips through `status.rollout` (JSON, RFC 3339 timestamps), so
a restarted operator resumes exactly where it was; `rollout.step` moves it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast, get_args

Phase = Literal[
    "Initializing", "Progressing", "Paused", "Promoting", "Succeeded", "RollingBack", "Failed"
]
PHASES: Final[tuple[Phase, ...]] = get_args(Phase)
TERMINAL: Final[frozenset[str]] = frozenset({"Succeeded", "Failed"})

PausedBy = Literal["", "user", "analysis"]

Command = Literal["abort", "promote", "pause", "resume"]
COMMANDS: Final[tuple[Command, ...]] = get_args(Command)
"""In priority order: when several are pending at once, the first one acts."""

Action = Literal[
    "start",  # a new rollout (or a restart after a spec change)
    "wait",  # the canary revision is not ready yet
    "advance",  # analysis passed (or the canary became ready): next step
    "hold",  # too little data: stay at this step
    "check-failed",  # analysis failed, failure limit not reached yet
    "rollback",  # failure limit reached: traffic goes back to stable
    "promote",  # every step passed, or a user promoted: canary takes 100%
    "succeed",  # the canary is the new stable
    "pause",
    "resume",
    "abort",
    "ignore",  # a command that does not apply in this phase
]

HISTORY_LIMIT: Final = 20
ANNOTATION_PREFIX: Final = "aiservice.dev/"


def annotation(command: Command) -> str:
    """The annotation a user (or `aisvc`) sets on the AIService to send `command`."""
    return ANNOTATION_PREFIX + command


# --- State ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One explained change (or refusal to change): what, why, and the numbers behind it."""

    at: str
    action: Action
    phase: Phase
    step: int
    weight: int
    reason: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    command: Command | None = None
    """The user command this decision answered, if any."""
    repeats: int = 1
    """How many consecutive identical decisions this history entry stands for."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "at": self.at,
            "action": self.action,
            "phase": self.phase,
            "step": self.step,
            "weight": self.weight,
            "reason": self.reason,
            "metrics": dict(self.metrics),
        }
        if self.command:
            out["command"] = self.command
        if self.repeats != 1:
            out["repeats"] = self.repeats
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            at=_str(data, "at"),
            action=_choice(data, "action", get_args(Action)),
            phase=_choice(data, "phase", PHASES),
            step=_int(data, "step"),
            weight=_int(data, "weight"),
            reason=_str(data, "reason"),
            metrics=dict(data.get("metrics") or {}),
            command=data.get("command") or None,
            repeats=_int(data, "repeats", 1),
        )


@dataclass(frozen=True)
class RolloutState:
    """Where one rollout stands; `to_status()` / `from_status()` keep it in `status.rollout`."""

    phase: Phase
    canary: str
    stable: str
    spec_hash: str
    shadow: bool = False
    step: int = 0
    """Steps reached, 1-based: 0 before the first step, `len(steps)` at the last."""
    weight: int = 0
    """The canary's percent of real (not mirrored) traffic."""
    failures: int = 0
    started_at: str = ""
    last_step_at: str = ""
    last_analysis_at: str = ""
    last_analysis: Mapping[str, Any] = field(default_factory=dict)
    paused_by: PausedBy = ""
    message: str = ""
    history: tuple[Decision, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    @property
    def last_decision(self) -> Decision | None:
        return self.history[-1] if self.history else None

    def to_status(self) -> dict[str, Any]:
        """The JSON-safe `status.rollout` object."""
        return {
            "phase": self.phase,
            "canary": self.canary,
            "stable": self.stable,
            "specHash": self.spec_hash,
            "shadow": self.shadow,
            "step": self.step,
            "weight": self.weight,
            "failures": self.failures,
            "startedAt": self.started_at,
            "lastStepAt": self.last_step_at,
            "lastAnalysisAt": self.last_analysis_at,
            # null, not {}: status is merge-patched, and {} would keep the old keys.
            "lastAnalysis": dict(self.last_analysis) or None,
            "pausedBy": self.paused_by,
            "message": self.message,
            "history": [d.to_dict() for d in self.history],
        }

    @classmethod
    def from_status(cls, data: Mapping[str, Any]) -> RolloutState:
        """Read `status.rollout` back; `ValueError` naming the field when it is unusable."""
        if not isinstance(data, Mapping):
            raise ValueError("status.rollout must be an object")
        history = data.get("history")
        history = [] if history is None else history
        if not isinstance(history, list):
            raise ValueError("status.rollout.history must be a list")
        paused_by = data.get("pausedBy") or ""
        if paused_by not in ("", "user", "analysis"):
            raise ValueError(f"status.rollout.pausedBy: unknown value {paused_by!r}")
        return cls(
            phase=_choice(data, "phase", PHASES),
            canary=_str(data, "canary"),
            stable=_str(data, "stable"),
            spec_hash=_str(data, "specHash"),
            shadow=bool(data.get("shadow", False)),
            step=_int(data, "step"),
            weight=_int(data, "weight"),
            failures=_int(data, "failures"),
            started_at=_str(data, "startedAt", ""),
            last_step_at=_str(data, "lastStepAt", ""),
            last_analysis_at=_str(data, "lastAnalysisAt", ""),
            last_analysis=dict(data.get("lastAnalysis") or {}),
            paused_by=cast(PausedBy, paused_by),
            message=_str(data, "message", ""),
            history=tuple(Decision.from_dict(d) for d in history),
        )


def _str(data: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"status.rollout.{key} must be a string, not {value!r}")
    return value


def _int(data: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"status.rollout.{key} must be an integer, not {value!r}")
    return value


def _choice(data: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> Any:
    value = data.get(key)
    if value not in choices:
        raise ValueError(f"status.rollout.{key}: {value!r} is not one of {', '.join(choices)}")
    return value
