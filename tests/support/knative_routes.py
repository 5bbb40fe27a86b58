"""The traffic status Knative's Route reports for a Service: shared by the two stand-ins
for Knative Serving's controllers (on the emulator and on the real kube-apiserver)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def traffic_status(
    name: str, domain: str, spec: Obj, ready: set[str], latest_ready: str | None
) -> tuple[list[Obj], list[str]]:
    """The status entries of ``spec.traffic``, and the pinned targets that are not ready
    (the Route then keeps serving its previous traffic). A ``latestRevision`` target not
    ready yet is listed as ``""``."""
    entries: list[Obj] = []
    unready: list[str] = []
    for target in spec.get("traffic") or [{"latestRevision": True, "percent": 100}]:
        latest = bool(target.get("latestRevision"))
        revision = latest_ready if latest else target["revisionName"]
        if revision not in ready:
            unready.append("" if latest else str(revision))
        entry: Obj = {
            "revisionName": revision,
            "percent": target.get("percent", 0),
            "latestRevision": latest,
        }
        if target.get("tag"):
            entry["tag"] = target["tag"]
            entry["url"] = f"http://{target['tag']}-{name}.{domain}"
        entries.append(entry)
    return entries, unready
