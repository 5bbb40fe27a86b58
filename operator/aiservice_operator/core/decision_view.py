"""Decision-log answers shaped for people: a chain as a tree, a reprocessing run as a
comparison. Pure: the CLI fetches the records, this module only arranges them.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Node:
    """One event of a chain, with the services that logged it and what it caused."""

    key: str
    type: str
    source: str
    event_id: str
    correlation: str = ""
    seen_by: list[tuple[str, str]] = field(default_factory=list)
    """(AIService, role) pairs that logged this event."""
    model_version: str | None = None
    latency_ms: float | None = None
    receipts: int = 1
    dead_letters: list[Mapping[str, Any]] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "type": self.type,
            "source": self.source,
            "id": self.event_id,
            "correlationId": self.correlation,
            "seenBy": [{"aiservice": s, "role": r} for s, r in self.seen_by],
            "modelVersion": self.model_version,
            "latencyMs": self.latency_ms,
            "receipts": self.receipts,
            "deadLetters": list(self.dead_letters),
            "children": [c.to_json() for c in self.children],
        }


def chain_tree(
    records: Sequence[Mapping[str, Any]], dead_letters: Sequence[Mapping[str, Any]] = ()
) -> list[Node]:
    """Roots of the chains in ``records`` (the store's trace answer): one node per event
    (an event two services logged — a reply of one, the input of the next — is one node),
    each under the event that caused it."""
    nodes: dict[str, Node] = {}
    causes: dict[str, str | None] = {}
    for r in records:
        key = str(r["key"])
        node = nodes.get(key)
        if node is None:
            node = nodes[key] = Node(
                key, str(r["type"]), str(r["source"]), str(r["id"]), str(r["correlationId"])
            )
        node.seen_by.append((f"{r['namespace']}/{r['name']}", str(r["role"])))
        node.model_version = node.model_version or r.get("modelVersion")
        if r.get("latencyMs") is not None:
            node.latency_ms = float(r["latencyMs"])
        node.receipts = max(node.receipts, int(r.get("receipts") or 1))
        if r.get("causationId") and causes.get(key) is None:
            causes[key] = str(r["causationId"])
        causes.setdefault(key, None)
    for d in dead_letters:
        if str(d.get("key")) in nodes:
            nodes[str(d["key"])].dead_letters.append(d)
    roots: list[Node] = []
    for key, node in nodes.items():
        parent = causes.get(key)
        if parent is not None and parent in nodes and parent != key:
            nodes[parent].children.append(node)
        else:
            roots.append(node)
    return roots


def _label(data: Any) -> str | None:
    if isinstance(data, Mapping) and isinstance(data.get("label"), str):
        return str(data["label"])
    return None


def _score(data: Any) -> float | None:
    if isinstance(data, Mapping) and isinstance(data.get("score"), int | float):
        return float(data["score"])
    return None


@dataclass(frozen=True)
class Comparison:
    """What a reprocessing run changed."""

    compared: int
    changed: int
    confusion: Mapping[tuple[str, str], int]
    """(old label, new label) -> count, for labelled outputs."""
    mean_score_shift: float | None
    old_latency_ms: float | None
    new_latency_ms: float | None
    errors: int
    changed_keys: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "changed": self.changed,
            "confusion": [
                {"old": o, "new": n, "count": c} for (o, n), c in sorted(self.confusion.items())
            ],
            "meanScoreShift": self.mean_score_shift,
            "medianLatencyMs": {"old": self.old_latency_ms, "new": self.new_latency_ms},
            "errors": self.errors,
            "changedInputs": list(self.changed_keys),
        }


def compare(pairs: Sequence[Mapping[str, Any]], errors: int = 0) -> Comparison:
    """Compare each logged reply with the new one (``pairs`` from the store's compare
    query). An answer differs when its label differs, or, for unlabelled outputs, when
    the output differs at all."""
    confusion: Counter[tuple[str, str]] = Counter()
    shifts: list[float] = []
    old_lat: list[float] = []
    new_lat: list[float] = []
    changed: list[str] = []
    compared = 0
    for pair in pairs:
        old, new = pair.get("old"), pair.get("new")
        if not old or not new:
            continue
        compared += 1
        old_data, new_data = old.get("data"), new.get("data")
        old_label, new_label = _label(old_data), _label(new_data)
        if old_label is not None and new_label is not None:
            confusion[(old_label, new_label)] += 1
            differs = old_label != new_label
        else:
            differs = old_data != new_data
        if differs:
            changed.append(str(new.get("causationId")))
        old_score, new_score = _score(old_data), _score(new_data)
        if old_score is not None and new_score is not None:
            shifts.append(new_score - old_score)
        if old.get("latencyMs") is not None:
            old_lat.append(float(old["latencyMs"]))
        if new.get("latencyMs") is not None:
            new_lat.append(float(new["latencyMs"]))
    return Comparison(
        compared=compared,
        changed=len(changed),
        confusion=dict(confusion),
        mean_score_shift=statistics.fmean(shifts) if shifts else None,
        old_latency_ms=statistics.median(old_lat) if old_lat else None,
        new_latency_ms=statistics.median(new_lat) if new_lat else None,
        errors=errors,
        changed_keys=tuple(changed),
    )
