"""The group writer: what arrives while a commit runs shares the next transaction, each
record gets its own outcome, one bad record fails only its own request, and a full queue
is refused instead of growing. Real databases (SQLite file, PostgreSQL); the group
boundaries are made deterministic by holding the writer inside a transaction."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from aiservice_functions.event_store.database import Connection, StoreUnavailable
from aiservice_functions.event_store.records import EventFilter, NewEvent, now_us
from aiservice_functions.event_store.service import EventStore
from aiservice_functions.event_store.storage import EventTable
from aiservice_functions.event_store.writer import GroupWriter, Overloaded, RecordRefused


def _event(event_id: str) -> NewEvent:
    return NewEvent(
        kind="dead-letter",
        namespace="shop",
        name="sentiment",
        source="/shop/reviews",
        event_id=event_id,
        type="com.example.review.submitted",
        document={"specversion": "1.0", "id": event_id, "data": {"text": event_id}},
        error_dest=None,
        error_code=500,
        error_data=None,
        revision=None,
        received_at=now_us(),
    )


class Gate:
    """A table wrapper that holds the writer inside its first group until released, and
    remembers the size of every group it was given."""

    def __init__(self, table: EventTable, poison: set[str] | None = None) -> None:
        self.table = table
        self.poison = poison or set()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.groups: list[int] = []

    def add_all(self, conn: Connection, records: Sequence[Any]) -> list[tuple[int, bool]]:
        self.groups.append(len(records))
        self.entered.set()
        assert self.release.wait(30), "the test never released the writer"
        if any(r.event_id in self.poison for r in records):
            raise ValueError("a record the database refuses")
        return self.table.add_all(conn, records)


@pytest.fixture
def writer(store: EventStore) -> Iterator[GroupWriter]:
    w = GroupWriter(store.db, max_pending=8).start()
    yield w
    w.stop()


def test_requests_that_arrive_during_a_commit_share_the_next_one(
    store: EventStore, writer: GroupWriter
) -> None:
    gate = Gate(store.events)
    first = writer.submit(gate, _event("first"))
    assert gate.entered.wait(30)
    waiting = [writer.submit(gate, _event(f"e{i}")) for i in range(6)]
    waiting.append(writer.submit(gate, _event("e0")))  # a redelivery in the same group
    gate.release.set()
    assert first.result(30)[1] is True
    outcomes = [f.result(30) for f in waiting]
    assert gate.groups == [1, 7]  # one transaction for everything that waited
    assert [created for _, created in outcomes] == [True] * 6 + [False]
    assert outcomes[-1][0] == outcomes[0][0]  # the redelivery names the stored record
    assert store.events.count(EventFilter()) == 7
    assert store.events.get(outcomes[0][0]).receipts == 2  # type: ignore[union-attr]


def test_one_bad_record_fails_only_its_own_request(store: EventStore, writer: GroupWriter) -> None:
    gate = Gate(store.events, poison={"bad"})
    blocker = writer.submit(gate, _event("blocker"))
    assert gate.entered.wait(30)
    group = {name: writer.submit(gate, _event(name)) for name in ("a", "bad", "b", "c")}
    gate.release.set()
    assert blocker.result(30)[1] is True
    with pytest.raises(RecordRefused, match="refused this record"):
        group["bad"].result(30)
    for name in ("a", "b", "c"):
        assert group[name].result(30)[1] is True
    stored = {r.event_id for r in store.events.page(EventFilter()).items}
    assert stored == {"blocker", "a", "b", "c"}
    # The group was tried whole once, then each record alone.
    assert gate.groups == [1, 4, 1, 1, 1, 1]


def test_a_full_queue_is_refused_not_grown(store: EventStore, writer: GroupWriter) -> None:
    gate = Gate(store.events)
    held = writer.submit(gate, _event("held"))
    assert gate.entered.wait(30)
    queued = [writer.submit(gate, _event(f"q{i}")) for i in range(8)]
    assert writer.depth == 8
    with pytest.raises(Overloaded):
        writer.submit(gate, _event("one-too-many"))
    gate.release.set()
    assert held.result(30)[1] and all(f.result(30)[1] for f in queued)
    assert store.events.count(EventFilter()) == 9


def test_stop_commits_what_is_queued_then_refuses(store: EventStore) -> None:
    w = GroupWriter(store.db).start()
    gate = Gate(store.events)
    held = w.submit(gate, _event("held"))
    assert gate.entered.wait(30)
    queued = [w.submit(gate, _event(f"s{i}")) for i in range(3)]
    stopper = threading.Thread(target=w.stop)
    stopper.start()
    gate.release.set()
    stopper.join(30)
    assert held.result(0)[1] and all(f.result(0)[1] for f in queued)
    with pytest.raises(StoreUnavailable, match="shutting down"):
        w.submit(store.events, _event("late"))
    assert store.events.count(EventFilter()) == 4


def test_a_request_that_stopped_waiting_does_not_stop_the_writer(
    store: EventStore, writer: GroupWriter
) -> None:
    gate = Gate(store.events)
    held = writer.submit(gate, _event("held"))
    assert gate.entered.wait(30)
    gone = writer.submit(gate, _event("gone"))
    assert gone.cancel()  # its sender timed out (the front answered 503)
    gate.release.set()
    assert held.result(30)[1] is True
    after = writer.submit(store.events, _event("after"))
    assert after.result(30)[1] is True  # the writer is still there
    # The record whose sender gave up was committed all the same: a retry is a redelivery.
    assert {r.event_id for r in store.events.page(EventFilter()).items} == {"held", "gone", "after"}
