"""uvicorn's httptools protocol with a bounded header read time (and, optionally, a
bounded pause while a request arrives).

An event loop does not lose a worker to a slow client, but a connection that never
finishes its headers would still be held open for ever (uvicorn's keep-alive timer
only runs between requests). Here each request must send its headers within
``header_timeout`` of its first byte (or of the connection, for the first one); past
that the connection is answered 408 and closed. Body read time is bounded by the app,
which sees the body arrive. With ``idle_timeout``, a connection that pauses longer than
that in the middle of a request (or before its first byte) is closed without an answer:
a stalled client, not a slow one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMEOUT_BODY = b'{"error": "request headers not received in time", "status": 408}'
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    idle_timeout: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        if self._idle_timer is not None:
            self._arm_idle_timer()
        super().data_received(data)

    def on_message_complete(self) -> None:
        self._disarm_idle_timer()
        super().on_message_complete()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()
        self._arm_idle_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        self._disarm_idle_timer()
        super().connection_lost(exc)

    def _arm_idle_timer(self) -> None:
        self._disarm_idle_timer()
        if self.idle_timeout is not None:
            self._idle_timer = self.loop.call_later(self.idle_timeout, self._stalled)

    def _disarm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _stalled(self) -> None:
        self._idle_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


def bounded_protocol(
    header_timeout: float, idle_timeout: float | None = None
) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` setting, with these timeouts."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "idle_timeout": idle_timeout},
    )
