"""The binary-mode reply fast path writes exactly what the SDK-based path writes."""

from __future__ import annotations

import re
from typing import Any

import echo_fn
import pytest
from aiservice_functions.cloudevents_http import parse_request, render_response
from aiservice_functions.runtime.app import FunctionService, _reply_writer
from aiservice_functions.runtime.reply import BinaryReplyWriter

from tests.support.runtime import config_for

INCOMING = parse_request(
    {
        "ce-id": "in-1",
        "ce-source": "/clients/a",
        "ce-type": "com.example.request",
        "ce-specversion": "1.0",
        "ce-traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "ce-aisvchops": "3",
        "content-type": "application/json",
    },
    b"{}",
).event


@pytest.mark.parametrize(
    "data",
    [{"risk": 0.5, "label": "ok", "note": 'é "q" 100%'}, [1, 2], "text", 7, b"\x00\xff"],
)
@pytest.mark.parametrize(
    "trace", [{}, {"tracestate": "vendor=a b%c,ü=1", "traceparent": "00-from-header-01"}]
)
def test_fast_binary_reply_matches_the_sdk_rendering(data: Any, trace: dict[str, str]) -> None:
    config = config_for(echo_fn.function, reply_type="com.example.scored ü", model_version="v 2%")
    service = FunctionService(echo_fn.function, config)
    writer = _reply_writer(config)
    assert writer is not None
    expected = render_response(service.reply_event(INCOMING, data, trace), "binary")
    fixed = {"type": config.reply_type, "source": config.reply_source, "modelversion": "v 2%"}
    got = writer.write(data, FunctionService._reply_extensions(INCOMING, trace))
    assert got[0] == expected[0] and got[2] == expected[2]
    unique = ("ce-id", "ce-time")
    assert {k: v for k, v in got[1].items() if k not in unique} == {
        k: v for k, v in expected[1].items() if k not in unique
    }
    assert re.fullmatch(r"[0-9a-f-]{36}", got[1]["ce-id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", got[1]["ce-time"])
    # The written reply parses back as the event the SDK path would have sent.
    reparsed = parse_request(got[1], got[2]).event
    assert reparsed.get_type() == fixed["type"] and reparsed.get_extension("aisvchops") == "4"
    assert reparsed.get_extension("modelversion") == fixed["modelversion"]


def test_invalid_fixed_attributes_are_refused_when_the_writer_is_made() -> None:
    with pytest.raises(Exception, match="source"):
        BinaryReplyWriter({"type": "t", "source": ""})
    assert _reply_writer(config_for(echo_fn.function, reply_type="")) is None
