"""The console tests' world: a real event store process with a token and a read token,
and a real HTTP endpoint standing in for the Broker that replays are sent to."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiservice_functions import contract

from tests.support.processes import stop

TOKEN = "console-test-token-5f2c"
READ_TOKEN = "console-read-token-91ab"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A real HTTP endpoint standing in for the Broker ingress: records what is replayed."""

    server: ThreadingHTTPServer
    events: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def received(self, event_id: str) -> list[dict[str, str]]:
        with self.lock:
            return [e for e in self.events if e.get("ce-id") == event_id]


def start_broker() -> Broker:
    broker: Broker

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            with broker.lock:
                broker.events.append({k.lower(): v for k, v in self.headers.items()}
                                     | {"path": self.path})  # fmt: skip
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    broker = Broker(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=broker.server.serve_forever, daemon=True).start()
    return broker


@dataclass
class Store:
    url: str
    broker: Broker
    http: httpx.Client

    def dead_letter(
        self,
        namespace: str,
        name: str,
        *,
        event_id: str = "",
        type_: str = "com.example.review.submitted",
        source: str = "/shop/reviews",
        code: int = 500,
        dest: str = "",
        error_body: bytes = b'{"error":"model failed: CUDA out of memory"}',
        data: Any = None,
        extra: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """Post a dead letter the way Knative's dispatcher does; returns (seq, event id)."""
        event_id = event_id or str(uuid.uuid4())
        headers = {
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": source,
            "ce-type": type_,
            "ce-time": "2026-12-04T01:58:12Z",
            f"ce-{contract.EXT_ERROR_DEST}": dest or f"http://{name}.{namespace}.svc.cluster.local",
            f"ce-{contract.EXT_ERROR_CODE}": str(code),
            f"ce-{contract.EXT_ERROR_DATA}": base64.b64encode(error_body).decode(),
            "content-type": "application/json",
            **(extra or {}),
        }
        body = json.dumps(data if data is not None else {"text": "The parcel never came."})
        response = self.http.post(
            self.url + contract.dead_letter_path(namespace, name), headers=headers, content=body
        )
        assert response.status_code == 201, response.text
        return int(response.json()["seq"]), event_id

    def audit(self, namespace: str, name: str, document: dict[str, Any]) -> None:
        response = self.http.post(
            self.url + contract.audit_path(namespace, name),
            headers={"content-type": "application/cloudevents+json"},
            content=json.dumps(document),
        )
        assert response.status_code == 201, response.text

    def get(self, seq: int) -> dict[str, Any]:
        response = self.http.get(
            f"{self.url}/v1/events/{seq}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@contextmanager
def running_store(work: Path) -> Iterator[Store]:
    """``python -m aiservice_functions.event_store serve`` with a token and a read token."""
    read_file = work / "read-token"
    read_file.write_text(READ_TOKEN)
    broker = start_broker()
    port = free_port()
    env = {
        **os.environ,
        contract.ENV_EVENT_STORE_TOKEN: TOKEN,
        "PYTHONPATH": os.pathsep.join([str(REPO / "functions"), os.environ.get("PYTHONPATH", "")]),
    }
    log = (work / "store.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiservice_functions.event_store", "serve",
         "--db", f"sqlite:///{work}/events.db", "--host", "127.0.0.1", "--port", str(port),
         "--read-token-file", str(read_file), "--broker-url", broker.url],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(timeout=10)
    deadline = time.monotonic() + 60
    while True:
        try:
            if http.get(url + contract.PATH_READINESS).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            pytest.fail("event store did not start: " + (work / "store.log").read_text()[-2000:])
        time.sleep(0.1)
    try:
        yield Store(url, broker, http)
    finally:
        stop(proc)
        log.close()
        broker.server.shutdown()
        http.close()
