"""The package-level helpers both servers and the operator share: RFC 3339 timestamps and
the hop count of a reply chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiservice_functions.cloudevents_http import hops, make_event, parse_request
from aiservice_functions.timestamps import parse_time, rfc3339

MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_rfc3339_writes_utc_at_the_asked_precision() -> None:
    assert rfc3339(MOMENT) == "2026-01-02T03:04:05.678Z"
    assert rfc3339(MOMENT, digits=6) == "2026-01-02T03:04:05.678901Z"
    assert rfc3339(MOMENT, digits=0) == "2026-01-02T03:04:05Z"
    east = MOMENT.astimezone(timezone(timedelta(hours=2)))
    assert rfc3339(east) == rfc3339(MOMENT)


def test_rfc3339_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rfc3339(MOMENT.replace(tzinfo=None))


@pytest.mark.parametrize(
    "text",
    ["2026-01-02T03:04:05.678901Z", "2026-01-02t03:04:05.678901z", "2026-01-02T03:04:05.678901"],
)
def test_parse_time_reads_what_rfc3339_writes_and_takes_naive_as_utc(text: str) -> None:
    assert parse_time(text) == MOMENT
    assert parse_time(rfc3339(MOMENT, digits=6)) == MOMENT


def test_parse_time_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        parse_time("yesterday")


@pytest.mark.parametrize(("value", "count"), [(None, 0), ("3", 3), ("-2", 0), ("many", 0), (7, 7)])
def test_hops_reads_the_extension_and_never_fails(value: object, count: int) -> None:
    attributes = {"type": "t", "source": "/s", "id": "1"}
    if value is not None:
        attributes["aisvchops"] = value  # type: ignore[assignment]
    assert hops(make_event(attributes, {"x": 1})) == count


def test_a_received_event_keeps_its_attributes_as_sent() -> None:
    headers = {"ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-specversion": "1.0"}
    event = parse_request(headers, b"").event
    assert event.get_time() is None and "time" not in event.get_attributes()
    assert event.get_id() == "1"
