"""Shared helpers of the event store tests (constants, requests, a test receiver)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiservice_functions import contract
from flask import Flask
from werkzeug.serving import make_server

TOKEN = "s3cret-test-token"
NS = "shop"
SVC = "sentiment"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve ``app`` over real HTTP on 127.0.0.1; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def dead_letter_headers(
    event_id: str,
    *,
    source: str = "/shop/reviews",
    type_: str = "com.example.review.submitted",
    code: int = 500,
    dest: str = f"http://{SVC}.{NS}.svc.cluster.local",
    error_body: bytes = b'{"error":"model failed"}',
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Binary-mode headers of a dead letter as Knative's dispatcher sends it."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": source,
        "ce-type": type_,
        "ce-time": "2026-01-01T12:00:00Z",
        "ce-traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        f"ce-{contract.EXT_ERROR_DEST}": dest,
        f"ce-{contract.EXT_ERROR_CODE}": str(code),
        f"ce-{contract.EXT_ERROR_DATA}": base64.b64encode(error_body).decode(),
        "content-type": "application/json",
    }
    headers.update(extra or {})
    return headers


def post_dead_letter(
    client: httpx.Client,
    base: str,
    event_id: str,
    *,
    namespace: str = NS,
    name: str = SVC,
    data: Any = None,
    **kwargs: Any,
) -> httpx.Response:
    body = json.dumps(data if data is not None else {"text": f"review {event_id}"}).encode()
    return client.post(
        base + contract.dead_letter_path(namespace, name),
        headers=dead_letter_headers(event_id, **kwargs),
        content=body,
    )


@dataclass
class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that records requests and can fail some."""

    url: str = ""
    fail_ids: set[str] = field(default_factory=set)
    """Answer 500 to events with these ids (each only once, then accept)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    hold: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, event_id: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["headers"].get("ce-id") == event_id]


@contextmanager
def serving_front(app: Flask, read_timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` behind the production ASGI front (uvicorn + httptools) on 127.0.0.1,
    in a thread of this process; yields the base URL."""
    import uvicorn
    from aiservice_functions.event_store.ingest_front import StoreApp
    from aiservice_functions.serving.http_protocol import bounded_protocol

    port = free_port()
    config = uvicorn.Config(
        StoreApp(app, read_timeout=read_timeout),
        host="127.0.0.1",
        port=port,
        http=bounded_protocol(read_timeout),
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="store-front", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the store's front did not start")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
