"""Parsing and rendering CloudEvents 1.0 HTTP messages (no server needed here)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import pytest
from aiservice_functions.cloudevents_http import (
    InvalidEvent,
    Mode,
    data_bytes,
    data_json,
    data_text,
    event_to_dict,
    make_event,
    parse_request,
    render_response,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BINARY = {
    "ce-id": "evt-1",
    "ce-source": "/tests",
    "ce-type": "com.example.request",
    "ce-specversion": "1.0",
    "content-type": "application/json",
}


def structured(**doc: Any) -> tuple[dict[str, str], bytes]:
    base: dict[str, Any] = {
        "id": "evt-1",
        "source": "/tests",
        "type": "com.example.request",
        "specversion": "1.0",
    }
    base.update(doc)
    base = {k: v for k, v in base.items() if v is not ...}
    return {"Content-Type": "application/cloudevents+json"}, json.dumps(base).encode()


def refused(headers: dict[str, str], body: bytes, status: int = 400) -> str:
    with pytest.raises(InvalidEvent) as err:
        parse_request(headers, body)
    assert err.value.status == status
    return err.value.reason


# --- binary mode ------------------------------------------------------------------


def test_binary_json_roundtrip_keeps_attributes_extensions_and_unicode() -> None:
    headers = {
        **BINARY,
        "Ce-Time": "2024-05-01T10:00:00.5+02:00",
        "ce-traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "ce-subject": "caf%C3%A9%20%F0%9F%98%80",
    }
    parsed = parse_request(headers, '{"text": "I love it 😀"}'.encode())
    assert parsed.mode == "binary"
    event = parsed.event
    assert event.get_id() == "evt-1"
    assert event.get_subject() == "café 😀"
    assert event.get_extension("traceparent").startswith("00-0af7")
    assert data_json(event) == {"text": "I love it 😀"}
    status, out_headers, body = render_response(event, "binary")
    assert status == 200
    assert out_headers["content-type"] == "application/json"
    assert out_headers["ce-subject"] == "caf%C3%A9%20%F0%9F%98%80"
    assert json.loads(body) == {"text": "I love it 😀"}
    again = parse_request(out_headers, body).event
    assert again.get_time() == event.get_time()
    assert again.get_attributes() == event.get_attributes()


def test_binary_without_time_stays_without_time() -> None:
    event = parse_request(BINARY, b"{}").event
    assert "time" not in event.get_attributes()


def test_binary_wsgi_latin1_header_is_read_as_utf8() -> None:
    raw = "😀".encode().decode("latin-1")  # how WSGI hands over raw UTF-8 header bytes
    event = parse_request({**BINARY, "ce-subject": raw}, b"{}").event
    assert event.get_subject() == "😀"


def test_binary_text_and_opaque_bodies() -> None:
    text = parse_request({**BINARY, "content-type": "text/plain; charset=utf-8"}, "héllo".encode())
    assert text.event.get_data() == "héllo"
    assert data_text(text.event) == "héllo"
    blob = bytes(range(256))
    opaque = parse_request({**BINARY, "content-type": "application/octet-stream"}, blob)
    assert data_bytes(opaque.event) == blob
    _, headers, body = render_response(opaque.event, "binary")
    assert body == blob and headers["content-type"] == "application/octet-stream"


def test_binary_empty_body_has_no_data() -> None:
    event = parse_request(BINARY, b"").event
    assert event.get_data() is None
    assert data_json(event) is None and data_text(event) is None and data_bytes(event) == b""


def test_binary_without_content_type_is_opaque_but_readable_as_json() -> None:
    headers = {k: v for k, v in BINARY.items() if k != "content-type"}
    event = parse_request(headers, b'{"a": 1}').event
    assert event.get_data() == b'{"a": 1}'
    assert data_json(event) == {"a": 1}
    _, out, _ = render_response(event, "binary")
    assert out["content-type"] == "application/octet-stream"


@pytest.mark.parametrize("missing", ["ce-id", "ce-source", "ce-type", "ce-specversion"])
def test_binary_missing_required_attribute(missing: str) -> None:
    headers = {k: v for k, v in BINARY.items() if k != missing}
    assert missing[3:] in refused(headers, b"{}")


@pytest.mark.parametrize("empty", ["ce-id", "ce-source", "ce-type"])
def test_binary_empty_required_attribute(empty: str) -> None:
    assert empty[3:] in refused({**BINARY, empty: ""}, b"{}")


@pytest.mark.parametrize("version", ["0.3", "2.0", "1", "1.0 "])
def test_unknown_specversion(version: str) -> None:
    assert "specversion" in refused({**BINARY, "ce-specversion": version}, b"{}")
    assert "specversion" in refused(*structured(specversion=version))


@pytest.mark.parametrize(
    "value", ["yesterday", "2024-01-01", "2024-01-01T00:00:00", "2024-13-01T00:00:00Z"]
)
def test_malformed_time(value: str) -> None:
    assert "time" in refused({**BINARY, "ce-time": value}, b"{}")
    assert "time" in refused(*structured(time=value))


@pytest.mark.parametrize("name", ["ce-bad_name", "ce-with-dash", "ce-ünï"])
def test_bad_extension_name(name: str) -> None:
    assert "extension" in refused({**BINARY, name: "x"}, b"{}")


def test_invalid_json_body_with_json_content_type() -> None:
    assert "JSON" in refused(BINARY, b"{not json")


def test_invalid_utf8_where_text_is_required() -> None:
    assert "UTF-8" in refused(BINARY, b'{"a": "\xff"}')
    assert "UTF-8" in refused({**BINARY, "content-type": "text/plain"}, b"\xff\xfe")
    assert "UTF-8" in refused({**BINARY, "ce-subject": "%FF"}, b"{}")
    assert "UTF-8" in refused({"content-type": "application/cloudevents+json"}, b"\xff")


def test_ce_datacontenttype_header_is_refused() -> None:
    assert "Content-Type" in refused({**BINARY, "ce-datacontenttype": "text/plain"}, b"x")


def test_not_a_cloudevent_at_all() -> None:
    assert "not a CloudEvent" in refused({"content-type": "application/json"}, b"{}")


def test_batched_mode_is_refused_with_reason() -> None:
    reason = refused({"content-type": "application/cloudevents-batch+json"}, b"[]", 415)
    assert "batch" in reason


def test_other_structured_format_is_refused() -> None:
    refused({"content-type": "application/cloudevents+xml"}, b"<e/>", 415)


# --- structured mode --------------------------------------------------------------


def test_structured_json_roundtrip() -> None:
    headers, body = structured(
        data={"text": "ok ✓"}, datacontenttype="application/json", traceparent="00-ab"
    )
    parsed = parse_request(
        {**headers, "content-type": "application/cloudevents+json; charset=utf-8"}, body
    )
    assert parsed.mode == "structured"
    assert data_json(parsed.event) == {"text": "ok ✓"}
    _, out_headers, out_body = render_response(parsed.event, "structured")
    assert out_headers["content-type"] == "application/cloudevents+json"
    doc = json.loads(out_body)
    assert doc["data"] == {"text": "ok ✓"} and doc["traceparent"] == "00-ab"
    assert "time" not in doc


def test_structured_ce_headers_are_ignored() -> None:
    headers, body = structured(data={"a": 1})
    event = parse_request({**headers, "ce-id": "other"}, body).event
    assert event.get_id() == "evt-1"


def test_structured_data_base64() -> None:
    payload = b"\x00\x01binary\xff"
    event = parse_request(*structured(data_base64=base64.b64encode(payload).decode())).event
    assert data_bytes(event) == payload
    assert event_to_dict(event)["data_base64"] == base64.b64encode(payload).decode()
    _, headers, body = render_response(event, "binary")
    assert body == payload and headers["content-type"] == "application/octet-stream"


def test_structured_data_and_data_base64_together() -> None:
    assert "mutually exclusive" in refused(*structured(data={"a": 1}, data_base64="AA=="))


def test_structured_bad_base64() -> None:
    assert "base64" in refused(*structured(data_base64="not base64!"))


@pytest.mark.parametrize("body", [b"{nope", b"[1,2]", b'"str"', b""])
def test_structured_body_not_a_json_object(body: bytes) -> None:
    refused({"content-type": "application/cloudevents+json"}, body)


@pytest.mark.parametrize("attr", ["id", "source", "type", "specversion"])
def test_structured_required_attribute_missing_null_or_wrong_type(attr: str) -> None:
    assert attr in refused(*structured(**{attr: ...}))
    assert attr in refused(*structured(**{attr: None}))
    assert attr in refused(*structured(**{attr: 7}))


def test_structured_extension_value_types() -> None:
    event = parse_request(*structured(flag=True, count=3, name="x", gone=None)).event
    assert event.get_extension("flag") is True and event.get_extension("count") == 3
    assert "gone" not in event.get_attributes()
    assert "extension" in refused(*structured(nested={"a": 1}))
    assert "extension" in refused(*structured(UPPER="x"))


def test_structured_text_data_must_be_string() -> None:
    event = parse_request(*structured(datacontenttype="text/plain", data="hi")).event
    assert data_text(event) == "hi"
    _, headers, body = render_response(event, "binary")
    assert body == b"hi" and headers["content-type"] == "text/plain"
    assert "data" in refused(*structured(datacontenttype="text/plain", data={"a": 1}))


def test_structured_without_datacontenttype_is_json() -> None:
    event = parse_request(*structured(data=[1, "two"])).event
    assert data_json(event) == [1, "two"]
    _, headers, body = render_response(event, "binary")
    assert headers["content-type"] == "application/json" and json.loads(body) == [1, "two"]


# --- data helpers and building ----------------------------------------------------


def test_data_json_refuses_unparsable_text() -> None:
    event = parse_request({**BINARY, "content-type": "text/plain"}, b"not json").event
    with pytest.raises(InvalidEvent) as err:
        data_json(event)
    assert err.value.status == 400


def test_make_event_renders_in_both_modes() -> None:
    event = make_event(
        {"type": "com.example.reply", "source": "/svc", "modelversion": "v2"}, {"score": 0.5}
    )
    _, headers, body = render_response(event, "binary")
    assert headers["ce-modelversion"] == "v2" and headers["content-type"] == "application/json"
    assert json.loads(body) == {"score": 0.5}
    _, headers, body = render_response(event, "structured")
    doc = json.loads(body)
    assert doc["type"] == "com.example.reply" and doc["data"] == {"score": 0.5} and doc["id"]


# --- fuzzing: anything either parses or is refused with a 4xx -----------------------

_header_names = st.sampled_from(
    [
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-specversion",
        "ce-time",
        "ce-x",
        "ce-Bad_Ext",
        "content-type",
        "ce-datacontenttype",
        "ce-subject",
        "x-other",
    ]
)
_header_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "1.0",
            "application/json",
            "text/plain",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "%",
            "%E2%82",
        ]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.dictionaries(_header_names, _header_values, max_size=8), body=st.binary(max_size=64)
)
def test_fuzz_binary_headers_and_bodies(headers: dict[str, str], body: bytes) -> None:
    try:
        parsed = parse_request(headers, body)
    except InvalidEvent as err:
        assert 400 <= err.status < 500 and err.reason
        return
    modes: tuple[Mode, ...] = ("binary", "structured")
    for mode in modes:
        _, out_headers, out_body = render_response(parsed.event, mode)
        assert out_headers["content-type"]
        assert parse_request(out_headers, out_body).event.get_id() == parsed.event.get_id()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    doc=st.dictionaries(
        st.sampled_from(
            [
                "id",
                "source",
                "type",
                "specversion",
                "time",
                "data",
                "data_base64",
                "datacontenttype",
                "subject",
                "ext",
                "Bad",
            ]
        ),
        _json | st.sampled_from(["1.0", "2024-01-01T00:00:00Z", "AA==", "text/plain"]),
        max_size=9,
    )
)
def test_fuzz_structured_documents(doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    try:
        parsed = parse_request({"content-type": "application/cloudevents+json"}, body)
    except InvalidEvent as err:
        assert 400 <= err.status < 500 and err.reason
        return
    _, out_headers, out_body = render_response(parsed.event, "structured")
    assert event_to_dict(parse_request(out_headers, out_body).event) == event_to_dict(parsed.event)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=_JSON_VALUES | st.binary(max_size=64),
    content_type=st.sampled_from(
        [None, "application/json", "text/plain", "application/vnd.x+json; charset=utf-8",
         "application/octet-stream"]
    ),
    extensions=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True).filter(
            lambda n: n not in ("data", "time", "id", "source", "type", "specversion",
                                "subject", "dataschema", "datacontenttype")
        ),
        st.text(max_size=10) | st.integers() | st.booleans(),
        max_size=3,
    ),
    offset=st.sampled_from(["Z", "+00:00", "+05:30", "-08:00"]),
)  # fmt: skip
def test_event_to_dict_is_what_the_json_format_writes(
    data: Any, content_type: str | None, extensions: dict[str, Any], offset: str
) -> None:
    """The direct rendering equals the SDK's JSON format parsed back, for every kind of
    data and attribute (so the store keeps exactly what the format defines)."""
    from aiservice_functions.cloudevents_http import ReceivedEvent
    from cloudevents.core.formats.json import JSONFormat

    attributes: dict[str, Any] = {
        "specversion": "1.0", "id": "e1", "source": "/s", "type": "t", **extensions,
        "time": datetime.fromisoformat(f"2026-01-02T03:04:05.123456{offset}"),
    }  # fmt: skip
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    event = ReceivedEvent(attributes, data)
    assert event_to_dict(event) == json.loads(JSONFormat().write(event))
