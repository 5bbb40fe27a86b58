"""What the decision log keeps of an event's data, and its hash, decided without I/O.

Redaction must hold for every way a sender can encode the data, not only for data
labelled JSON: the function runtime parses a ``text/plain`` body, a body without a
content type, ``data_base64`` and a JSON string holding JSON (see
:func:`aiservice_functions.cloudevents_http.data_json`), so a redacted value could hide
in any of them. With redaction configured, the data is therefore read as the runtime
reads it, the paths are removed from that value, and data that does not parse as JSON
is not kept at all (its hash only). The hash is taken of what is kept after redaction,
so it cannot confirm a guess of a redacted value.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any, Final

from aiservice_functions.cloudevents_http import CloudEvent, InvalidEvent, data_json, loads_json

_REDACT_STEP: Final = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+|\*)\]")
_UNPARSED: Final = object()


def redact(data: Any, paths: Sequence[str]) -> Any:
    """``data`` without the values at ``paths`` (``$.a.b``, ``$.items[0]``, ``$.xs[*].t``)."""
    if not paths:
        return data
    copy = json.loads(json.dumps(data))
    for path in paths:
        steps = [m.group(1) if m.group(1) is not None else m.group(2) for m in
                 _REDACT_STEP.finditer(path[1:])]  # fmt: skip
        _remove(copy, steps)
    return copy


def _remove(node: Any, steps: list[str]) -> None:
    if not steps:
        return
    step, rest = steps[0], steps[1:]
    if isinstance(node, dict):
        if step in node:
            if rest:
                _remove(node[step], rest)
            else:
                del node[step]
    elif isinstance(node, list):
        indexes = range(len(node)) if step == "*" else [int(step)] if step.isdigit() else []
        if not rest:
            for i in sorted((i for i in indexes if i < len(node)), reverse=True):
                del node[i]
            return
        for i in indexes:
            if i < len(node):
                _remove(node[i], rest)


def data_hash(data: Any) -> str:
    """sha256 of ``data``: canonical JSON for a JSON value, bytes as they are. A lone
    surrogate (valid in JSON text, not in UTF-8) is hashed as its UTF-8-like bytes."""
    if isinstance(data, (bytes, bytearray)):
        raw = bytes(data)
    else:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        raw = text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


def json_view(event: CloudEvent) -> Any:
    """The data as the function runtime decodes it, or ``_UNPARSED`` when it does not
    parse as JSON. A JSON string that itself holds JSON is read as that JSON."""
    try:
        value = data_json(event)
    except InvalidEvent:
        return _UNPARSED
    if isinstance(value, str):
        try:
            inner = loads_json(value, "data")
        except InvalidEvent:
            return value
        if isinstance(inner, (dict, list)):
            return inner
    return value


def kept_data(event: CloudEvent, include: bool, paths: Sequence[str]) -> tuple[Any, str]:
    """``(data to store or None, its hash)`` for one event under ``spec.decisionLog``.

    Without redaction the data is kept as sent (bytes as ``{"base64": ...}``) and hashed
    as sent. With redaction the JSON view is redacted, kept, and the redacted value
    hashed; data that does not parse is not kept and its bytes are hashed.
    """
    data = event.get_data()
    if not paths:
        if not include or data is None:
            return None, data_hash(data if data is not None else b"")
        if isinstance(data, (bytes, bytearray)):
            return {"base64": base64.b64encode(bytes(data)).decode("ascii")}, data_hash(data)
        return data, data_hash(data)
    view = json_view(event)
    if view is _UNPARSED:
        raw = (
            data
            if isinstance(data, (bytes, bytearray))
            else str(data).encode("utf-8", "surrogatepass")
        )
        return None, data_hash(raw)
    redacted = redact(view, paths)
    return (redacted if include else None), data_hash(redacted)
