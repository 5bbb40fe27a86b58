"""The broker's lean client for its own loopback servers: keep-alive reuse, a connection
the server closed while idle, refused headers, timeouts. Real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop
from aiohttp import web
from aiservice_operator.local.loopback import LoopbackClient, LoopbackError, handles

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def raw_server(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/in"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[tuple[str, int]]]]:
    """An aiohttp server answering each POST with its body; the peers it saw."""
    peers: list[tuple[str, int]] = []

    async def handle(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        return web.Response(status=201, body=await request.read(), headers={"ce-id": "r1"})

    app = web.Application()
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/in", peers
    await runner.cleanup()


async def test_answers_come_back_and_the_connection_is_reused(
    echo: tuple[str, list[tuple[str, int]]],
) -> None:
    url, peers = echo
    client = LoopbackClient()
    for body in (b'{"n": 1}', b'{"n": 2}', b""):
        response = await client.post(url, {"ce-id": "e1"}, body, timeout=30)
        assert (response.status, response.body, response.headers["ce-id"]) == (201, body, "r1")
    client.close()
    assert len(peers) == 3 and len(set(peers)) == 1  # one connection for all three


def test_it_works_on_uvloop_as_aisvc_up_runs_it() -> None:
    async def main() -> tuple[int, int]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    await read_request(reader)
                except asyncio.IncompleteReadError:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            writer.close()

        server, url = await raw_server(handle)
        client = LoopbackClient()
        statuses = [(await client.post(url, {}, b"x", timeout=30)).status for _ in range(2)]
        client.close()
        server.close()
        return statuses[0], statuses[1]

    assert uvloop.run(main()) == (200, 200)


async def test_a_connection_the_server_closes_as_a_request_arrives_is_replaced() -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # Keep-alive by HTTP/1.1's default; the next request finds it closing (an idle
        # timeout racing the request), unanswered.
        await reader.read(1)
        writer.close()

    server, url = await raw_server(handle)
    client = LoopbackClient()
    first = await client.post(url, {}, b"1", timeout=30)
    second = await client.post(url, {}, b"2", timeout=30)
    client.close()
    server.close()
    assert (first.body, second.body, connections) == (b"ok", b"ok", 2)


async def test_an_answer_cut_short_is_an_error_not_retried() -> None:
    requests = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        requests += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok")
        await writer.drain()
        writer.close()

    server, url = await raw_server(handle)
    client = LoopbackClient()
    with pytest.raises(LoopbackError, match="before a whole answer"):
        await client.post(url, {}, b"1", timeout=30)
    server.close()
    assert requests == 1  # the server may have acted on it: the caller's policy decides


async def test_past_its_timeout_the_request_fails_and_its_connection_is_closed() -> None:
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers; returns when the client hangs up
        closed.set()

    server, url = await raw_server(handle)
    client = LoopbackClient()
    with pytest.raises(TimeoutError):
        await client.post(url, {}, b"1", timeout=0.2)
    await asyncio.wait_for(closed.wait(), 30)
    server.close()


async def test_a_header_that_would_split_the_request_is_refused() -> None:
    client = LoopbackClient()
    with pytest.raises(ValueError, match="ce-id"):
        await client.post("http://127.0.0.1:9/in", {"ce-id": "a\r\nx-evil: 1"}, b"", timeout=1)
    with pytest.raises(ValueError, match="not a valid HTTP header"):
        await client.post("http://127.0.0.1:9/in", {"bad name": "v"}, b"", timeout=1)


async def test_nothing_listening_is_a_loopback_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(LoopbackError, match="cannot connect"):
        await LoopbackClient().post(f"http://127.0.0.1:{port}/", {}, b"", timeout=30)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8482/v1/x", True),
        ("http://127.0.0.2:80/", True),
        ("http://localhost:9000", True),
        ("http://[::1]:9000/", True),
        ("https://127.0.0.1:8482/", False),
        ("http://10.0.0.1/", False),
        ("http://sink.shop.svc.cluster.local/", False),
    ],
)
def test_only_plain_http_to_loopback_is_handled(url: str, local: bool) -> None:
    assert handles(url) is local


async def test_a_non_ascii_header_value_is_sent_as_utf8() -> None:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers["x-note"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    client = LoopbackClient()
    response = await client.post(
        f"http://127.0.0.1:{runner.addresses[0][1]}/in", {"x-note": "café ✓"}, b"", timeout=30
    )
    client.close()
    await runner.cleanup()
    assert (response.status, seen) == (204, ["café ✓"])
