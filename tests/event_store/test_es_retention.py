"""Retention by age and by count per AIService, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from aiservice_functions.event_store.records import EventFilter, NewEvent, now_us
from aiservice_functions.event_store.retention import RetentionPolicy, enforce
from aiservice_functions.event_store.service import EventStore

from tests.support.event_store import AUTH, NS, SVC, post_dead_letter


def _add(
    store: EventStore, event_id: str, name: str = SVC, age_s: float = 0.0, kind: str = "dead-letter"
) -> None:
    store.events.add(
        NewEvent(
            kind=kind,  # type: ignore[arg-type]
            namespace=NS,
            name=name,
            source="/s",
            event_id=event_id,
            type="t",
            document={"id": event_id},
            received_at=now_us() - int(age_s * 1_000_000),
        )
    )


def _ids(store: EventStore, **flt: object) -> set[str]:
    return {r.event_id for r in store.events.page(EventFilter(**flt), limit=500).items}  # type: ignore[arg-type]


def test_max_age_deletes_only_old_records(store: EventStore) -> None:
    for i in range(7):
        _add(store, f"old-{i}", age_s=3 * 86400)
    for i in range(3):
        _add(store, f"new-{i}", age_s=60)
    deleted = enforce(store.events, RetentionPolicy(max_age_s=86400, batch=2, pause_s=0))
    assert deleted == 7
    assert _ids(store) == {"new-0", "new-1", "new-2"}
    assert enforce(store.events, RetentionPolicy(max_age_s=86400)) == 0


def test_max_count_keeps_the_newest_per_aiservice_and_kind(store: EventStore) -> None:
    for i in range(12):
        _add(store, f"a-{i:02}")
    for i in range(3):
        _add(store, f"b-{i}", name="fraud")
    for i in range(6):
        _add(store, f"audit-{i}", kind="audit")
    deleted = enforce(store.events, RetentionPolicy(max_count=5, batch=3, pause_s=0))
    assert deleted == 7 + 1
    assert _ids(store, name=SVC, kind="dead-letter") == {f"a-{i:02}" for i in range(7, 12)}
    assert _ids(store, name="fraud") == {"b-0", "b-1", "b-2"}
    assert _ids(store, kind="audit") == {f"audit-{i}" for i in range(1, 6)}


def test_background_retention_runs_while_ingest_continues(
    make_server_url: Callable[..., str], client: httpx.Client, store: EventStore
) -> None:
    server = make_server_url(
        retention=RetentionPolicy(max_count=3, interval_s=0.05, batch=2, pause_s=0)
    )
    for i in range(10):
        assert post_dead_letter(client, server, f"r-{i}").status_code == 201
    deadline = time.monotonic() + 20
    while store.events.count(EventFilter()) > 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    items = client.get(f"{server}/v1/events", headers=AUTH).json()["items"]
    assert [i["id"] for i in items] == ["r-9", "r-8", "r-7"]
