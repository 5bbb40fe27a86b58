"""Poison events at the function runtime: never a 5xx (a 5xx is retried and counts as a
canary error, so a sender could roll a canary back), always a 4xx with a reason or a
reply that encodes. Real HTTP on 127.0.0.1, the torch-free ``echo_fn`` function."""

from __future__ import annotations

from collections.abc import Iterator

import echo_fn
import pytest
import requests
from aiservice_functions.runtime.app import create_app
from hypothesis import HealthCheck, given, settings

from tests.support.poison import (
    DEEP_ARRAY,
    SURROGATE_JSON,
    binary_headers,
    requests_,
    structured,
)
from tests.support.runtime import config_for, serving, wait_ready


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = tmp_path_factory.mktemp("echo") / "model.txt"
    model.write_text("m\n")
    cfg = config_for(echo_fn.function, model_uri=model.as_uri(), max_body_bytes=1 << 20)
    with serving(create_app(echo_fn.function, cfg)) as url:
        wait_ready(url)
        yield url


def test_deeply_nested_binary_data_is_400_with_a_reason(base: str) -> None:
    response = requests.post(f"{base}/", data=DEEP_ARRAY, headers=binary_headers(), timeout=30)
    assert response.status_code == 400
    assert "nests deeper" in response.json()["error"]


def test_deeply_nested_structured_data_is_400_with_a_reason(base: str) -> None:
    body = structured("[" * 100_000)
    headers = {"content-type": "application/cloudevents+json"}
    response = requests.post(f"{base}/", data=body, headers=headers, timeout=30)
    assert response.status_code == 400
    assert "nests deeper" in response.json()["error"]


def test_lone_surrogate_echoed_in_binary_mode_is_answered(base: str) -> None:
    response = requests.post(f"{base}/", data=SURROGATE_JSON, headers=binary_headers(), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["echo"] == "\ud800"  # escaped in the reply, parses back the same


def test_lone_surrogate_in_an_attribute_is_400(base: str) -> None:
    body = b'{"id": "\\ud800", "source": "/s", "type": "t", "specversion": "1.0"}'
    headers = {"content-type": "application/cloudevents+json"}
    response = requests.post(f"{base}/", data=body, headers=headers, timeout=30)
    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests_())
def test_fuzz_poison_is_never_5xx(base: str, request: tuple[dict[str, str], bytes]) -> None:
    headers, body = request
    response = requests.post(f"{base}/", data=body, headers=headers, timeout=30)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]
