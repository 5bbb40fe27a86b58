"""CloudEvents 1.0 over HTTP: strict parsing and rendering, without a web framework.

The function runtime, the event store and the local broker all read events from HTTP
requests; they share this module so that every one of them refuses the same malformed
messages with the same reasons. It builds on the cloudevents SDK 2.x
(``cloudevents.core``) but validates before handing attributes to it, because the SDK
fills in a missing ``id``/``time`` and silently turns undecodable data into text.

Data model of :class:`ParsedEvent` ``.event.get_data()``:

- ``bytes``: opaque data (``data_base64``, a binary-mode body whose ``Content-Type`` is
  neither JSON nor UTF-8 text, or a binary-mode body without ``Content-Type``);
- ``str``: text, when ``datacontenttype`` is a non-JSON text type;
- any JSON value (dict, list, str, number, bool): when ``datacontenttype`` is JSON, or
  absent in structured mode (where the spec implies ``application/json``);
- ``None``: no data.

Refusals raise :class:`InvalidEvent` with an HTTP status: 400 for a malformed event,
415 for a content mode this module does not speak (batched mode, non-JSON structured
formats). Neither is worth retrying, so Knative dead-letters them at once.

No Flask and no torch here: light consumers import it.

A received event without a ``time`` stays without one: the SDK's constructor stamps
"now" on every event, so received events are :class:`ReceivedEvent`, which reports the
attributes as sent through the SDK's own accessors instead of editing the SDK's state.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, cast
from urllib.parse import unquote_to_bytes

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from aiservice_functions import contract

__all__ = [
    "CloudEvent",
    "InvalidEvent",
    "Mode",
    "ParsedEvent",
    "ReceivedEvent",
    "data_bytes",
    "data_json",
    "data_text",
    "event_to_dict",
    "hops",
    "is_json_content_type",
    "json_bytes",
    "json_text",
    "loads_json",
    "make_event",
    "parse_request",
    "render_response",
]

Mode = Literal["binary", "structured"]

SPECVERSION: Final = "1.0"
REQUIRED: Final = ("id", "source", "type", "specversion")
OPTIONAL: Final = ("datacontenttype", "dataschema", "subject", "time")
STRUCTURED_JSON: Final = "application/cloudevents+json"
BATCH_JSON: Final = "application/cloudevents-batch+json"
OCTET_STREAM: Final = "application/octet-stream"
APPLICATION_JSON: Final = "application/json"

_CE_PREFIX: Final = "ce-"
_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""A control character or a lone surrogate: one search finds either (the common case,
neither, costs one regex scan of each attribute)."""
_JSON_FORMAT_MEDIA = JSONFormat.JSON_CONTENT_TYPE_PATTERN
"""Characters a CloudEvents String must not hold (the type system: U+0000-U+001F,
U+007F-U+009F)."""
_JSON_MEDIA = re.compile(r"^(application|text)/([a-z0-9!#$&^_.+-]+\+)?json$")
# RFC 3339 date-time; fromisoformat alone accepts forms the spec does not (e.g. no zone).
MAX_JSON_DEPTH: Final = 128
"""Deepest nesting of arrays and objects accepted in an event (deeper: 400). Python's
parser and serializer recurse, so an unbounded depth is a crash, not just a slow event."""
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class InvalidEvent(Exception):
    """The HTTP message is not a CloudEvent this service accepts; ``status`` says why."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class ParsedEvent:
    """A validated CloudEvent and the content mode it arrived in (replies use the same)."""

    event: CloudEvent
    mode: Mode


# --- media types ------------------------------------------------------------------


def _media_type(content_type: str | None) -> str:
    """The lower-cased ``type/subtype`` of a Content-Type, without parameters."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def is_json_content_type(content_type: str | None) -> bool:
    """Whether a ``datacontenttype`` says the data is JSON (``*/json``, ``*/*+json``)."""
    return bool(_JSON_MEDIA.match(_media_type(content_type)))


def _is_utf8_text(content_type: str) -> bool:
    if not _media_type(content_type).startswith("text/"):
        return False
    return _charset(content_type) in (None, "utf-8", "utf8", "us-ascii", "ascii")


# --- JSON -------------------------------------------------------------------------


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays/objects deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _loads(text: str, what: str) -> Any:
    """``json.loads`` with a bounded nesting depth; malformed or too deep → 400."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidEvent(f"{what} nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as err:
        raise InvalidEvent(f"{what} is not valid JSON: {err}") from None
    # Only a text with that many brackets can nest that deep: skip the walk otherwise.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth_exceeds(value, MAX_JSON_DEPTH):
        raise InvalidEvent(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def loads_json(text: str, what: str) -> Any:
    """Parse JSON text as events are parsed: bounded depth, :class:`InvalidEvent` (400)
    naming ``what`` when it is malformed or too deep."""
    return _loads(text, what)


def json_text(value: Any, *, compact: bool = True) -> str:
    """``value`` as JSON text that always encodes to UTF-8.

    Non-ASCII characters stay as they are, except when the value holds a lone surrogate
    (JSON allows the escape ``\\ud800``, UTF-8 cannot encode it): then the whole text is
    ASCII-escaped, which parses back to the same value.
    """
    separators = (",", ":") if compact else None
    text = json.dumps(value, ensure_ascii=False, separators=separators)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=separators)
    return text


def json_bytes(value: Any, *, compact: bool = True) -> bytes:
    """``value`` as UTF-8 JSON (see :func:`json_text`)."""
    return json_text(value, compact=compact).encode("utf-8")


# --- parsing ----------------------------------------------------------------------


def parse_request(headers: Mapping[str, str], body: bytes) -> ParsedEvent:
    """Parse one HTTP request into a CloudEvent, or raise :class:`InvalidEvent`.

    ``headers`` may be any mapping (a WSGI header object, a dict); names are matched
    case-insensitively. Values are taken as WSGI gives them (latin-1 decoded bytes).
    """
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered[name.lower()] = value
    content_type = lowered.get("content-type", "")
    media = _media_type(content_type)
    if media == BATCH_JSON:
        raise InvalidEvent(
            "batched content mode (application/cloudevents-batch+json) is not supported: "
            "send one event per request",
            415,
        )
    if media.startswith("application/cloudevents"):
        if media != STRUCTURED_JSON:
            raise InvalidEvent(
                f"structured content mode with format {media!r} is not supported: "
                f"use {STRUCTURED_JSON}",
                415,
            )
        return ParsedEvent(_parse_structured(body), "structured")
    if any(name.startswith(_CE_PREFIX) for name in lowered):
        return ParsedEvent(_parse_binary(lowered, body), "binary")
    raise InvalidEvent(
        "not a CloudEvent: no ce-* headers (binary mode) and Content-Type is not "
        f"{STRUCTURED_JSON} (structured mode)"
    )


def _header_text(name: str, value: str) -> str:
    """Percent-decode a header value (HTTP binding §3.1.3.2) into strict UTF-8."""
    try:
        raw = value.encode("latin-1")  # WSGI: the header's bytes, decoded as latin-1
    except UnicodeEncodeError:
        # aiohttp decodes UTF-8 with surrogateescape: this gives back the very bytes.
        raw = value.encode("utf-8", "surrogateescape")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent(f"header {name}: value is not valid UTF-8") from None


def _parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise InvalidEvent(f"{where}: time must be an RFC 3339 timestamp, got {value!r:.80}")
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"{where}: time is not a valid date-time: {value!r:.80}") from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_attributes(attributes: dict[str, Any], where: str) -> None:
    for name in REQUIRED:
        value = attributes.get(name)
        if value is None or value == "":
            raise InvalidEvent(f"{where}: required attribute {name!r} is missing or empty")
        if not isinstance(value, str):
            raise InvalidEvent(f"{where}: attribute {name!r} must be a string")
    if attributes["specversion"] != SPECVERSION:
        raise InvalidEvent(
            f"{where}: specversion {attributes['specversion']!r:.40} is not supported "
            f"(only {SPECVERSION!r})"
        )
    for name in ("datacontenttype", "dataschema", "subject"):
        if name in attributes:
            value = attributes[name]
            if not isinstance(value, str) or value == "":
                raise InvalidEvent(f"{where}: attribute {name!r} must be a non-empty string")
    for name, value in attributes.items():
        if isinstance(value, str) and _FORBIDDEN.search(value):
            if not _encodable(value):
                raise InvalidEvent(f"{where}: attribute {name!r:.60} holds a lone surrogate")
            raise InvalidEvent(
                f"{where}: attribute {name!r:.60} holds a control character, which the "
                "CloudEvents type system does not allow in a String"
            )
        if name in REQUIRED or name in OPTIONAL:
            continue
        if not _EXTENSION_NAME.match(name):
            raise InvalidEvent(
                f"{where}: extension attribute name {name!r:.60} is invalid: only lower-case "
                "letters a-z and digits are allowed"
            )
        if name == "data":
            raise InvalidEvent(f"{where}: 'data' is reserved and cannot be an extension")
        if isinstance(value, (bool, str, int)):
            continue
        raise InvalidEvent(
            f"{where}: extension attribute {name!r} must be a string, integer or boolean"
        )


class ReceivedEvent(CloudEvent):
    """A CloudEvent as its sender wrote it: no ``time`` unless the sender gave one.

    The SDK validates the attributes (and stamps a ``time`` on its own copy, which this
    class never shows); :meth:`get_attributes` and :meth:`get_time`, which every SDK
    writer goes through, answer with the attributes as sent.
    """

    def __init__(self, attributes: dict[str, Any], data: Any = None) -> None:
        sent = dict(attributes)
        super().__init__(dict(attributes), data)
        self._sent = sent

    def get_attributes(self) -> dict[str, Any]:
        return self._sent

    def get_time(self) -> datetime | None:
        return cast("datetime | None", self._sent.get("time"))


def _build(attributes: dict[str, Any], data: Any, where: str) -> CloudEvent:
    try:
        return ReceivedEvent(attributes, data)
    except (BaseCloudEventException, ValueError, TypeError) as err:
        # Validation above should have caught it; keep the SDK's wording if not.
        raise InvalidEvent(f"{where}: {err}") from None


def _parse_binary(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    where = "binary mode"
    attributes: dict[str, Any] = {}
    for name, value in headers.items():
        if not name.startswith(_CE_PREFIX):
            continue
        attr = name[len(_CE_PREFIX) :]
        if attr == "datacontenttype":
            raise InvalidEvent(
                f"{where}: ce-datacontenttype is not allowed; use the Content-Type header"
            )
        text = _header_text(name, value)
        attributes[attr] = _parse_time(text, f"{where}, header {name}") if attr == "time" else text
    content_type = headers.get("content-type")
    if content_type:
        attributes["datacontenttype"] = content_type
    _check_attributes(attributes, where)
    return _build(attributes, _binary_data(body, content_type), where)


def _binary_data(body: bytes, content_type: str | None) -> Any:
    if not body:
        return None
    if not content_type:
        return bytes(body)
    if is_json_content_type(content_type):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent(
                f"body is not valid UTF-8 though Content-Type is {content_type!r:.80}"
            ) from None
        return _loads(text, f"body (Content-Type {content_type!r:.80})")
    if _is_utf8_text(content_type):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent(
                f"body is not valid UTF-8 though Content-Type is {content_type!r:.80}"
            ) from None
    return bytes(body)


def _parse_structured(body: bytes) -> CloudEvent:
    where = "structured mode"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent(f"{where}: body is not valid UTF-8") from None
    document = _loads(text, f"{where}: body")
    if not isinstance(document, dict):
        raise InvalidEvent(f"{where}: body must be a JSON object")
    has_data = document.get("data") is not None
    has_b64 = document.get("data_base64") is not None
    if has_data and has_b64:
        raise InvalidEvent(f"{where}: 'data' and 'data_base64' are mutually exclusive")
    data = document.pop("data", None)
    data_b64 = document.pop("data_base64", None)
    # JSON null means "absent" for every optional attribute.
    attributes = {k: v for k, v in document.items() if v is not None or k in REQUIRED}
    if "time" in attributes:
        attributes["time"] = _parse_time(attributes["time"], where)
    _check_attributes(attributes, where)
    content_type = attributes.get("datacontenttype")
    if data_b64 is not None:
        if not isinstance(data_b64, str):
            raise InvalidEvent(f"{where}: 'data_base64' must be a string")
        try:
            payload: Any = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEvent(f"{where}: 'data_base64' is not valid base64") from None
    elif data is not None and content_type and not is_json_content_type(content_type):
        if not isinstance(data, str):
            raise InvalidEvent(
                f"{where}: 'data' must be a string when datacontenttype is "
                f"{content_type!r:.80}; use 'data_base64' for bytes"
            )
        if not _encodable(data):
            raise InvalidEvent(f"{where}: text 'data' holds a lone surrogate")
        payload = data
    else:
        payload = data
    return _build(attributes, payload, where)


# --- reading data -----------------------------------------------------------------


def _holds_json_value(event: CloudEvent) -> bool:
    data = event.get_data()
    if isinstance(data, (bytes, bytearray)):
        return False
    content_type = event.get_datacontenttype()
    return content_type is None or is_json_content_type(content_type)


def data_json(event: CloudEvent) -> Any:
    """The event data as a JSON value (``None`` when there is none).

    Bytes and text are decoded and parsed; failure raises :class:`InvalidEvent` (400),
    as data a function cannot read is the sender's fault.
    """
    data = event.get_data()
    if data is None or _holds_json_value(event):
        return data
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else str(data)
    except UnicodeDecodeError:
        raise InvalidEvent("data is not valid UTF-8") from None
    return _loads(text, "data")


def data_text(event: CloudEvent) -> str | None:
    """The event data as text: bytes decoded as UTF-8 (else 400), JSON values serialized."""
    data = event.get_data()
    if data is None:
        return None
    if isinstance(data, (bytes, bytearray)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("data is not valid UTF-8 text") from None
    if isinstance(data, str) and not _holds_json_value(event):
        return data
    return json.dumps(data, ensure_ascii=False)


def data_bytes(event: CloudEvent) -> bytes:
    """The event data as it travels in a binary-mode body (``b""`` when there is none)."""
    data = event.get_data()
    if data is None:
        return b""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str) and not _holds_json_value(event):
        return data.encode("utf-8")
    return json_bytes(data)


# --- building and rendering -------------------------------------------------------


def make_event(attributes: Mapping[str, Any], data: Any = None) -> CloudEvent:
    """A new CloudEvent; ``id`` and ``time`` are generated when not given.

    JSON-valued data gets ``datacontenttype: application/json`` unless one is set,
    so the event renders the same in both modes.
    """
    attrs = dict(attributes)
    if data is not None and not isinstance(data, (bytes, bytearray)):
        attrs.setdefault("datacontenttype", APPLICATION_JSON)
    return CloudEvent(attrs, cast(Any, data))


def _content_type_for(event: CloudEvent) -> str:
    content_type = event.get_datacontenttype()
    if content_type:
        return content_type
    return OCTET_STREAM if isinstance(event.get_data(), (bytes, bytearray)) else APPLICATION_JSON


def event_to_dict(event: CloudEvent) -> dict[str, Any]:
    """The JSON-format (structured mode) representation of an event, as a dict: what
    ``JSONFormat().write`` gives, parsed back. Built directly (the store does this for
    every record it ingests); data is copied through JSON only when it is not plain JSON
    already, so the result never shares a mutable value with the event."""
    out: dict[str, Any] = {}
    for name, value in event.get_attributes().items():
        out[name] = _rfc3339(value) if isinstance(value, datetime) else value
    data = event.get_data()
    if data is None:
        return out
    if isinstance(data, (bytes, bytearray)):
        out["data_base64"] = base64.b64encode(data).decode("ascii")
    elif _JSON_FORMAT_MEDIA.match(out.get("datacontenttype", APPLICATION_JSON)):
        out["data"] = json.loads(json.dumps(data, default=_rfc3339))
    else:
        out["data"] = str(data)
    return out


def _rfc3339(value: object) -> str:
    """A datetime as the JSON format writes it (UTC as ``Z``)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    text = value.isoformat()
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text


def render_response(
    event: CloudEvent, mode: Mode, status: int = 200
) -> tuple[int, dict[str, str], bytes]:
    """Write ``event`` as an HTTP response in ``mode``; Content-Type is always set."""
    if mode == "structured":
        message = ce_http.to_structured(event, JSONFormat())
        headers = dict(message.headers)
        headers["content-type"] = STRUCTURED_JSON
        return status, headers, message.body
    message = ce_http.to_binary(event, JSONFormat())
    headers = dict(message.headers)
    headers["content-type"] = _content_type_for(event)
    return status, headers, data_bytes(event)


def hops(event: CloudEvent) -> int:
    """How many replies led to this event (the ``aisvchops`` extension); 0 when absent
    or not a number, so a malformed count never blocks an event."""
    value = event.get_extension(contract.EXT_HOPS)
    try:
        return max(0, int(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0
