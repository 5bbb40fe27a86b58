"""What the decision log keeps of one event, decided without I/O: sampling, redaction,
hashing, and the links (cause, correlation, trace) a chain is rebuilt from.

The settings come from the sink URL the operator compiled from ``spec.decisionLog``
(``?sample=&data=&retention=&redact=``), so the store needs no per-AIService config.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiservice_functions import contract
from aiservice_functions.cloudevents_http import CloudEvent, InvalidEvent, event_to_dict
from aiservice_functions.event_store.decision_data import kept_data

ROLE_OF_PATH: Final = {
    "inputs": "input",
    "replies": "reply",
    "reprocessed": "reprocessed",
    "feedback": "feedback",
    "shadow": "shadow",
}
"""Path segment -> the role stored in each record (``shadow``: a canary's answer to a
mirrored copy in shadow mode, which reaches no consumer but the log)."""
DEFAULT_RETENTION_S: Final = 30 * 86400
MAX_RETENTION_S: Final = 9999 * 86400
MAX_REDACT: Final = 16
MAX_LATENCY_MS: Final = 86_400_000.0
"""A latency above a day is not a measurement: stored as null."""
_REDACT_PATH: Final = re.compile(r"^\$(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[(?:\d+|\*)\])+$")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_TRACEPARENT: Final = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class LogSettings:
    """One AIService's ``spec.decisionLog``, as its sink URL carries it."""

    sample_rate: float = 1.0
    include_data: bool = False
    retention_s: int = DEFAULT_RETENTION_S
    redact: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, args: Mapping[str, Sequence[str]]) -> LogSettings:
        """Read ``?sample=&data=&retention=&redact=`` (repeated); a bad value is a 400."""

        def one(key: str) -> str | None:
            values = args.get(key) or []
            return values[-1] if values else None

        sample = one("sample")
        data = one("data")
        retention = one("retention")
        try:
            rate = float(sample) if sample is not None else 1.0
        except ValueError:
            raise InvalidEvent(f"sample must be a number, got {str(sample)[:40]!r}") from None
        if not 0 < rate <= 1:
            raise InvalidEvent(f"sample must be in (0, 1], got {rate}")
        if data not in (None, "true", "false"):
            raise InvalidEvent(f"data must be true or false, got {str(data)[:40]!r}")
        try:
            seconds = int(retention) if retention is not None else DEFAULT_RETENTION_S
        except ValueError:
            raise InvalidEvent(f"retention must be seconds, got {str(retention)[:40]!r}") from None
        if not 0 < seconds <= MAX_RETENTION_S:
            raise InvalidEvent(f"retention must be 1..{MAX_RETENTION_S} seconds, got {seconds}")
        redact = tuple(args.get("redact") or ())
        if len(redact) > MAX_REDACT:
            raise InvalidEvent(f"at most {MAX_REDACT} redact paths")
        for path in redact:
            if not _REDACT_PATH.match(path):
                raise InvalidEvent(f"redact path {path[:80]!r} is not a JSON path like $.a.b")
        return cls(rate, data == "true", seconds, redact)


@dataclass(frozen=True)
class Decision:
    """One record of the decision log, ready to store."""

    namespace: str
    name: str
    role: str
    source: str
    event_id: str
    type: str
    key: str
    causation: str | None
    correlation: str
    trace_id: str | None
    model_version: str | None
    revision: str | None
    latency_ms: float | None
    data: Any
    """The (redacted) data, or None when the AIService keeps no data."""
    data_hash: str
    attributes: dict[str, Any]
    """Every context attribute and extension (never the data)."""
    event_time: str | None
    received_at: int
    expires_at: int
    run_id: str | None = None
    corrects: str | None = None
    label: str | None = None
    """For feedback: the label it gives; for decisions: the ``label`` of the output."""


def chain_sampled(correlation: str, rate: float) -> bool:
    """Whether a chain is kept: the same answer for every event of it, in every service
    (a chain kept at rate r is kept at every rate above r)."""
    if rate >= 1:
        return True
    digest = hashlib.sha256(correlation.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def trace_id_of(traceparent: object) -> str | None:
    """The 32-hex trace id of a W3C ``traceparent``, or None."""
    match = _TRACEPARENT.match(str(traceparent or "").strip().lower())
    return match.group(1) if match else None


def latency_ms(value: object) -> float | None:
    """The ``aisvclatencyms`` extension as milliseconds, or None when it is not a finite
    number from 0 to a day: decision pages and ``aisvc trace -o json`` never see
    ``inf``/``NaN`` (the attribute itself stays in ``attributes`` as sent)."""
    try:
        number = float(str(value)) if value is not None else None
    except ValueError:
        return None
    if number is None or not math.isfinite(number) or not 0 <= number <= MAX_LATENCY_MS:
        return None
    return number


def _text(value: object, limit: int) -> str:
    """``value`` as text for a column: at most ``limit`` characters, a lone surrogate
    (valid in JSON, not in UTF-8) replaced by U+FFFD so that every database takes it."""
    return _SURROGATE.sub("\ufffd", str(value)[:limit])


def _revision(role: str, source: str, document: Mapping[str, Any]) -> str | None:
    """A reply's source is ``/aiservices/<ns>/<name>/<revision>``; inputs may carry one."""
    explicit = document.get(contract.EXT_REVISION)
    if explicit:
        return str(explicit)
    if role in ("reply", "reprocessed", "shadow"):
        parts = source.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "aiservices":
            return parts[3]
    return None


def to_decision(
    event: CloudEvent,
    *,
    namespace: str,
    name: str,
    role: str,
    settings: LogSettings,
    received_at: int,
    run_id: str | None = None,
) -> Decision | None:
    """The record for ``event``, or None when its chain is not sampled. Feedback is always
    kept: it is rare, and its chain is the decision's, which the store cannot see here."""
    source, event_id = event.get_source(), event.get_id()
    key = contract.event_key(source, event_id)
    document = event_to_dict(event)
    correlation = str(document.get(contract.EXT_CORRELATION) or "") or key
    if role != "feedback" and not chain_sampled(correlation, settings.sample_rate):
        return None
    data = event.get_data()
    attributes = {k: v for k, v in document.items() if k not in ("data", "data_base64")}
    kept, hashed = kept_data(event, settings.include_data, settings.redact)
    label: str | None = None
    if isinstance(data, Mapping) and isinstance(data.get("label"), str):
        label = _text(data["label"], 200)
    causation = document.get(contract.EXT_CAUSATION)
    if role == "feedback" and isinstance(data, Mapping):
        # Feedback names the decision it is about: that is its cause.
        decision_id = data.get("decisionId")
        if isinstance(decision_id, str) and decision_id:
            causation = _text(decision_id, 2048)
    return Decision(
        namespace=namespace,
        name=name,
        role=role,
        source=source,
        event_id=event_id,
        type=event.get_type(),
        key=key,
        causation=str(causation) if causation else None,
        correlation=correlation,
        trace_id=trace_id_of(document.get(contract.EXT_TRACEPARENT)),
        model_version=str(document[contract.EXT_MODEL_VERSION])
        if document.get(contract.EXT_MODEL_VERSION)
        else None,
        revision=_revision(role, source, document),
        latency_ms=latency_ms(document.get(contract.EXT_LATENCY_MS)),
        data=kept,
        data_hash=hashed,
        attributes=attributes,
        event_time=str(document["time"]) if document.get("time") else None,
        received_at=received_at,
        expires_at=received_at + settings.retention_s * 1_000_000,
        run_id=run_id,
        corrects=str(document[contract.EXT_CORRECTS])
        if document.get(contract.EXT_CORRECTS)
        else None,
        label=label,
    )
