"""Poison inputs and hypothesis strategies shared by the tests of every CloudEvents entry
point (function runtime, local broker ingress, event-store ingest): each must answer these
with a 2xx or a 4xx carrying a reason, never a 5xx, and keep serving."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

DEEP_ARRAY = b"[" * 100_000
"""Nested far past any parser's recursion limit."""
SURROGATE_JSON = b'{"text": "\\ud800"}'
"""Valid JSON whose string holds a lone surrogate: decodes in Python, cannot encode to UTF-8."""


def binary_headers(event_id: str = "poison-1", **extra: str) -> dict[str, str]:
    headers = {
        "ce-id": event_id,
        "ce-source": "/tests/poison",
        "ce-type": "com.example.request",
        "ce-specversion": "1.0",
        "content-type": "application/json",
    }
    headers.update(extra)
    return headers


def structured(data_text: str, event_id: str = "poison-1") -> bytes:
    """A structured-mode body whose ``data`` is the raw JSON text ``data_text``."""
    head = json.dumps(
        {
            "id": event_id,
            "source": "/tests/poison",
            "type": "com.example.request",
            "specversion": "1.0",
        }
    )
    return f'{head[:-1]}, "data": {data_text}}}'.encode()


# JSON values with the awkward parts: any unicode (lone surrogates included), big and
# tiny numbers, deep-ish nesting.
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec=None), max_size=12),
    st.sampled_from(["\ud800", "\udfff", "\x00", "\u2028", "\ufeff", "é" * 3]),
)
json_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def _deep(n: int) -> str:
    return "[" * n + "]" * n


json_texts = st.one_of(
    json_values.map(lambda v: json.dumps(v)),
    st.integers(min_value=100, max_value=5000).map(_deep),
    st.sampled_from(['"\\ud800"', '{"a": "\\udc00x"}', "1e999", "-0", "[" * 3000, '"\\u0000"']),
)

header_names = st.sampled_from(
    [
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-specversion",
        "ce-time",
        "ce-traceparent",
        "ce-Bad_Name",
        "ce-aisvcrevision",
        "ce-aisvcreplay",
        "ce-knativeerrorcode",
        "ce-knativeerrordata",
        "content-type",
        "ce-datacontenttype",
        "x-any",
    ]
)
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24).map(str.strip),
    st.text(st.characters(min_codepoint=0xA0, max_codepoint=0xFF), max_size=6).map(str.strip),
    st.sampled_from(
        [
            "1.0",
            "application/json",
            "text/plain; charset=latin-1",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "2024-01-01T00:00:00Z",
            "%FF",
            "%ED%A0%80",
            "99999999999999999999999999999",
            "-5",
            "nan",
            "true",
        ]
    ),
)


@st.composite
def requests_(draw: Any) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a request: a valid event with odd data, or odd headers and bodies."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        headers = binary_headers(
            draw(
                st.text(
                    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8
                )
            )
        )
        headers.update(draw(st.dictionaries(header_names, header_values, max_size=3)))
        return headers, draw(json_texts).encode("utf-8", "surrogatepass")
    if choice == 1:
        return {"content-type": "application/cloudevents+json"}, structured(draw(json_texts))
    headers = draw(st.dictionaries(header_names, header_values, max_size=7))
    return headers, draw(st.one_of(st.binary(max_size=64), json_texts.map(str.encode)))
