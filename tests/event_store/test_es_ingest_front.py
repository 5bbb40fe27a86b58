"""The production ingest front (uvicorn + the group writer) on a real socket: many
concurrent senders, poison among them, and a database that falls behind."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiservice_functions import contract
from aiservice_functions.event_store import create_app
from aiservice_functions.event_store.records import EventFilter
from aiservice_functions.event_store.service import EventStore

from tests.support.event_store import NS, SVC, TOKEN, dead_letter_headers, serving_front

KEY = b"k" * 32


def _post(client: httpx.AsyncClient, url: str, event_id: str, **kw: object) -> object:
    headers = dead_letter_headers(event_id, extra=kw.pop("extra", None))  # type: ignore[arg-type]
    body = kw.pop("body", json.dumps({"text": event_id}).encode())
    return client.post(url, headers=headers, content=body)  # type: ignore[arg-type]


@pytest.fixture
def front(store: EventStore) -> Iterator[str]:
    with serving_front(create_app(store, token=TOKEN, sink_key=KEY, max_body_bytes=4096)) as url:
        yield url


def test_poison_in_a_group_gets_its_own_4xx_and_its_neighbours_are_stored(
    front: str, store: EventStore
) -> None:
    good = front + contract.dead_letter_path(NS, SVC, KEY)
    wrong_credential = front + contract.dead_letter_path(NS, SVC, b"x" * 32)

    async def send() -> dict[str, int]:
        async with httpx.AsyncClient(timeout=60) as client:
            jobs = {}
            for i in range(40):
                jobs[f"ok-{i}"] = _post(client, good, f"ok-{i}")
            jobs["bad-json"] = _post(client, good, "bad-json", body=b'{"text": ')
            jobs["bad-credential"] = _post(client, wrong_credential, "bad-credential")
            jobs["too-large"] = _post(client, good, "too-large", body=b'"' + b"x" * 5000 + b'"')
            jobs["control-char"] = _post(client, good, "nul", extra={"ce-source": "/a%00b"})
            answers = await asyncio.gather(*jobs.values())  # type: ignore[call-overload]
            return {name: a.status_code for name, a in zip(jobs, answers, strict=True)}

    statuses = asyncio.run(send())
    assert statuses["bad-json"] == 400
    assert statuses["bad-credential"] == 403
    assert statuses["too-large"] == 413
    assert statuses["control-char"] == 400
    assert all(statuses[f"ok-{i}"] == 201 for i in range(40)), statuses
    stored = {r.event_id for r in store.events.page(EventFilter(), limit=500).items}
    assert stored == {f"ok-{i}" for i in range(40)}


def test_query_api_and_console_are_served_behind_the_front(front: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=30) as client:
        url = front + contract.dead_letter_path(NS, SVC, KEY)
        posted = client.post(url, headers=dead_letter_headers("q1"), content=b'{"text":"q"}')
        assert posted.status_code == 201, posted.text
        listed = client.get(front + "/v1/events", headers=auth)
        assert [i["id"] for i in listed.json()["items"]] == ["q1"]
        assert client.get(front + "/v1/events").status_code == 401
        assert client.get(front + contract.PATH_READINESS).json()["status"] == "ok"
        assert client.get(front + "/console/login").status_code == 200
        metrics = client.get(front + contract.PATH_METRICS).text
        assert "aisvc_event_store_commit_group_records_count 1.0" in metrics
        assert "aisvc_event_store_ingest_queue_depth 0.0" in metrics


def test_a_database_that_falls_behind_gets_429_with_retry_after(tmp_path: Path) -> None:
    """The database stops taking writes: the writer holds one group, four records queue,
    and every sender after them is answered 429 at once; once the database catches up,
    every queued sender gets its 201 and only their records are stored."""
    db = tmp_path / "behind.db"
    store = EventStore(f"sqlite:///{db}", max_pending=4)
    url_path = contract.dead_letter_path(NS, SVC)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        with serving_front(create_app(store, token=TOKEN)) as front:
            blocker.execute("BEGIN EXCLUSIVE")  # the database stops taking writes

            async def send() -> list[httpx.Response]:
                async with httpx.AsyncClient(timeout=120) as client:
                    tasks: list[asyncio.Task[httpx.Response]] = []
                    accepted = refused_in_a_row = 0
                    while refused_in_a_row < 3:  # one at a time, each seen to land
                        task = asyncio.create_task(
                            _post(client, front + url_path, f"b{len(tasks)}")  # type: ignore[arg-type]
                        )
                        tasks.append(task)
                        while not task.done() and (
                            store.writer.depth + store.writer.writing < accepted + 1
                        ):
                            await asyncio.sleep(0.01)
                        if task.done():
                            refused_in_a_row += 1
                        else:
                            accepted += 1
                    blocker.execute("COMMIT")  # the database catches up
                    return list(await asyncio.gather(*tasks))

            answers = asyncio.run(send())
    finally:
        blocker.close()
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {201, 429}, statuses
    assert statuses.index(429) >= 5  # one group in the writer, then the four queued
    assert statuses[statuses.index(429) :] == [429] * statuses.count(429)
    for answer in answers:
        if answer.status_code == 429:
            assert answer.headers["retry-after"] == "1"
            assert "retry later" in answer.json()["error"]
    stored = {r.event_id for r in store.events.page(EventFilter()).items}
    assert stored == {f"b{i}" for i, s in enumerate(statuses) if s == 201}
    store.close()
