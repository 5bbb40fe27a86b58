"""Dead letters for people: attributes, decoded data and the delivery history of a record.

Pure: turns a stored record into strings for the templates, which escape them (event data
is untrusted; nothing here marks anything as safe HTML).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Final

from aiservice_functions import contract
from aiservice_functions.event_store.records import StoredEvent, decode_for_display, us_text

ERROR_KEYS: Final = (contract.EXT_ERROR_DEST, contract.EXT_ERROR_CODE, contract.EXT_ERROR_DATA)
MAX_SHOWN: Final = 64 * 1024
"""Longer bodies are cut (the whole event stays available from the API)."""


@dataclass(frozen=True)
class Step:
    at: str
    what: str
    detail: str
    tone: str


def readable_json(value: Any, *, sort_keys: bool = False) -> str:
    """``value`` as indented JSON with its non-ASCII characters as they are, unless it
    holds a lone surrogate (valid in JSON, not in UTF-8: the page could not be sent),
    then ASCII-escaped."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=sort_keys)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, indent=2, sort_keys=sort_keys)
    return text


def pretty(value: Any) -> str:
    """JSON indented for reading; text as it is; cut past ``MAX_SHOWN`` characters."""
    text = value if isinstance(value, str) else readable_json(value)
    if len(text) > MAX_SHOWN:
        return text[:MAX_SHOWN] + f"\n… ({len(text) - MAX_SHOWN} more characters)"
    return text


def attributes(record: StoredEvent) -> list[tuple[str, str]]:
    """Context attributes and extensions, without the data and Knative's error fields."""
    skip = {"data", "data_base64", *ERROR_KEYS}
    return sorted(
        (str(k), v if isinstance(v, str) else json.dumps(v))
        for k, v in record.document.items()
        if k not in skip
    )


def data(record: StoredEvent) -> str:
    """The event's data decoded: JSON indented, text as text, binary as base64."""
    doc = record.document
    if "data" in doc:
        return pretty(doc["data"])
    raw = doc.get("data_base64")
    if not isinstance(raw, str):
        return ""
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return pretty(raw)
    return pretty(decode_for_display(decoded))


def error_data(record: StoredEvent) -> str:
    value = decode_for_display(record.error_data)
    return "" if value is None else pretty(value)


def state(record: StoredEvent) -> str:
    return "replayed" if record.replayed_at is not None else "pending"


def history(record: StoredEvent) -> list[Step]:
    """What happened to the event, as far as the store saw it, oldest first."""
    steps = [Step(us_text(record.received_at) or "", "dead-lettered", _failure(record), "bad")]
    if record.receipts > 1:
        steps.append(
            Step(
                us_text(record.last_received_at) or "",
                "delivered again",
                f"{record.receipts} deliveries of the same source and id, stored once",
                "neutral",
            )
        )
    if record.replay_count:
        status = record.last_replay_status
        answered = f"the target answered HTTP {status}" if status is not None else "sent"
        steps.append(
            Step(
                us_text(record.replayed_at) or "",
                f"replayed ({record.replay_count}x)",
                answered,
                "good",
            )
        )
        if record.replayed_at is None and record.last_replay_error is None:
            steps.append(
                Step(
                    us_text(record.last_received_at) or "",
                    "failed again after the replay",
                    _failure(record),
                    "bad",
                )
            )
    if record.last_replay_error:
        steps.append(Step("", "last replay attempt failed", record.last_replay_error, "bad"))
    return steps


def _failure(record: StoredEvent) -> str:
    code = f"HTTP {record.error_code}" if record.error_code is not None else "no HTTP status"
    return f"{record.error_dest or 'an unknown destination'} answered {code}"
