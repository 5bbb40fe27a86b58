"""The live view of `aisvc up`: a rich renderable built from the status snapshot.

Pure over the snapshot dict (the same one ``/_aisvc/status`` serves), so `aisvc status`
against a local run can print exactly what the live view shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


def render(snapshot: Mapping[str, Any]) -> RenderableType:
    parts: list[RenderableType] = []
    brokers = Table(title="Brokers", title_justify="left", expand=False)
    for column in ("broker", "URL", "events in", "duplicates", "matched no Trigger"):
        brokers.add_column(column)
    for name, info in snapshot.get("brokers", {}).items():
        unrouted = info.get("unrouted", 0)
        brokers.add_row(
            name,
            info["url"],
            str(info["accepted"]),
            str(info["duplicates"]),
            Text(str(unrouted), style="yellow" if unrouted else ""),
        )
    parts.append(brokers)

    services = Table(title="Services", title_justify="left")
    for column in (
        "service", "model", "revision", "traffic", "tags", "procs", "in flight",
        "sent", "failed", "restarts",
    ):  # fmt: skip
        services.add_column(column)
    events = Table(title="Events", title_justify="left")
    for column in (
        "service",
        "delivered",
        "answered",
        "dead-lettered",
        "retries",
        "dropped",
        "rollout",
    ):
        events.add_column(column)
    for svc in snapshot.get("services", []):
        label = f"{svc['namespace']}/{svc['name']}"
        for rev in svc["revisions"]:
            services.add_row(
                label,
                rev["model"],
                rev["revision"],
                f"{rev['percent']}%",
                ",".join(rev["tags"]),
                f"{rev['ready']}/{rev['processes']}",
                str(rev["inFlight"]),
                str(rev["sent"]),
                Text(str(rev["failed"]), style="red" if rev["failed"] else ""),
                str(rev["restarts"]),
            )
            label = ""
        ev = svc["events"]
        rollout = svc.get("rollout") or {}
        phase = rollout.get("phase", "")
        if phase:
            phase = f"{phase} (step {rollout.get('step', 0)}, canary {rollout.get('weight', 0)}%)"
        events.add_row(
            f"{svc['namespace']}/{svc['name']}",
            str(ev["delivered"]),
            str(ev["answered"]),
            Text(str(ev["deadLettered"]), style="yellow" if ev["deadLettered"] else ""),
            str(ev["retries"]),
            Text(str(ev["dropped"]), style="red" if ev["dropped"] else ""),
            phase or "-",
        )
    parts += [services, events]
    others = [t for t in snapshot.get("triggers", []) if not t.get("role")]
    if others:
        table = Table(title="Other Triggers", title_justify="left")
        for column in ("trigger", "subscriber", "delivered", "dead-lettered", "dropped"):
            table.add_column(column)
        for t in others:
            table.add_row(
                f"{t['namespace']}/{t['name']}", t["subscriber"], str(t["delivered"]),
                str(t["deadLettered"]), str(t["dropped"]),
            )  # fmt: skip
        parts.append(table)
    if snapshot.get("eventStoreUrl"):
        parts.append(Text(f"dead letters: aisvc dlq (event store {snapshot['eventStoreUrl']})"))
    for warning in snapshot.get("warnings", []):
        parts.append(Text(f"warning: {warning}", style="yellow"))
    return Group(*parts)
