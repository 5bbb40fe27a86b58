"""Fixtures for the event store: both backends (SQLite file, real PostgreSQL), a real HTTP
server around the app, and a real HTTP receiver standing in for the Broker ingress.

PostgreSQL comes from Debian's packages, started by scripts/postgres.sh once per session;
each test gets a database of its own. Without PostgreSQL binaries the PostgreSQL variants
are skipped with that reason.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiservice_functions.event_store import create_app, open_store
from aiservice_functions.event_store.guard import TargetPolicy
from aiservice_functions.event_store.replay import ReplayOptions
from aiservice_functions.event_store.service import EventStore

from tests.support.event_store import TOKEN, Receiver, free_port, serving

LOOPBACK_ALLOWED = TargetPolicy.parse(["127.0.0.0/8"])
REPO = Path(__file__).resolve().parents[2]
POSTGRES_SH = REPO / "scripts" / "postgres.sh"


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a throwaway PostgreSQL cluster (one per test session)."""
    home = tmp_path_factory.mktemp("pg")
    proc = subprocess.run(
        [str(POSTGRES_SH), "start", str(home), str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode == 3:
        pytest.skip(f"PostgreSQL binaries not installed ({proc.stderr.strip()})")
    if proc.returncode != 0:
        pytest.fail(f"could not start PostgreSQL: {proc.stderr[-2000:]}")
    try:
        yield proc.stdout.strip()
    finally:
        subprocess.run([str(POSTGRES_SH), "destroy", str(home)], timeout=60, check=False)


def _new_pg_schema(cluster: str) -> str:
    """A DSN whose tables land in a fresh schema (much cheaper than CREATE DATABASE)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return f"{cluster}?options=-csearch_path%3D{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    cluster = request.getfixturevalue("pg_cluster")
    return _new_pg_schema(cluster)


@pytest.fixture
def store(db_url: str) -> Iterator[EventStore]:
    s = open_store(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def make_server_url(store: EventStore) -> Iterator[Callable[..., str]]:
    """Start the store's app with the given ``create_app`` options; returns its URL."""
    stack: list[Any] = []

    def start(**options: Any) -> str:
        if "retention" in options:  # the store's own setting, read when it starts
            store.retention_policy = options.pop("retention")
        options.setdefault("token", TOKEN)
        # The receivers stand on loopback, which replays refuse unless allow-listed.
        options.setdefault("replay_defaults", ReplayOptions(policy=LOOPBACK_ALLOWED))
        ctx = serving(create_app(store, **options))
        stack.append(ctx)
        return ctx.__enter__()

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
def server(make_server_url: Callable[..., str]) -> str:
    return make_server_url()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    gate = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            if state.hold:
                gate.wait(state.hold)
            event_id = headers.get("ce-id", "")
            with state.lock:
                state.in_flight -= 1
                failing = event_id in state.fail_ids
                state.fail_ids.discard(event_id)
                state.requests.append(
                    {"path": self.path, "headers": headers, "body": body, "failed": failing}
                )
            self.send_response(500 if failing else 202)
            self.send_header("content-length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_port}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
