"""Helpers for the local executor's tests: a recording sink, manifests, a background run."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "local"
"""Where the local tests' function programs (`flaky_fn`) live, for a PYTHONPATH."""


@dataclass
class Sink:
    """An HTTP server that records every CloudEvent posted to it (binary mode)."""

    server: ThreadingHTTPServer
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/"

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)


def start_sink() -> Sink:
    sink: Sink

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            attrs = {
                k[3:].lower(): v for k, v in self.headers.items() if k.lower().startswith("ce-")
            }
            with sink.lock:
                sink.events.append({**attrs, "data": json.loads(body) if body else None})
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = Sink(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return sink


def aiservice(
    name: str,
    consumes: str,
    produces: str,
    models: dict[str, str],
    *,
    split: dict[str, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An AIService running the test function `flaky_fn`."""
    spec: dict[str, Any] = {
        "consumes": [{"type": consumes}],
        "produces": produces,
        "function": {
            "image": "local",
            "entrypoint": "flaky_fn",
            "concurrency": 8,
            "batching": {"maxBatchSize": 1, "maxWaitMs": 0},
        },
        "models": [{"name": n, "uri": uri} for n, uri in models.items()],
        "autoscaling": {"minScale": 0, "maxScale": 2, "target": 8},
        "delivery": {
            "retry": 2,
            "backoffPolicy": "linear",
            "backoffDelay": "PT0.05S",
            "timeout": "PT10S",
        },
    }
    if split:
        spec["traffic"] = {
            "stable": next(iter(split)),
            "split": [{"model": m, "percent": p} for m, p in split.items()],
        }
    spec.update(extra or {})
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": name, "namespace": "t"},
        "spec": spec,
    }


def sink_trigger(name: str, event_type: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "t"},
        "spec": {
            "broker": "default",
            "filter": {"attributes": {"type": event_type}},
            "subscriber": {"uri": url},
        },
    }


def write_manifests(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def model_file(directory: Path) -> tuple[str, Path]:
    """A model file for `flaky_fn` and the path whose existence 'fixes' the function."""
    fixed = directory / "fixed"
    model = directory / "model.json"
    model.write_text(json.dumps({"fixed_file": str(fixed)}))
    return model.as_uri(), fixed


class Background:
    """A `LocalRun` on its own event loop in a thread, driven from synchronous tests."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 120) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.call(self.run.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
