"""The event store's ASGI front: ingest on the event loop, everything else in Flask.

Ingest (:func:`.intake.is_ingest`) is answered here without a thread: the body is read
with bounds on its size (413) and arrival time (408), the request is parsed and checked
(:mod:`.intake`), its record is handed to the group writer (:mod:`.writer`) and its
commit awaited, so a thousand senders waiting for one commit cost a thousand futures,
not a thousand threads. The query API, the console, health and metrics are the Flask app
(:mod:`.app`), run in a small thread pool through a2wsgi's WSGI adapter (their views do
blocking database reads and stream exports); their body is read on the loop first, with
the same bounds, so a slow client holds no thread there either. One port, one process
(or several, see :mod:`.server`), both halves over the same :class:`.EventStore`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qs

from a2wsgi import WSGIMiddleware
from flask import Flask

from aiservice_functions.event_store.app import intake_of, loopback_of
from aiservice_functions.event_store.database import StoreUnavailable
from aiservice_functions.event_store.intake import Answer, Intake, Write, error, is_ingest
from aiservice_functions.event_store.service import WRITE_TIMEOUT_S
from aiservice_functions.event_store.writer import Overloaded, RecordRefused
from aiservice_functions.loopback_hosts import MISDIRECTED, host_refusal
from aiservice_functions.serving.asgi_server import request_headers

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_QUERY_THREADS: Final = 8
_CLOSE: Final = (b"connection", b"close")


class StoreApp:
    """The ASGI app of one store process over a Flask app made by ``create_app``."""

    def __init__(
        self,
        flask_app: Flask,
        *,
        read_timeout: float = 30.0,
        query_threads: int = DEFAULT_QUERY_THREADS,
    ) -> None:
        self.intake: Intake = intake_of(flask_app)
        self.loopback = loopback_of(flask_app)
        self.read_timeout = read_timeout
        self.wsgi = WSGIMiddleware(flask_app, workers=query_threads)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        limit = self.intake.max_body_bytes
        body = await self._body(scope, receive, limit)
        if body is None:
            return  # the client left before its body arrived: nobody to answer
        if isinstance(body, Answer):
            await _send(send, body, close=True)
            return
        if is_ingest(scope["method"], scope["path"]):
            refused = self._misdirected(scope)
            await _send(send, refused or await self._ingest(scope, body))
            return
        await self.wsgi(scope, _replay(body), send)  # type: ignore[arg-type]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.intake.store.stop)  # commits what is queued
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _misdirected(self, scope: Scope) -> Answer | None:
        """421 for ingest naming another host than a local run's loopback listener (the
        Flask app checks everything else itself)."""
        if self.loopback is None:
            return None
        refused = host_refusal(_header(scope, b"host") or None, *self.loopback)
        return error(MISDIRECTED, refused) if refused else None

    async def _ingest(self, scope: Scope, body: bytes) -> Answer:
        path = scope["path"]
        query = _query(scope.get("query_string", b""))
        if self.intake.needs_thread(path):
            prepared = await asyncio.to_thread(
                self.intake.prepare, path, query, request_headers(scope), body
            )
        else:
            prepared = self.intake.prepare(path, query, request_headers(scope), body)
        if isinstance(prepared, Answer):
            return prepared
        return await self._commit(path, prepared)

    async def _commit(self, path: str, write: Write) -> Answer:
        try:
            future = self.intake.store.writer.submit(write.table, write.record)
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                seq, created = await asyncio.wrap_future(future)
        except (Overloaded, RecordRefused, StoreUnavailable, TimeoutError) as err:
            return self.intake.failed(path, err)
        return write.answer(seq, created)

    async def _body(self, scope: Scope, receive: Receive, limit: int) -> bytes | Answer | None:
        """The whole body; an :class:`Answer` (413, 408) to send instead; None if the
        client left."""
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            return self.intake.too_large(scope["path"])
        body = bytearray()
        try:
            async with asyncio.timeout(self.read_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    body += message.get("body", b"")
                    if len(body) > limit:
                        return self.intake.too_large(scope["path"])
                    if not message.get("more_body", False):
                        return bytes(body)
        except TimeoutError:
            return error(408, f"request body not received within {self.read_timeout:g}s")


@functools.lru_cache(maxsize=1024)
def _parsed_query(raw: bytes) -> tuple[tuple[str, tuple[str, ...]], ...]:
    parsed = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    return tuple((k, tuple(v)) for k, v in parsed.items())


def _query(raw: bytes) -> dict[str, list[str]]:
    """The query of a request: ingest URLs repeat (one per AIService and role), so each
    is parsed once."""
    return {k: list(v) for k, v in _parsed_query(raw)}


def _header(scope: Scope, name: bytes) -> str:
    for raw_name, raw_value in scope["headers"]:
        if raw_name.lower() == name:
            return str(raw_value.decode("latin-1").strip())
    return ""


def _replay(body: bytes) -> Receive:
    """A ``receive`` that gives the already-read body once, then waits for a disconnect."""
    sent = False
    gone = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()  # a2wsgi only asks again to notice a disconnect
        return {"type": "http.disconnect"}

    return receive


async def _send(send: Send, answer: Answer, close: bool = False) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    if close:
        headers.append(_CLOSE)
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
