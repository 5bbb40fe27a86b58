"""Slow clients cannot stall the event store: eight connections that send half a request
and stop are held by the server's poller, not its threads, while a normal request is
answered; a stalled request is dropped after its idle time, a trickling one gets 408.
A real server process (gunicorn, 8 threads) on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiservice_functions import contract

from tests.support.event_store import dead_letter_headers, free_port
from tests.support.processes import running

PATH = contract.dead_letter_path("shop", "sentiment")
HALF_HEAD = f"POST {PATH} HTTP/1.1\r\nHost: store\r\nce-id: x".encode()
HALF_BODY = (
    f"POST {PATH} HTTP/1.1\r\nHost: store\r\nContent-Type: application/json\r\n"
    'Content-Length: 400\r\n\r\n{"text": "half'
).encode()


def _start(tmp_path: Path, *extra: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [
        sys.executable, "-m", "aiservice_functions.event_store", "serve", "--db",
        f"sqlite:///{tmp_path}/e.db", "--port", str(port), "--allow-unauthenticated",
        "--threads", "8", *extra,
    ]  # fmt: skip
    with running(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + contract.PATH_LIVENESS).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the store did not start"
            time.sleep(0.1)
        yield base, port


@pytest.fixture
def patient(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A store that lets a paused request wait long (so the slow ones stay held)."""
    yield from _start(tmp_path, "--idle-timeout", "300s", "--read-timeout", "600s")


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[tuple[str, int]]:
    yield from _start(tmp_path, "--idle-timeout", "1s", "--read-timeout", "2s")


def _still_open(sock: socket.socket) -> bool:
    """No answer and no close from the server so far."""
    sock.setblocking(False)
    try:
        sock.recv(1)  # an answer, or b"" for a close
        return False
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


def test_half_sent_requests_do_not_hold_the_threads(patient: tuple[str, int]) -> None:
    base, port = patient
    slow = []
    for i in range(8):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(HALF_HEAD if i % 2 else HALF_BODY)
        slow.append(sock)
    try:
        with httpx.Client(timeout=120) as client:
            body = json.dumps({"text": "fine"}).encode()
            stored = client.post(base + PATH, content=body, headers=dead_letter_headers("ok"))
            assert stored.status_code == 201, stored.text
            assert client.get(base + contract.PATH_READINESS).status_code == 200
        assert all(_still_open(s) for s in slow)  # answered while the slow ones are held
        # A held request completes normally once the rest arrives.
        rest = b'"}' + b" " * (400 - len(b'{"text": "half"}'))
        slow[0].sendall(rest)
        slow[0].settimeout(60)
        assert slow[0].recv(64).startswith(b"HTTP/1.1 400")  # no ce-* headers: not an event
    finally:
        for sock in slow:
            sock.close()


def _wait_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded only against a hang)."""
    sock.settimeout(120)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_stalled_request_is_dropped_and_a_trickling_one_answered_408(
    strict: tuple[str, int],
) -> None:
    _, port = strict
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(HALF_HEAD)
    assert _wait_closed(stalled) == b""
    trickle = socket.create_connection(("127.0.0.1", port))
    try:
        for byte in HALF_BODY:
            trickle.sendall(bytes([byte]))
            time.sleep(0.2)
    except OSError:  # the server closed it: what it said came first
        pass
    answer = _wait_closed(trickle)
    assert answer.startswith(b"HTTP/1.1 408")
