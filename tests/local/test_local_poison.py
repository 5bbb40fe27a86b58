"""Poison events at the local broker: its ingress answers 4xx with a reason (never 5xx),
and its dispatcher delivers or dead-letters a poison event and goes on with the rest.

Real aiohttp servers on 127.0.0.1: the ingress, a subscriber that echoes each event back,
and a dead-letter sink; the broker log is a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web
from aiservice_operator.local.dispatcher import Dispatcher, load_trigger
from aiservice_operator.local.ingress import ingress_app
from aiservice_operator.local.log import EventLog
from aiservice_operator.local.serving import Services
from hypothesis import HealthCheck, given, settings

from tests.support.poison import DEEP_ARRAY, SURROGATE_JSON, binary_headers, requests_


@dataclass
class Broker:
    url: str
    loop: asyncio.AbstractEventLoop
    dispatcher: Dispatcher
    log: EventLog
    received: list[bytes] = field(default_factory=list)
    dead: list[dict[str, str]] = field(default_factory=list)

    def drain(self) -> None:
        asyncio.run_coroutine_threadsafe(self.dispatcher.drain(), self.loop).result(60)


async def _site(app: web.Application, runners: list[web.AppRunner]) -> str:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    runners.append(runner)
    port = runner.addresses[0][1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []
    state: dict[str, Any] = {}

    async def setup() -> Broker:
        received: list[bytes] = []
        dead: list[dict[str, str]] = []

        async def echo(request: web.Request) -> web.Response:
            body = await request.read()
            received.append(body)
            return web.Response(status=200, body=b"")

        async def sink(request: web.Request) -> web.Response:
            dead.append(dict(request.headers))
            return web.Response(status=202)

        sub_app, sink_app = web.Application(), web.Application()
        sub_app.router.add_post("/", echo)
        sink_app.router.add_post("/", sink)
        sub_url = await _site(sub_app, runners)
        sink_url = await _site(sink_app, runners)
        session = aiohttp.ClientSession()
        state["session"] = session
        event_log = EventLog(tmp_path / "broker.db")
        event_log.start(asyncio.get_running_loop())
        trigger = load_trigger(
            {
                "metadata": {"name": "t", "namespace": "shop"},
                "spec": {
                    "broker": "default",
                    "subscriber": {"uri": sub_url + "/"},
                    "delivery": {"retry": 0, "deadLetterSink": {"uri": sink_url + "/"}},
                },
            },
            services=(),
        )
        dispatcher = Dispatcher(event_log, Services(session), session, [trigger])
        url = await _site(ingress_app(dispatcher, {"shop/default"}, lambda: {}), runners)
        return Broker(url, loop, dispatcher, event_log, received, dead)

    b = asyncio.run_coroutine_threadsafe(setup(), loop).result(30)
    try:
        yield b
    finally:

        async def teardown() -> None:
            await b.dispatcher.stop()
            for runner in runners:
                await runner.cleanup()
            await state["session"].close()

        asyncio.run_coroutine_threadsafe(teardown(), loop).result(30)
        b.log.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_deeply_nested_event_is_refused_with_a_reason(broker: Broker) -> None:
    response = requests.post(
        f"{broker.url}/shop/default", data=DEEP_ARRAY, headers=binary_headers(), timeout=30
    )
    assert response.status_code == 400
    assert "nests deeper" in response.json()["error"]


def test_a_lone_surrogate_event_is_delivered_and_the_next_event_too(broker: Broker) -> None:
    for event_id, body in (("poison", SURROGATE_JSON), ("normal", b'{"text": "ok"}')):
        response = requests.post(
            f"{broker.url}/shop/default", data=body, headers=binary_headers(event_id), timeout=30
        )
        assert response.status_code == 202, response.text
    broker.drain()
    assert [json.loads(b) for b in broker.received] == [{"text": "\ud800"}, {"text": "ok"}]
    assert broker.log.pending() == []  # nothing owed: a restart has nothing to crash on


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(request=requests_())
def test_fuzz_ingress_is_never_5xx(broker: Broker, request: tuple[dict[str, str], bytes]) -> None:
    headers, body = request
    response = requests.post(f"{broker.url}/shop/default", data=body, headers=headers, timeout=30)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]


def test_half_sent_requests_do_not_stall_the_ingress(broker: Broker) -> None:
    import socket
    from urllib.parse import urlsplit

    port = urlsplit(broker.url).port
    assert port is not None
    slow = []
    for i in range(8):
        sock = socket.create_connection(("127.0.0.1", port))
        head = f"POST /shop/default HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        sock.sendall(head + (b"Content-Length: 300\r\n\r\n{" if i % 2 else b"ce-id: x"))
        slow.append(sock)
    try:
        response = requests.post(
            f"{broker.url}/shop/default", data=b"{}", headers=binary_headers("fine"), timeout=120
        )
        assert response.status_code == 202
        for sock in slow:  # answered while the slow ones are still held open
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in slow:
            sock.close()
