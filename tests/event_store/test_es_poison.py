"""Poison events at event-store ingest: a 4xx with a reason or stored, never a 5xx."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from aiservice_functions import contract
from hypothesis import HealthCheck, given, settings

from tests.support.event_store import AUTH, NS, SVC, dead_letter_headers
from tests.support.poison import DEEP_ARRAY, SURROGATE_JSON, requests_

PATH = contract.dead_letter_path(NS, SVC)


def test_deeply_nested_dead_letter_is_400(server: str, client: httpx.Client) -> None:
    response = client.post(server + PATH, content=DEEP_ARRAY, headers=dead_letter_headers("deep"))
    assert response.status_code == 400
    assert "nests deeper" in response.json()["error"]


def test_lone_surrogate_dead_letter_is_stored_and_read_back(
    server: str, client: httpx.Client
) -> None:
    response = client.post(
        server + PATH, content=SURROGATE_JSON, headers=dead_letter_headers("surrogate")
    )
    assert response.status_code == 201, response.text
    seq = response.json()["seq"]
    detail = client.get(f"{server}/v1/events/{seq}", headers=AUTH).json()
    assert detail["event"]["data"] == {"text": "\ud800"}


def test_fuzz_ingest_is_never_5xx(make_server_url: Callable[..., str]) -> None:
    base = make_server_url()
    with httpx.Client(timeout=30) as client:

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(request=requests_())
        def check(request: tuple[dict[str, str], bytes]) -> None:
            headers, body = request
            raw = {k: v.encode("latin-1") for k, v in headers.items()}  # as sent on the wire
            response = client.post(base + PATH, content=body, headers=raw)
            assert response.status_code < 500, response.text
            if response.status_code >= 400:
                assert response.json()["error"]

        check()
        assert client.get(base + "/health/readiness").status_code == 200
