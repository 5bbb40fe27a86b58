"""A gunicorn ``gthread`` worker that buffers each request before a thread takes it.

Plain ``gthread`` hands a connection to a thread as soon as its first bytes arrive; the
thread then blocks reading the rest, so a few clients that send half a request and stop
hold every thread (ingest and readiness stall). Here the main loop's poller collects a
request's bytes without a thread: a connection goes to a thread only once its headers
and body (up to ``MAX_BUFFERED`` bytes) are in. A request must arrive within
``read_timeout`` seconds in all, and with no pause longer than ``idle_timeout``; past
either it is answered 408 (or closed) and its connection dropped. Larger bodies stream
to the app with ``idle_timeout`` on every read.
"""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import time
from typing import Any, Final

from gunicorn.workers import gthread

MAX_BUFFERED: Final = 2 * 1024 * 1024
MAX_HEADER_BYTES: Final = 64 * 1024
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b'Content-Length: 47\r\n\r\n{"error": "request not received in time (408)"}'
)


class BufferedSocket(socket.socket):
    """A client socket that first replays bytes the poller buffered, and whose blocking
    mode always carries a read timeout."""

    idle_timeout: float = 10.0

    def adopt(self) -> BufferedSocket:
        self.buffered = bytearray()
        self.started: float | None = None
        return self

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.idle_timeout)
        else:
            super().setblocking(False)

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self.buffered and not flags:
            out = bytes(self.buffered[:size])
            del self.buffered[:size]
            return out
        return super().recv(size, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self.buffered and not flags:
            data = self.recv(nbytes or len(buffer))
            buffer[: len(data)] = data
            return len(data)
        return super().recv_into(buffer, nbytes, flags)


def request_complete(data: bytes | bytearray) -> bool:
    """Whether ``data`` holds a whole request head and body (or enough to stream)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) >= MAX_HEADER_BYTES  # let the parser refuse it
    head = bytes(data[: end + 2]).lower()
    body = len(data) - end - 4
    length = _CONTENT_LENGTH.search(head)
    if length:
        return body >= int(length.group(1)) or len(data) >= MAX_BUFFERED
    if _CHUNKED.search(head):
        return data.find(b"0\r\n\r\n", end) >= 0 or len(data) >= MAX_BUFFERED
    return True


class BufferingThreadWorker(gthread.ThreadWorker):
    """``gthread`` with requests buffered by the poller (see the module docstring)."""

    read_timeout: float = 30.0
    idle_timeout: float = 10.0

    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        sock = BufferedSocket(client.family, client.type, client.proto, fileno=client.detach())
        sock.idle_timeout = self.idle_timeout
        self.nr_conns += 1
        sock.adopt().setblocking(True)
        self.enqueue_req(gthread.TConn(self.cfg, sock, address, listener.getsockname()))

    def _fill(self, sock: BufferedSocket) -> bool:
        """Read what has arrived, without waiting; False when the client went away."""
        while len(sock.buffered) < MAX_BUFFERED:
            try:
                chunk = socket.socket.recv(sock, 65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if not chunk:
                return bool(sock.buffered) and request_complete(sock.buffered)
            if sock.started is None:
                sock.started = time.monotonic()
            sock.buffered += chunk
        return True

    def handle(self, conn: Any) -> Any:
        sock = conn.sock
        pipelined = conn.parser is not None and conn.parser.unreader.buf.getvalue()
        if isinstance(sock, BufferedSocket) and not pipelined:
            if not self._fill(sock):
                return False
            if not request_complete(sock.buffered):
                if sock.started is not None and time.monotonic() - sock.started > self.read_timeout:
                    with contextlib.suppress(OSError):  # the client may be gone
                        socket.socket.sendall(sock, _TIMEOUT_ANSWER)
                    return False
                return gthread._DEFER
            sock.started = None
            conn.data_ready = True
        return super().handle(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        super().finish_request(conn, fs)
        if not fs.cancelled() and fs.result() is gthread._DEFER and conn in self.pending_conns:
            # A request part-way in may pause up to idle_timeout (not keepalive).
            conn.timeout = time.monotonic() + self.idle_timeout
