"""What `aisvc status|list|promote|abort` show and decide, from AIService objects alone.

Pure (the polling loop takes its clock and sleep as arguments), so every view and the
verdict behind the exit codes is tested without a cluster. An object is the AIService as
the API returns it, or as the local run's status API shapes it (`local.view.status_object`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal

from aiservice_functions.timestamps import parse_time
from rich.console import Group
from rich.table import Table
from rich.text import Text

from aiservice_operator.cli.common import EXIT_DEGRADED, EXIT_HEALTHY, EXIT_TIMEOUT, EXIT_USAGE

Health = Literal["healthy", "degraded", "progressing"]
EXIT_CODES: Final = {
    "healthy": EXIT_HEALTHY,
    "degraded": EXIT_DEGRADED,
    "usage": EXIT_USAGE,
    "timeout": EXIT_TIMEOUT,
}
POLL_S: Final = 1.0
BAR_WIDTH: Final = 40
LIST_COLUMNS: Final = (
    "NAME", "NAMESPACE", "PHASE", "STEP", "STABLE", "CANARY", "WEIGHT", "READY", "AGE",
)  # fmt: skip
QUALITY_CHECKS: Final = (
    # (shown as, value key, limit key, "min" or "max"), keyed as in status.rollout.lastAnalysis
    ("agreement", "agreement", "minAgreement", "min"),
    ("output drift", "outputDrift", "maxOutputDrift", "max"),
    ("accuracy", "accuracy", "minAccuracy", "min"),
    ("accuracy drop", "accuracyDrop", "maxAccuracyDrop", "max"),
)
"""The model-quality checks of the last analysis, read from the decision log."""
PERMANENT_NOT_READY: Final = frozenset({"InvalidSpec", "NameConflict", "KnativeFeatureDisabled"})
"""Ready=False reasons that only a spec change ends: waiting for them is pointless."""


def _parts(obj: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(metadata, spec, status) of an object, each {} when absent."""
    return (
        dict(obj.get("metadata") or {}),
        dict(obj.get("spec") or {}),
        dict(obj.get("status") or {}),
    )


def _conditions(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c.get("type")): dict(c) for c in status.get("conditions") or ()}


def health(obj: Mapping[str, Any]) -> Health:
    """Healthy: the rollout Succeeded (or, without one, the service is Ready); degraded:
    rolled back or rolling back, Degraded, or not Ready for good; else progressing.

    A state the operator has not caught up with (an older generation, a Succeeded state
    left by an earlier canary) is progressing, so a wait never ends on stale news."""
    meta, spec, status = _parts(obj)
    observed, generation = status.get("observedGeneration"), meta.get("generation")
    if isinstance(observed, int) and isinstance(generation, int) and observed < generation:
        return "progressing"
    conditions = _conditions(status)
    if (conditions.get("Degraded") or {}).get("status") == "True":
        return "degraded"
    rollout = spec.get("rollout")
    if rollout:
        state = status.get("rollout") or {}
        if state.get("canary") and state["canary"] != rollout.get("canary"):
            return "progressing"
        phase = state.get("phase")
        if phase == "Succeeded":
            return "healthy"
        return "degraded" if phase in ("Failed", "RollingBack") else "progressing"
    ready = conditions.get("Ready") or {}
    if ready.get("status") == "True":
        return "healthy"
    if ready.get("status") == "False" and ready.get("reason") in PERMANENT_NOT_READY:
        return "degraded"
    return "progressing"


def quality(last_analysis: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The quality checks the last analysis judged: each value beside its limit (`None`
    for a check the rollout does not set, or a value without data yet)."""
    if "agreement" not in last_analysis:
        return []
    return [
        {
            "check": shown,
            "value": last_analysis.get(value),
            "limit": last_analysis.get(limit),
            "bound": bound,
        }
        for shown, value, limit, bound in QUALITY_CHECKS
    ]


def summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The machine-readable state of one AIService (`-o json|yaml`)."""
    meta, spec, status = _parts(obj)
    rollout = spec.get("rollout") or {}
    state = status.get("rollout") or {} if rollout else {}
    stable = state.get("stable") or (spec.get("traffic") or {}).get("stable")
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "health": health(obj),
        "rollout": bool(rollout),
        "phase": (state.get("phase") or "Pending") if rollout else None,
        "step": int(state.get("step", 0)),
        "steps": len(rollout.get("steps") or ()),
        "weight": int(state.get("weight", 0)),
        "stable": stable,
        "canary": (state.get("canary") or rollout.get("canary")) if rollout else None,
        "failures": int(state.get("failures", 0)),
        "failureLimit": (rollout.get("analysis") or {}).get("failureLimit", 2) if rollout else None,
        "pausedBy": state.get("pausedBy", ""),
        "message": state.get("message", ""),
        "history": list(state.get("history") or ()),
        "quality": quality(state.get("lastAnalysis") or {}),
        "conditions": list(status.get("conditions") or ()),
    }


def result_line(obj: Mapping[str, Any]) -> str:
    """One line for the end of a wait: where the rollout stands and the latest reason."""
    s = summary(obj)
    where = f"{s['namespace']}/{s['name']}"
    if not s["rollout"]:
        return f"{where}: no rollout, {s['health']}"
    line = f"{where}: {s['phase']}, {s['canary']} at {s['weight']}%"
    return f"{line}: {s['message']}" if s["message"] else line


# --- list -----------------------------------------------------------------------------


def human_age(created: str, now: datetime) -> str:
    """`45s`, `5m`, `3h`, `3d`: how long ago, in its largest unit (kubectl's AGE)."""
    try:
        seconds = int((now - parse_time(created)).total_seconds())
    except (ValueError, TypeError):
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:  # 119s, 119m, 47h: the smaller unit reads better
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def list_row(obj: Mapping[str, Any], now: datetime, *, namespaced: bool) -> list[str]:
    """One row of `aisvc list` (`namespaced`: with the NAMESPACE column, for -A)."""
    meta, _, status = _parts(obj)
    s = summary(obj)
    ready = (_conditions(status).get("Ready") or {}).get("status") or "-"
    row = [str(s["name"])]
    if namespaced:
        row.append(str(s["namespace"]))
    if s["rollout"]:
        rollout = [s["phase"], f"{s['step']}/{s['steps']}", s["stable"], s["canary"]]
        row += [*map(str, rollout), f"{s['weight']}%"]
    else:
        row += ["-", "-", str(s["stable"]), "-", "-"]
    return [*row, ready, human_age(str(meta.get("creationTimestamp") or ""), now)]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart; never wrapped or cut."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


# --- waiting --------------------------------------------------------------------------


def answered(
    command: str, before: Sequence[Mapping[str, Any]], obj: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The operator's decision on `command` that was not in the history `before` it was
    sent (a new or refolded entry), or None while it has not acted."""
    history = ((obj.get("status") or {}).get("rollout") or {}).get("history") or ()
    for entry in reversed(history):
        if entry.get("command") == command and entry not in before:
            return dict(entry)
    return None


def poll(
    fetch: Callable[[], Mapping[str, Any]],
    finished: Callable[[Mapping[str, Any]], bool],
    *,
    timeout: float | None,
    on_change: Callable[[Mapping[str, Any]], None],
    interval: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Mapping[str, Any], bool]:
    """Fetch every `interval` until `finished` or `timeout` seconds (None: no limit);
    `on_change` sees each state that differs from the last shown. (last state, finished)."""
    deadline = None if timeout is None else clock() + timeout
    shown: dict[str, Any] | None = None
    while True:
        obj = fetch()
        view = summary(obj)
        if view != shown:
            on_change(obj)
            shown = view
        if finished(obj):
            return obj, True
        if deadline is not None and clock() >= deadline:
            return obj, False
        sleep(interval if deadline is None else min(interval, deadline - clock()))


# --- the rich view --------------------------------------------------------------------


def traffic_bar(stable: str, canary: str, weight: int, shadow: bool = False) -> Text:
    """`v1 ██████░░ v2` with percentages: the canary's share of real traffic."""
    filled = round(BAR_WIDTH * weight / 100)
    bar = Text()
    bar.append(f"{stable} {100 - weight:>3}% ", style="bold green")
    bar.append("█" * (BAR_WIDTH - filled), style="green")
    bar.append("▒" * filled, style="yellow")  # tells the two apart without colour too
    bar.append(f" {weight:>3}% {canary}", style="bold yellow")
    if shadow and weight == 0:
        bar.append("  (+ mirrored copy of every event)", style="dim")
    return bar


def broker_line(obj: Mapping[str, Any]) -> list[Text]:
    """How durable the Broker in use is (the BrokerDurable condition), and a class conflict."""
    lines = []
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "BrokerDurable":
            style = {"True": "green", "False": "yellow"}.get(str(cond.get("status")), "dim")
            durable = {"True": "durable", "False": "in memory"}.get(str(cond.get("status")), "?")
            lines.append(Text(f"broker: {durable}: {cond.get('message', '')}", style=style))
        if cond.get("type") == "BrokerManaged" and cond.get("status") == "False":
            lines.append(Text(f"broker: {cond.get('message', '')}", style="red"))
    return lines


def status_view(obj: Mapping[str, Any]) -> Group:
    """Phase, step and traffic of one AIService's rollout, and its latest decisions."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    state = (obj.get("status") or {}).get("rollout") or {}
    title = Text(f"{meta.get('namespace')}/{meta.get('name')}", style="bold")
    broker = broker_line(obj)
    rollout = spec.get("rollout")
    if not rollout:
        stable = (spec.get("traffic") or {}).get("stable", "?")
        return Group(title, *broker, Text(f"no rollout: all traffic on {stable}"))
    steps = rollout.get("steps") or []
    phase = state.get("phase", "Pending")
    style = {"Succeeded": "green", "Failed": "red", "Paused": "yellow"}.get(phase, "cyan")
    head = Text.assemble(
        title,
        "  ",
        (phase, f"bold {style}"),
        f"  step {state.get('step', 0)}/{len(steps)}",
        f"  failed checks {state.get('failures', 0)}/"
        f"{(rollout.get('analysis') or {}).get('failureLimit', 2)}",
    )
    stable = state.get("stable") or (spec.get("traffic") or {}).get("stable", "?")
    canary = state.get("canary") or rollout.get("canary", "?")
    parts: list[Any] = [
        head,
        *broker,
        traffic_bar(stable, canary, int(state.get("weight", 0)), bool(rollout.get("shadow"))),
    ]
    if state.get("message"):
        parts.append(Text(str(state["message"]), style="dim"))
    parts += quality_view(state.get("lastAnalysis") or {})
    history = list(state.get("history") or [])[-6:]
    if history:
        table = Table("at", "decision", "weight", "why", box=None, pad_edge=False)
        for entry in history:
            repeats = f" x{entry['repeats']}" if entry.get("repeats", 1) > 1 else ""
            table.add_row(
                str(entry.get("at", ""))[11:19],
                f"{entry.get('action')}{repeats}",
                f"{entry.get('weight')}%",
                str(entry.get("reason", "")),
            )
        parts.append(table)
    return Group(*parts)


def quality_view(last_analysis: Mapping[str, Any]) -> list[Table | Text]:
    """The last analysis' quality checks: value, limit, and whether it held."""
    rows = quality(last_analysis)
    if not rows:
        return []
    table = Table("quality", "value", "limit", "", box=None, pad_edge=False)
    for row in rows:
        value, limit = row["value"], row["limit"]
        shown_limit = "not checked" if limit is None else f"{row['bound']} {limit:g}"
        verdict = ""
        if value is not None and limit is not None:
            ok = value >= limit if row["bound"] == "min" else value <= limit
            verdict = "ok" if ok else "FAILED"
        table.add_row(
            row["check"], "no data" if value is None else f"{value:.3f}", shown_limit, verdict
        )
    paired, feedback = last_analysis.get("paired"), last_analysis.get("feedback")
    note = f"{paired} inputs answered by both, {feedback} canary answers with feedback"
    return [table, Text(note, style="dim")]
