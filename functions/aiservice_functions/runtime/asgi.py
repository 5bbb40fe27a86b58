"""The ASGI front: events on the event loop, everything else through the Flask app.

``POST /`` and ``POST SHADOW_PATH`` are answered here: the body is read with a bound on
its size (413) and on its arrival time (408), the event is validated and decoded, and
its inference is awaited from the batcher, so a worker holds no thread per waiting
event and a slow client holds nothing but its connection. A function that does not
batch infers inline on the loop (its model is small: that is why it does not batch).
Health, readiness, metrics and every other method or path go to the Flask app
(``app.create_app``), unchanged, 404/405 included: called inline on the loop with its
body read first (bounded like an event's). Those views are quick and never wait, and
handing them to a thread pool made probes wait for the GIL behind a loading model.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from typing import Any

from flask import Flask

from aiservice_functions import contract
from aiservice_functions.runtime.app import Answer, FunctionService, _error
from aiservice_functions.serving.asgi_server import request_headers

log = logging.getLogger("aiservice_functions.runtime")

Scope = dict[str, Any]
Receive = Any
Send = Any

_EVENT_PATHS = frozenset(("/", contract.SHADOW_PATH))
_CLOSE = (b"connection", b"close")


class EventApp:
    """The ASGI app of one worker: :class:`FunctionService` for events, Flask for the rest."""

    def __init__(self, flask_app: Flask) -> None:
        self.flask = flask_app
        self.service: FunctionService = flask_app.extensions["aisvc"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in _EVENT_PATHS:
            await self._event(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._wsgi(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.service.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _wsgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = request_headers(scope)
        body = await self._body(headers, receive)
        if body is None:
            return
        if isinstance(body, Answer):
            status, out_headers, out = self.service.conclude(body, time.perf_counter())
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers]
            await _send(send, int(status[:3]), [*raw, _CLOSE], out)
            return
        started: list[Any] = []

        def start_response(status: str, response_headers: list[tuple[str, str]], *_: Any) -> Any:
            started[:] = [status, response_headers]
            return lambda _data: None  # the legacy write(): Flask does not use it

        result = self.flask.wsgi_app(_environ(scope, headers, body), start_response)
        try:
            out = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, response_headers = started
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response_headers]
        await _send(send, int(status[:3]), raw, out)

    async def _event(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        service = self.service
        headers = request_headers(scope)
        close = False
        try:
            body = await self._body(headers, receive)
            if body is None:
                return  # the client left before its body arrived: nobody to answer
            if isinstance(body, Answer):
                answer, close = body, True
            else:
                answer = await service.handle_async(
                    headers, body, shadow=scope["path"] == contract.SHADOW_PATH
                )
        except Exception as err:  # last resort: never crash, never a 2xx for a failure
            log.exception("unexpected failure")
            answer = _error(500, f"internal error: {type(err).__name__}", "error")
        status_line, out_headers, out_body = service.conclude(answer, started)
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers]
        if close:
            raw.append(_CLOSE)
        await _send(send, int(status_line[:3]), raw, out_body)

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytes | Answer | None:
        """The body; an :class:`Answer` (413, 408) to send instead; None if the client left."""
        service = self.service
        limit = service.config.max_body_bytes
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            return service.too_large()
        body = bytearray()
        try:
            async with asyncio.timeout(service.config.body_timeout_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    body += message.get("body", b"")
                    if len(body) > limit:
                        return service.too_large()
                    if not message.get("more_body", False):
                        return bytes(body)
        except TimeoutError:
            seconds = service.config.body_timeout_seconds
            return _error(
                408,
                f"request body not received within {seconds:g}s "
                f"({contract.ENV_BODY_TIMEOUT_SECONDS})",
                "slow_client",
            )


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _environ(scope: Scope, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The WSGI environ (PEP 3333) of an ASGI request whose body has been read."""
    server = scope.get("server") or ("127.0.0.1", 0)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    for name, value in headers.items():
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name not in ("content-length", "transfer-encoding"):
            environ[f"HTTP_{name.upper().replace('-', '_')}"] = value
    return environ
