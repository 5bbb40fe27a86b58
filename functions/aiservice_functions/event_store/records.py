"""What the event store keeps and how it is asked for it: plain, storage-neutral records.

A record keeps the whole CloudEvent as its structured-mode JSON document (attributes,
extensions, ``data`` or ``data_base64``), so nothing the sender put in is lost and replay
can rebuild the exact event. The columns next to it (type, error code, revision, ...)
are copies made at ingest so that queries can filter and count without parsing JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from aiservice_functions import contract
from aiservice_functions.timestamps import rfc3339

Kind = Literal["dead-letter", "audit"]
KINDS: Final[tuple[Kind, ...]] = ("dead-letter", "audit")

MAX_PAGE: Final = 500
"""Largest page a list query returns, whatever the client asks."""


def now_us() -> int:
    """Current UTC time in epoch microseconds, the store's time unit."""
    return int(datetime.now(UTC).timestamp() * 1_000_000)


def to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def us_text(value: int | None) -> str | None:
    """Epoch microseconds as an RFC 3339 UTC timestamp (``None`` stays ``None``)."""
    return None if value is None else rfc3339(from_us(value), digits=6)


@dataclass(frozen=True)
class NewEvent:
    """One received event, ready to be written (the ingest side's output)."""

    kind: Kind
    namespace: str
    name: str
    source: str
    event_id: str
    type: str
    document: dict[str, Any]
    """The structured-mode JSON form of the whole event, exactly as received."""
    error_dest: str | None = None
    error_code: int | None = None
    error_data: bytes | None = None
    """``knativeerrordata``, base64-decoded (the raw text when it was not base64)."""
    revision: str | None = None
    replay_seen: int = 0
    """The ``aisvcreplay`` count the event carried: >0 when a replayed event failed again."""
    received_at: int = field(default_factory=now_us)


@dataclass(frozen=True)
class StoredEvent:
    """One record as the store holds it."""

    seq: int
    kind: Kind
    namespace: str
    name: str
    source: str
    event_id: str
    type: str
    document: dict[str, Any]
    error_dest: str | None
    error_code: int | None
    error_data: bytes | None
    revision: str | None
    received_at: int
    last_received_at: int
    receipts: int
    replay_count: int
    replayed_at: int | None
    last_replay_status: int | None
    last_replay_error: str | None

    def summary(self) -> dict[str, Any]:
        """The JSON form used in lists: everything but the event body."""
        return {
            "seq": self.seq,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "id": self.event_id,
            "source": self.source,
            "type": self.type,
            "revision": self.revision,
            "errorDest": self.error_dest,
            "errorCode": self.error_code,
            "receivedAt": us_text(self.received_at),
            "lastReceivedAt": us_text(self.last_received_at),
            "receipts": self.receipts,
            "replayCount": self.replay_count,
            "replayed": self.replayed_at is not None,
            "replayedAt": us_text(self.replayed_at),
            "lastReplayStatus": self.last_replay_status,
            "lastReplayError": self.last_replay_error,
        }

    def detail(self) -> dict[str, Any]:
        """The JSON form of one record: the summary, the decoded error data, the event."""
        out = self.summary()
        out["errorData"] = decode_for_display(self.error_data)
        out["event"] = self.document
        return out


def decode_for_display(raw: bytes | None) -> Any:
    """Error data for people: JSON if it parses, else text, else ``{"base64": ...}``."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}
    try:
        return json.loads(text)
    except ValueError:
        return text


def decode_error_data(value: object) -> bytes | None:
    """``knativeerrordata`` is base64 (Knative cuts it to 1024 chars, so padding may be
    missing); anything that does not decode is kept as its UTF-8 text rather than lost."""
    if value is None:
        return None
    text = str(value)
    trimmed = text.strip()
    try:
        return base64.b64decode(trimmed + "=" * (-len(trimmed) % 4), validate=True)
    except (binascii.Error, ValueError):
        return text.encode("utf-8")


def parse_error_code(value: object) -> int | None:
    try:
        return int(str(value).strip()) if value is not None else None
    except ValueError:
        return None


def parse_replay_count(value: object) -> int:
    try:
        return max(0, int(str(value).strip())) if value is not None else 0
    except ValueError:
        return 0


@dataclass(frozen=True)
class EventFilter:
    """A selection of records; every field left ``None`` matches everything."""

    kind: Kind | None = None
    namespace: str | None = None
    name: str | None = None
    type: str | None = None
    error_code: int | None = None
    revision: str | None = None
    since: int | None = None
    """Received at or after (epoch µs)."""
    until: int | None = None
    """Received before (epoch µs)."""
    replayed: bool | None = None
    seqs: tuple[int, ...] | None = None
    """Only these records (by ``seq``)."""
    namespaces: frozenset[str] | None = None
    """Only records of these namespaces (the caller's readable ones; ``None``: all)."""


@dataclass(frozen=True)
class Page:
    items: list[StoredEvent]
    next_cursor: str | None


@dataclass(frozen=True)
class ServiceCount:
    namespace: str
    name: str
    dead_letters: int
    unreplayed: int
    audit: int
    last_dead_letter_at: int | None


@dataclass(frozen=True)
class RevisionCount:
    namespace: str
    name: str
    revision: str | None
    dead_letters: int
    unreplayed: int


REPLAY_EXTENSION: Final = contract.EXT_REPLAY
ERROR_EXTENSIONS: Final = (
    contract.EXT_ERROR_DEST,
    contract.EXT_ERROR_CODE,
    contract.EXT_ERROR_DATA,
)
