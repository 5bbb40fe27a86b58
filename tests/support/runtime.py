"""Shared helpers of the runtime tests: real HTTP servers on 127.0.0.1 and event builders."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import requests
import uvicorn
from aiservice_functions.runtime.app import FunctionService
from aiservice_functions.runtime.asgi import EventApp
from aiservice_functions.runtime.config import RuntimeConfig
from aiservice_functions.runtime.function import Function
from aiservice_functions.serving.asgi_server import bind
from aiservice_functions.serving.http_protocol import bounded_protocol
from flask import Flask
from werkzeug.serving import make_server

BASE_ENV = {
    "K_REVISION": "echo-00002",
    "AISVC_SERVICE": "echo",
    "AISVC_NAMESPACE": "shop",
    "AISVC_MODEL_VERSION": "v2",
    "AISVC_REPLY_TYPE": "com.example.echoed",
}


def config_for(
    function: Function, env: Mapping[str, str] | None = None, **overrides: Any
) -> RuntimeConfig:
    cfg = RuntimeConfig.from_env(function.batching, env={**BASE_ENV, **(env or {})})
    return replace(cfg, **overrides)


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve ``app`` as the runtime does: uvicorn with the event front, on a free port."""
    service = app.extensions["aisvc"]
    assert isinstance(service, FunctionService)
    sock = bind("127.0.0.1", 0)
    sock.listen(64)
    config = service.config
    server = uvicorn.Server(
        uvicorn.Config(
            EventApp(app),
            http=bounded_protocol(config.header_timeout_seconds),
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        service.close()


@contextmanager
def serving_wsgi(app: Flask) -> Iterator[str]:
    """Serve ``app`` with werkzeug's threaded server: the WSGI app on its own."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        service = app.extensions["aisvc"]
        assert isinstance(service, FunctionService)
        service.close()


def wait_ready(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"{base}/health/readiness", timeout=2)
            if response.status_code == 200:
                return
            last = response.text
        except (requests.ConnectionError, requests.Timeout) as err:
            # Refused before the port is bound; held unanswered while gunicorn's workers
            # are still importing torch (the master accepts for them): both mean "not yet".
            last = err
        time.sleep(0.05)
    raise AssertionError(f"{base} did not become ready: {last}")


def binary_headers(**extra: str) -> dict[str, str]:
    headers = {
        "ce-id": "req-1",
        "ce-source": "/tests/client",
        "ce-type": "com.example.request",
        "ce-specversion": "1.0",
        "content-type": "application/json",
    }
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


def post_binary(base: str, data: Any, session: Any = requests, **extra: str) -> requests.Response:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return session.post(f"{base}/", data=body, headers=binary_headers(**extra), timeout=30)


def post_structured(
    base: str, data: Any = None, session: Any = requests, **attrs: Any
) -> requests.Response:
    doc: dict[str, Any] = {
        "id": "req-1",
        "source": "/tests/client",
        "type": "com.example.request",
        "specversion": "1.0",
        **attrs,
    }
    if data is not None:
        doc["data"] = data
    return session.post(
        f"{base}/",
        data=json.dumps(doc).encode(),
        headers={"content-type": "application/cloudevents+json"},
        timeout=30,
    )


def metric_value(text: str, name: str, **labels: str) -> float:
    """Value of one sample in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        sample, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in sample for k, v in labels.items()):
            return float(value)
    return 0.0
