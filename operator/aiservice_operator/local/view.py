"""The live view of `aisvc up`: a rich renderable built from the status snapshot.

Pure over the snapshot dict (the same one ``/_aisvc/status`` serves), so `aisvc status`
against a local run can print exactly what the live view shows. Kept compact: one line
per broker, one row per revision, so it fits a terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from aiservice_operator.core.spec import AIService

COLUMNS = (
    "service", "model", "traffic", "tags", "procs", "in flight", "delivered", "answered",
    "dead-lettered", "retries", "rollout",
)  # fmt: skip


def status_object(ais: AIService, rollout: Mapping[str, Any] | None) -> dict[str, Any]:
    """An AIService of the local run in the shape the cluster's API returns (the fields
    `aisvc status` reads), so one rollout view serves both the cluster and a laptop."""
    spec: dict[str, Any] = {"traffic": {"stable": ais.spec.traffic.stable}}
    if ais.spec.rollout is not None:
        r = ais.spec.rollout
        spec["rollout"] = {
            "canary": r.canary,
            "steps": list(r.steps),
            "shadow": r.shadow,
            "analysis": {"failureLimit": r.analysis.failure_limit},
        }
    asked = ais.spec.managed_broker
    durable = {
        "type": "BrokerDurable",
        "status": "True",
        "reason": "LocalLog",
        "message": f"broker {ais.spec.broker} is the local SQLite log (durable, ordered, "
        "replayable) whatever its class"
        + (f"; {asked.broker_class} on a cluster" if asked else ""),
    }
    # The run only serves once every revision reported ready, and restarts one that dies.
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "LocalRun",
        "message": "served by the local run (aisvc up)",
    }
    return {
        "metadata": {"namespace": ais.namespace, "name": ais.name},
        "spec": spec,
        "status": {"rollout": dict(rollout or {}), "conditions": [ready, durable]},
    }


def _count(value: int, style: str) -> Text:
    return Text(str(value), style=style if value else "")


def _rollout(rollout: Mapping[str, Any] | None) -> str:
    if not rollout or not rollout.get("phase"):
        return "-"
    return f"{rollout['phase']} step {rollout.get('step', 0)}, canary {rollout.get('weight', 0)}%"


def render(snapshot: Mapping[str, Any]) -> RenderableType:
    parts: list[RenderableType] = []
    for name, info in snapshot.get("brokers", {}).items():
        line = Text(f"broker {name} {info['url']}: {info['accepted']} events in")
        # Every class runs as the local durable SQLite log (ordered, replayable).
        cluster = info.get("clusterClass")
        line.append(
            f" (durable SQLite here{'; ' + cluster + ' on the cluster' if cluster else ''})"
        )
        if info.get("duplicates"):
            line.append(f", {info['duplicates']} duplicates")
        if info.get("unrouted"):
            line.append(f", {info['unrouted']} matched no Trigger", style="yellow")
        parts.append(line)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in COLUMNS:
        table.add_column(column, no_wrap=column != "rollout", overflow="fold")
    for svc in snapshot.get("services", []):
        ev = svc["events"]
        first = True
        for rev in svc["revisions"]:
            lead: list[RenderableType] = (
                [
                    str(ev["delivered"]),
                    str(ev["answered"]),
                    _count(ev["deadLettered"], "yellow"),
                    str(ev["retries"]),
                    _rollout(svc.get("rollout")),
                ]
                if first
                else ["", "", "", "", ""]
            )
            table.add_row(
                f"{svc['namespace']}/{svc['name']}" if first else "",
                rev["model"],
                f"{rev['percent']}%",
                ",".join(rev["tags"]),
                Text(f"{rev['ready']}/{rev['processes']}")
                + (Text(f" ({rev['restarts']} restarts)", style="red") if rev["restarts"] else ""),
                str(rev["inFlight"]),
                *lead,
            )
            first = False
    parts.append(table)
    others = [t for t in snapshot.get("triggers", []) if not t.get("role")]
    for t in others:
        line = Text(f"trigger {t['namespace']}/{t['name']} -> {t['subscriber']}: ")
        line.append(f"{t['delivered']} delivered")
        if t["deadLettered"]:
            line.append(f", {t['deadLettered']} dead-lettered", style="yellow")
        if t["dropped"]:
            line.append(f", {t['dropped']} dropped", style="red")
        parts.append(line)
    if snapshot.get("eventStoreUrl"):
        parts.append(Text(f"dead letters: aisvc dlq (event store {snapshot['eventStoreUrl']})"))
    for warning in snapshot.get("warnings", []):
        parts.append(Text(f"warning: {warning}", style="yellow"))
    return Group(*parts)
