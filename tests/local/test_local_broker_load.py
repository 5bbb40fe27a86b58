"""The local broker under load: accepted events are committed in groups (each still
before its 202), and a slow decision log never holds the service's own deliveries.

Real aiohttp servers on 127.0.0.1 and a real SQLite log; every assertion is on counts,
never on how long something took (the waits only guard against a hang)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiservice_functions.cloudevents_http import CloudEvent
from aiservice_operator.local import log as log_module
from aiservice_operator.local.dispatcher import Dispatcher, TriggerRuntime, load_trigger
from aiservice_operator.local.ingress import ingress_app
from aiservice_operator.local.log import EventLog
from aiservice_operator.local.serving import Services

HANG_GUARD_S = 60.0


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds; fail (not hang) if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG_GUARD_S
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def serve(app: web.Application, runners: list[web.AppRunner]) -> str:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    runners.append(runner)
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


def trigger(name: str, url: str, *, role: str = "", type_: str = "order.placed") -> TriggerRuntime:
    labels = {"aiservice.dev/role": role} if role else {}
    return load_trigger(
        {
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {
                "broker": "default",
                "filter": {"attributes": {"type": type_}},
                "subscriber": {"uri": url + "/"},
            },
        },
        services=(),
    )


def event(i: int) -> CloudEvent:
    attrs = {"specversion": "1.0", "id": f"e{i}", "source": "/shop", "type": "order.placed"}
    return CloudEvent(attrs, {"n": i})


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    out: list[web.AppRunner] = []
    yield out
    for runner in out:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_a_burst_of_concurrent_sends_is_committed_in_groups_each_before_its_202(
    tmp_path: Path, runners: list[web.AppRunner], session: aiohttp.ClientSession
) -> None:
    burst = 64
    event_log = EventLog(tmp_path / "broker.db")
    event_log.start(asyncio.get_running_loop())
    # No Trigger matches: each send is exactly one write, so the counts are the burst's.
    dispatcher = Dispatcher(event_log, Services(session), session, [])
    url = await serve(ingress_app(dispatcher, {"shop/default"}, dict), runners) + "/shop/default"
    # Another connection holds the write lock, so the writer cannot commit until the
    # whole burst is waiting on it.
    blocker = sqlite3.connect(tmp_path / "broker.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    answered: list[int] = []

    async def send(i: int) -> None:
        headers = {"ce-specversion": "1.0", "ce-id": f"e{i}", "ce-source": "/shop",
                   "ce-type": "order.placed", "content-type": "application/json"}  # fmt: skip
        async with session.post(url, data=b'{"n": 1}', headers=headers) as resp:
            assert resp.status == 202
            answered.append(i)

    try:
        sends = asyncio.gather(*(send(i) for i in range(burst)))
        await until(lambda: event_log.submitted == burst)
        assert answered == []  # nothing is answered before it is committed
        blocker.execute("ROLLBACK")
        await sends
    finally:
        blocker.close()
        event_log.close()
    assert sorted(answered) == list(range(burst))
    assert event_log.writes == burst
    # The writer had taken at most one group before the lock stopped it; the rest of
    # the burst went into the next one.
    assert event_log.groups <= 2
    assert event_log.largest_group >= burst // 2
    with sqlite3.connect(tmp_path / "broker.db") as db:
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == burst


async def test_a_slow_decision_log_does_not_hold_the_services_own_deliveries(
    tmp_path: Path, runners: list[web.AppRunner], session: aiohttp.ClientSession
) -> None:
    events, budget, log_budget = 24, 4, 2
    delivered: list[str] = []
    logged: list[str] = []
    held = 0
    release = asyncio.Event()

    async def service(request: web.Request) -> web.Response:
        delivered.append(request.headers["ce-id"])
        return web.Response(status=200)

    async def slow_sink(request: web.Request) -> web.Response:
        nonlocal held
        held += 1
        await release.wait()
        logged.append(request.headers["ce-id"])
        return web.Response(status=202)

    service_app, sink_app = web.Application(), web.Application()
    service_app.router.add_post("/", service)
    sink_app.router.add_post("/", slow_sink)
    service_url = await serve(service_app, runners)
    sink_url = await serve(sink_app, runners)
    event_log = EventLog(tmp_path / "broker.db")
    event_log.start(asyncio.get_running_loop())
    dispatcher = Dispatcher(
        event_log,
        Services(session),
        session,
        [
            trigger("log-inputs", sink_url, role="decision-inputs"),
            trigger("fraud", service_url),
        ],
        max_in_flight=budget,
        log_in_flight=log_budget,
    )
    try:
        for i in range(events):
            assert await dispatcher.accept("shop/default", event(i))
        # Every event reaches the service although the log holds all its posts.
        await until(lambda: len(delivered) == events)
        assert sorted(delivered) == sorted(f"e{i}" for i in range(events))
        assert held == log_budget  # the log's own budget is full, and no more than that
        assert logged == []
        release.set()
        await dispatcher.drain()
    finally:
        await dispatcher.stop()
        event_log.close()
    assert sorted(logged) == sorted(delivered)
    assert dispatcher.stats.delivered["fraud"] == events
    assert dispatcher.stats.delivered["log-inputs"] == events


async def test_an_event_the_log_cannot_commit_is_a_503_and_the_log_goes_on(
    tmp_path: Path,
    runners: list[web.AppRunner],
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(log_module, "BUSY_TIMEOUT_S", 0.05)
    event_log = EventLog(tmp_path / "broker.db")
    event_log.start(asyncio.get_running_loop())
    dispatcher = Dispatcher(event_log, Services(session), session, [])
    url = await serve(ingress_app(dispatcher, {"shop/default"}, dict), runners) + "/shop/default"
    blocker = sqlite3.connect(tmp_path / "broker.db", isolation_level=None)

    async def send(event_id: str) -> tuple[int, str | None]:
        headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/shop",
                   "ce-type": "order.placed", "content-type": "application/json"}  # fmt: skip
        timeout = aiohttp.ClientTimeout(total=HANG_GUARD_S)
        async with session.post(url, data=b"{}", headers=headers, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Retry-After")

    try:
        blocker.execute("BEGIN IMMEDIATE")  # the file stays locked past the busy timeout
        refused = await send("locked-out")
        blocker.execute("ROLLBACK")
        accepted = await send("after")
    finally:
        blocker.close()
        event_log.close()
    assert refused == (503, "1")
    assert accepted == (202, None)
    with sqlite3.connect(tmp_path / "broker.db") as db:
        ids = [row[0] for row in db.execute("SELECT id FROM events")]
    assert ids == ["after"]  # the refused event was not half-written
