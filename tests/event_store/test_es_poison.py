"""Poison events at event-store ingest: a 4xx with a reason or stored, never a 5xx."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from aiservice_functions import contract
from hypothesis import HealthCheck, example, given, settings

from tests.support.event_store import AUTH, NS, SVC, dead_letter_headers
from tests.support.poison import DEEP_ARRAY, SURROGATE_JSON, requests_

PATH = contract.dead_letter_path(NS, SVC)
DECISIONS = f"/v1/namespaces/{NS}/aiservices/{SVC}/decisions"
LOG_SETTINGS = "?data=true&redact=%24.customer&redact=%24.text"
INGEST_ROUTES = {
    "dead-letters": (PATH, {}),
    "audit": (contract.audit_path(NS, SVC), {}),
    "decision-inputs": (f"{DECISIONS}/inputs{LOG_SETTINGS}", {}),
    "decision-replies": (f"{DECISIONS}/replies{LOG_SETTINGS}", {}),
    "decision-feedback": (f"{DECISIONS}/feedback?data=true", {}),
    "decision-reprocessed": (f"{DECISIONS}/reprocessed?run=fuzz&data=true", AUTH),
}


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


@pytest.mark.parametrize("route", list(INGEST_ROUTES))
def test_fuzz_ingest_is_never_5xx(make_server_url: Callable[..., str], route: str) -> None:
    """Every ingest route: dead letters, audit, and each part of the decision log."""
    base = make_server_url()
    path, auth = INGEST_ROUTES[route]
    with httpx.Client(timeout=30) as client:

        @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(request=requests_())
        @example(request=(dead_letter_headers("s"), SURROGATE_JSON))
        def check(request: tuple[dict[str, str], bytes]) -> None:
            headers, body = request
            raw = {k: v.encode("latin-1") for k, v in headers.items()}  # as sent on the wire
            raw.update({k: v.encode() for k, v in auth.items()})
            response = client.post(base + path, content=body, headers=raw)
            assert response.status_code < 500, response.text
            if response.status_code >= 400:
                assert response.json()["error"]

        check()
        assert client.get(base + "/health/readiness").status_code == 200
