"""Every shipped function's decode under poison events: what the runtime accepted is
either read (and, for the text functions, tokenized by the real MiniLM tokenizer without
raising) or refused with a 4xx naming the problem, never an exception that would be a
500 (retried, dead-lettered and counted against a canary as the function's fault)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiservice_functions import digits, fraud
from aiservice_functions.cloudevents_http import InvalidEvent, parse_request
from aiservice_functions.models.minilm import model_dir
from aiservice_functions.runtime.function import Rejected
from aiservice_functions.sentiment import hooks as sentiment
from aiservice_functions.topic import hooks as topic
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from tests.support.poison import (
    SURROGATE_JSON,
    binary_headers,
    json_values,
    requests_,
    structured,
)

DECODERS: dict[str, Callable[[Any], Any]] = {
    "sentiment": sentiment.decode,
    "topic": topic.decode,
    "fraud": fraud.decode,
    "digits": digits.decode,
}
TEXT_FUNCTIONS = ("sentiment", "topic")
STRUCTURED = {"content-type": "application/cloudevents+json"}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(str(model_dir()))


# Objects shaped like each function's input, with poison in the fields it reads.
_text_like = st.fixed_dictionaries(
    {"text": json_values | st.text(min_size=1)},
    optional={"label": json_values, "score": json_values},
)
_transaction_like = st.fixed_dictionaries(
    {
        "amount": json_values,
        "merchant_category": json_values,
        "hour": json_values,
        "country_mismatch": json_values,
    },
    optional={"transaction_id": json_values, "account_age_days": json_values},
)


# What the digits function reads: image bytes (any bytes, a truncated or odd PNG header)
# or {"image": base64}.
_PNG = b"\x89PNG\r\n\x1a\n"
_image_like = st.one_of(
    st.binary(max_size=256),
    st.binary(max_size=256).map(lambda b: _PNG + b),
    st.binary(max_size=64).map(lambda b: b"\xff\xd8\xff" + b),
)


def _image_request(data: bytes) -> tuple[dict[str, str], bytes]:
    return {**binary_headers(), "content-type": "image/png"}, data


def _shaped(name: str) -> st.SearchStrategy[tuple[dict[str, str], bytes]]:
    if name == "digits":
        as_json = st.fixed_dictionaries({"image": json_values | st.text()}).map(
            lambda v: (binary_headers(), json.dumps(v).encode("utf-8", "surrogatepass"))
        )
        return st.one_of(_image_like.map(_image_request), as_json)
    shape = _transaction_like if name == "fraud" else _text_like
    return shape.map(lambda v: (binary_headers(), json.dumps(v).encode("utf-8", "surrogatepass")))


@pytest.mark.parametrize("name", list(DECODERS))
def test_fuzz_decode_reads_or_refuses_with_a_4xx(name: str, tokenizer: Any) -> None:
    decode = DECODERS[name]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(request=st.one_of(requests_(), _shaped(name)))
    @example(request=(binary_headers(), SURROGATE_JSON))
    @example(request=(STRUCTURED, structured('{"text": "a\\ud83d", "transaction_id": "\\udc00"}')))
    def check(request: tuple[dict[str, str], bytes]) -> None:
        headers, body = request
        raw = {k: v.encode("latin-1").decode("latin-1") for k, v in headers.items()}
        try:
            event = parse_request(raw, body).event
        except InvalidEvent:
            return  # the runtime answers these with a 4xx before decode
        try:
            decoded = decode(event)
        except (Rejected, InvalidEvent) as err:
            assert 400 <= err.status < 500 and err.reason
            return
        if name in TEXT_FUNCTIONS:
            text = decoded if isinstance(decoded, str) else decoded.text
            tokenizer([text], truncation=True, max_length=256)

    check()
