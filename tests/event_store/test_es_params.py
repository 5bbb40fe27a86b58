"""The query API's parameters through real HTTP: an odd number or time is a 400 naming
the parameter (one reader, :mod:`aiservice_functions.event_store.params`), never a 500."""

from __future__ import annotations

import httpx
import pytest
from aiservice_functions.event_store import params

from tests.support.event_store import AUTH

HUGE = "9" * 23
DECISIONS = "/v1/namespaces/shop/aiservices/sentiment/decisions"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        (f"/v1/events?cursor={HUGE}", "cursor must be a whole number"),
        ("/v1/events?cursor=%C2%B2", "cursor must be a whole number"),
        (f"/v1/events?code={HUGE}", "code must be a whole number from 0 to 999"),
        ("/v1/events?limit=%D9%A3", "limit must be a whole number"),  # Arabic-Indic 3
        ("/v1/stats?since=0001-01-01T00:00:00%2B14:00", "since must be an RFC 3339 time"),
        ("/v1/stats?until=9999-12-31T23:59:59-14:00", "until must be an RFC 3339 time"),
        (f"{DECISIONS}?after={HUGE}", "after must be a whole number"),
        (f"{DECISIONS}?limit=%C2%B2", "limit must be a whole number"),
        (f"{DECISIONS}?since=0001-01-01T00:00:00%2B14:00", "since must be an RFC 3339 time"),
        (f"{DECISIONS}/export?until=9999-12-31T23:59:59-14:00", "until must be"),
    ],
)
def test_odd_parameters_are_a_400_naming_them(
    server: str, client: httpx.Client, path: str, reason: str
) -> None:
    response = client.get(server + path, headers=AUTH)
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]


def test_replay_seqs_and_numbers_are_bounded(server: str, client: httpx.Client) -> None:
    for body, reason in [
        ({"seqs": [10**23]}, "seqs"),
        ({"all": True, "concurrency": HUGE}, "concurrency must be a whole number"),
        ({"all": True, "rate": "1e999"}, "rate must be a finite number"),
    ]:
        response = client.post(f"{server}/v1/replays", json=body, headers=AUTH)
        assert response.status_code == 400, (body, response.text)
        assert reason in response.json()["error"]


def test_the_reader() -> None:
    assert params.integer({"n": " 42 "}, "n") == 42
    assert params.integer({"n": ""}, "n") is None
    assert params.timestamp({"t": "1970-01-01T00:00:01Z"}, "t") == 1_000_000
    assert params.cursor({"cursor": "17"}) == "17"
    assert params.console_path("/console/dead-letters?code=500") == "/console/dead-letters?code=500"
    for bad in ("//evil.example/", "/console/\r\nX: y", "/console\\..", "https://x/console"):
        assert params.console_path(bad) == "/console/"
    for value in ("²", "٣", "1" * 20, "1.0", "0x10", str(params.INT64_MAX + 1)):
        with pytest.raises(params.ParamError, match=r"^n must be a whole number"):
            params.integer({"n": value}, "n")
