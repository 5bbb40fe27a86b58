"""A lean HTTP/1.1 client for the run's own servers on loopback: the revision processes
and the event store.

Why not aiohttp's client, which the broker uses for everything else: per POST it costs
about 130 µs of CPU against about 25 µs here (keep-alive connections, the answer parsed
by httptools, nothing else), and the broker posts once per event to the service and twice
more with the decision log on, on the same cores as the functions. Only ``http://`` to a
loopback address comes here (`handles`); any other URL stays on aiohttp.

An answer must carry ``content-length`` or be chunked (the servers of a local run do);
a connection is reused only when the answer allows keep-alive. A reused connection the
server closed while it was idle fails before any answer: the request is then sent once
more on a new connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

IDLE_S = 2.0
"""An idle connection is not reused after this long (servers close theirs after ~5 s)."""
MAX_IDLE_PER_HOST = 64
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class LoopbackError(ConnectionError):
    """The connection failed or closed before a whole answer arrived."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def handles(url: str) -> bool:
    """Whether ``url`` is plain HTTP to a loopback address."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def request_head(target: str, host: str, headers: Mapping[str, str], length: int) -> bytes:
    """The request line and headers of a POST; refuses a header that would split it."""
    lines = [f"POST {target} HTTP/1.1", f"host: {host}", f"content-length: {length}"]
    for name, value in headers.items():
        if name.lower() in _OWN_HEADERS:
            continue
        if not _NAME.fullmatch(name) or _BAD_VALUE.search(value):
            raise ValueError(f"header {name[:100]!r}: not a valid HTTP header")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.started = False
        """Some of the current answer has arrived."""
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Response] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f": {exc}" if exc else ""
        self._fail(LoopbackError(f"connection closed before a whole answer{reason}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(LoopbackError(f"not an HTTP answer: {err}"))
            self.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.started = True

    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        response = Response(self.parser.get_status_code(), self._headers, b"".join(self._body))
        self._headers, self._body, self.started = {}, [], False
        if not self.parser.should_keep_alive():
            self.close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # use
    def send(self, head: bytes, body: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.writelines([head, body])
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, err: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)


class LoopbackClient:
    """Keep-alive connections per loopback address; `post` is all the broker needs."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: float | None
    ) -> Response:
        """POST ``body`` to ``url``; raises LoopbackError (or TimeoutError past ``timeout``)."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = request_head(target, parts.netloc, headers, len(body))
        key = (host, port)
        async with asyncio.timeout(timeout):
            conn = self._take(key)
            if conn is not None:
                try:
                    return await self._exchange(key, conn, head, body)
                except LoopbackError:
                    if conn.started:
                        raise
                    # Closed by the server while idle, before it read this request.
            return await self._exchange(key, await self._open(host, port), head, body)

    async def _exchange(
        self, key: tuple[str, int], conn: _Connection, head: bytes, body: bytes
    ) -> Response:
        try:
            response = await conn.send(head, body)
        except BaseException:  # a timeout or cancellation leaves the answer half-read
            conn.close()
            raise
        if not conn.closed:
            conn.idle_since = time.monotonic()
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE_PER_HOST:
                idle.append(conn)
            else:
                conn.close()
        return response

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_S:
                return conn
            conn.close()
        return None

    async def _open(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Connection, host, port)
        except OSError as err:
            raise LoopbackError(f"cannot connect to {host}:{port}: {err}") from err
        return conn

    def close(self) -> None:
        """Close the idle connections (those in use close when their answer is read)."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
