"""The text a text function reads from an event: ``{"text": "<non-empty string>"}``.

Shared by the text functions (sentiment, topic) so that both refuse the same payloads
with the same reasons and field names.
"""

from __future__ import annotations

import re
from typing import Any, Final

MAX_TEXT_CHARS = 20_000
"""Longer texts are refused: the encoder reads only the first 256 tokens (~1,000-1,500
characters) anyway, and tokenising megabytes would stall the batch for everyone."""
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
"""JSON may escape half of a UTF-16 pair (``"\\ud83d"``); that is not text, and the
tokenizer raises on it (a 500, retried and dead-lettered as the function's fault)."""


class InputError(ValueError):
    """The event data is not ``{"text": "<non-empty string>"}``; ``field`` names the culprit."""

    def __init__(self, reason: str, field: str = "text") -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def text_from(data: Any) -> str:
    """The text to score from one event's JSON data, or :class:`InputError` saying why not."""
    if not isinstance(data, dict):
        raise InputError(
            f'data must be a JSON object like {{"text": "..."}}, got {_json_type(data)}', "data"
        )
    if "text" not in data:
        raise InputError('data has no "text" field')
    text = data["text"]
    if not isinstance(text, str):
        raise InputError(f'"text" must be a string, got {_json_type(text)}')
    if not text.strip():
        raise InputError('"text" is empty')
    surrogate = _LONE_SURROGATE.search(text)
    if surrogate is not None:
        raise InputError(
            f'"text" holds a lone surrogate (U+{ord(surrogate.group()):04X} at character '
            f"{surrogate.start()}), half of a UTF-16 pair: it is not valid Unicode text"
        )
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(
            f'"text" has {len(text)} characters; at most {MAX_TEXT_CHARS} are accepted'
        )
    return text
