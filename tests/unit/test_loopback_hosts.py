"""The DNS-rebinding rule every loopback listener applies to the Host header."""

from __future__ import annotations

import pytest
from aiservice_functions.loopback_hosts import host_refusal, origin_refusal


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:8480", "localhost:8480", "LOCALHOST:8480", "[::1]:8480", " 127.0.0.1:8480 "],
)
def test_the_loopback_names_of_the_listener_are_answered(host: str) -> None:
    assert host_refusal(host, "127.0.0.1", 8480) is None


@pytest.mark.parametrize(
    ("host", "why"),
    [
        (None, "required"),
        ("", "required"),
        ("rebind.attacker.example:8480", "does not name"),
        ("rebind.attacker.example", "does not name"),
        ("127.0.0.1.attacker.example:8480", "does not name"),
        ("localhost.:8480", "does not name"),
        ("user@127.0.0.1:8480", "does not name"),
        ("10.0.0.1:8480", "does not name"),
        ("127.0.0.1:8481", "another port"),
        ("127.0.0.1", "another port"),
        ("[::1]x:8480", "malformed"),
        ("[::1:8480", "malformed"),
    ],
)
def test_other_hosts_are_refused_with_the_reason(host: str | None, why: str) -> None:
    refused = host_refusal(host, "127.0.0.1", 8480)
    assert refused is not None and why in refused


def test_the_port_may_be_left_out_on_port_80_and_the_bound_address_is_a_name() -> None:
    assert host_refusal("localhost", "127.0.0.1", 80) is None
    assert host_refusal("127.0.0.2:9000", "127.0.0.2", 9000) is None
    assert host_refusal("[::1]:9000", "::1", 9000) is None


def test_a_listener_not_on_loopback_answers_no_host() -> None:
    assert host_refusal("127.0.0.1:8090", "0.0.0.0", 8090) is not None


def test_an_origin_must_be_the_listener_itself_whatever_the_host() -> None:
    assert origin_refusal("http://127.0.0.1:8480", "127.0.0.1", 8480) is None
    assert origin_refusal("http://localhost:8480", "127.0.0.1", 8480) is None
    for foreign in (
        "http://rebind.attacker.example:8480",
        "https://127.0.0.1:8480",
        "http://127.0.0.1:8481",
        "null",
        "http://127.0.0.1:8480/path",
    ):
        assert origin_refusal(foreign, "127.0.0.1", 8480) is not None, foreign
