"""Decision chains as the console draws them: a timeline through the pipeline's stages,
and one reprocessing run beside the answers it re-made.

Pure: takes stored decision records, returns values for the templates. The timeline is
inline SVG coordinates computed here (no script, no chart library). Record data is
untrusted: it is only ever turned into text (pretty JSON, cut short), never markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiservice_functions import contract
from aiservice_functions.event_store.console.present import readable_json
from aiservice_functions.event_store.decisions import StoredDecision
from aiservice_functions.event_store.records import us_text

WIDTH: Final = 720
LEFT: Final = 190
"""Room for the stage labels left of the time axis."""
ROW: Final = 30
DATA_SHOWN: Final = 4000
"""Characters of a record's data shown on a page (the API has all of it)."""


@dataclass(frozen=True)
class Stage:
    """One record of a chain, placed on the timeline."""

    seq: int
    role: str
    service: str
    type: str
    key: str
    causation: str | None
    model_version: str | None
    revision: str | None
    latency_ms: float | None
    at: str
    offset_ms: float
    data: str
    dead_lettered: bool
    label: str
    y: float
    x: float
    bar_x: float
    bar_width: float


@dataclass(frozen=True)
class Chain:
    correlation: str
    stages: list[Stage]
    span_ms: float
    width: int
    height: int


@dataclass(frozen=True)
class Pair:
    """A reprocessed record beside the input it answered and the original reply."""

    key: str
    input: str
    old: str
    new: str
    old_version: str | None
    new_version: str | None
    changed: bool


def data_text(value: Any) -> str:
    """A record's data as indented JSON text, cut at :data:`DATA_SHOWN` characters."""
    if value is None:
        return ""
    text = readable_json(value, sort_keys=True)
    return text if len(text) <= DATA_SHOWN else text[:DATA_SHOWN] + "\n… (cut short)"


def shown(record: StoredDecision) -> str:
    """What a record's data cell shows: its data, or for data sent by reference (claim-check),
    the reference and its digest (the store never has the bytes)."""
    ref = record.attributes.get(contract.EXT_DATAREF)
    if record.data is None and ref:
        digest = record.attributes.get(contract.EXT_DATASHA256)
        return f"dataref: {ref}" + (f"\ndatasha256: {digest}" if digest else "")
    return data_text(record.data)


def _label(record: StoredDecision) -> str:
    version = f" · {record.model_version}" if record.model_version else ""
    return f"{record.role}{version}"


def chains(records: Iterable[StoredDecision], dead_keys: Iterable[str] = ()) -> list[Chain]:
    """Records grouped by correlation, each group in time order on its own timeline."""
    dead = set(dead_keys)
    groups: dict[str, list[StoredDecision]] = {}
    for record in records:
        groups.setdefault(record.correlation, []).append(record)
    return [
        _chain(correlation, sorted(group, key=lambda r: (r.received_at, r.seq)), dead)
        for correlation, group in sorted(
            groups.items(), key=lambda kv: min(r.received_at for r in kv[1])
        )
    ]


def _chain(correlation: str, records: Sequence[StoredDecision], dead: set[str]) -> Chain:
    start = min(r.received_at - int((r.latency_ms or 0) * 1000) for r in records)
    end = max(r.received_at for r in records)
    span_us = max(end - start, 1)
    scale = (WIDTH - LEFT - 16) / span_us

    def x_of(us: int) -> float:
        return round(LEFT + (us - start) * scale, 1)

    stages = []
    for row, r in enumerate(records):
        x = x_of(r.received_at)
        began = x_of(r.received_at - int((r.latency_ms or 0) * 1000))
        stages.append(
            Stage(
                seq=r.seq,
                role=r.role,
                service=f"{r.namespace}/{r.name}",
                type=r.type,
                key=r.key,
                causation=r.causation,
                model_version=r.model_version,
                revision=r.revision,
                latency_ms=r.latency_ms,
                at=us_text(r.received_at) or "",
                offset_ms=round((r.received_at - start) / 1000, 1),
                data=shown(r),
                dead_lettered=r.key in dead,
                label=_label(r),
                y=12 + row * ROW,
                x=x,
                bar_x=began,
                bar_width=max(round(x - began, 1), 2.0),
            )
        )
    return Chain(
        correlation=correlation,
        stages=stages,
        span_ms=round(span_us / 1000, 1),
        width=WIDTH,
        height=24 + len(records) * ROW,
    )


def pairs(
    compared: Iterable[tuple[StoredDecision | None, StoredDecision | None, StoredDecision]],
) -> list[Pair]:
    """A run's ``(input, old reply, new answer)`` triples as text, changed ones marked."""
    out = []
    for given, old, new in compared:
        out.append(
            Pair(
                key=new.causation or new.key,
                input=shown(given) if given is not None else "",
                old=data_text(old.data) if old is not None else "",
                new=data_text(new.data),
                old_version=old.model_version if old is not None else None,
                new_version=new.model_version,
                changed=old is None or old.data != new.data,
            )
        )
    return out
