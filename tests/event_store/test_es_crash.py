"""Crash safety of the served store (gunicorn, the real entry point), on both backends.

Events stream in from several clients; the whole process group is killed with SIGKILL
mid-stream. After a restart every acknowledged (2xx) event is there, none twice, and
re-sending everything (what Knative does for unacknowledged events) completes the set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from aiservice_functions import contract
from aiservice_functions.event_store import open_store
from aiservice_functions.event_store.records import EventFilter

from tests.support.event_store import NS, SVC, TOKEN, dead_letter_headers, free_port

SENSITIVE = "SENSITIVE-PAYLOAD-7731"


@contextmanager
def served(db_url: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    # PostgreSQL runs with two worker processes: both create the schema at start-up
    # (serialised by an advisory lock) and write concurrently.
    workers = "2" if db_url.startswith("postgresql") else "1"
    env = dict(os.environ, **{contract.ENV_EVENT_STORE_TOKEN: TOKEN})
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiservice_functions.event_store",
                "serve",
                "--db",
                db_url,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--threads",
                "4",
                "--workers",
                workers,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(base + contract.PATH_READINESS, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "store did not become ready"
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _send(client: httpx.Client, base: str, event_id: str) -> int:
    response = client.post(
        base + contract.dead_letter_path(NS, SVC),
        headers=dead_letter_headers(
            event_id, error_body=b'{"error":"' + SENSITIVE.encode() + b'"}'
        ),
        content=b'{"text":"' + SENSITIVE.encode() + b'"}',
    )
    return response.status_code


def test_sigkill_mid_stream_loses_no_acknowledged_event(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "store.log"
    acked: set[str] = set()
    attempted: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    with served(db_url, log) as (proc, base):

        def stream(worker: int) -> None:
            with httpx.Client(timeout=5) as client:
                for n in range(10_000):
                    event_id = f"w{worker}-{n}"
                    with lock:
                        attempted.append(event_id)
                    try:
                        status = _send(client, base, event_id)
                    except httpx.HTTPError:
                        return  # the store is gone
                    if 200 <= status < 300:
                        with lock:
                            acked.add(event_id)
                            if len(acked) >= 60:
                                enough.set()

        senders = [threading.Thread(target=stream, args=(w,)) for w in range(3)]
        for t in senders:
            t.start()
        assert enough.wait(60), "events did not stream in"
        os.killpg(proc.pid, signal.SIGKILL)  # the store and its workers, mid-stream
        for t in senders:
            t.join(30)

    store = open_store(db_url)
    try:
        page = store.events.page(EventFilter(), limit=500)
        stored = [r.event_id for r in page.items]
        assert page.next_cursor is None
        assert len(stored) == len(set(stored)), "an event was stored twice"
        assert acked <= set(stored), f"lost acknowledged events: {sorted(acked - set(stored))}"
    finally:
        store.close()

    # Knative redelivers what was not acknowledged (and may redeliver what was).
    with served(db_url, log) as (_, base), httpx.Client(timeout=10) as client:
        statuses = [_send(client, base, event_id) for event_id in attempted]
        assert all(s in (200, 201) for s in statuses)
        assert statuses.count(201) == len(attempted) - len(stored)

    store = open_store(db_url)
    try:
        final = [r.event_id for r in store.events.page(EventFilter(), limit=500).items]
        assert sorted(final) == sorted(set(attempted))
    finally:
        store.close()
    text = log.read_text(errors="replace")
    assert SENSITIVE not in text and TOKEN not in text  # no event data, no secrets in logs


def test_sigkill_under_16_clients_with_redeliveries_keeps_each_acknowledged_record_once(
    db_url: str, tmp_path: Path
) -> None:
    """Group commit under load: 16 senders (every fifth post a redelivery of an earlier
    one), the store killed mid-stream. Every record answered 2xx is stored exactly once
    and whole; a record that got no 2xx is either absent or whole (never half-written)."""
    log = tmp_path / "store.log"
    acked: set[str] = set()
    sent: dict[str, bytes] = {}
    lock = threading.Lock()
    enough = threading.Event()

    def body(event_id: str) -> bytes:
        return json.dumps({"text": f"{SENSITIVE} {event_id}", "n": len(event_id)}).encode()

    with served(db_url, log) as (proc, base):

        def stream(worker: int) -> None:
            with httpx.Client(timeout=10) as client:
                for n in range(5000 // 16 + 1):
                    redelivery = n % 5 == 4
                    event_id = f"w{worker}-{n - 2 if redelivery else n}"
                    with lock:
                        sent[event_id] = body(event_id)
                    try:
                        response = client.post(
                            base + contract.dead_letter_path(NS, SVC),
                            headers=dead_letter_headers(event_id),
                            content=sent[event_id],
                        )
                    except httpx.HTTPError:
                        return  # the store is gone
                    if 200 <= response.status_code < 300:
                        with lock:
                            acked.add(event_id)
                            if len(acked) >= 1500:
                                enough.set()

        senders = [threading.Thread(target=stream, args=(w,)) for w in range(16)]
        for t in senders:
            t.start()
        enough.wait(240)  # kill mid-stream (or at the end, on a very slow machine)
        os.killpg(proc.pid, signal.SIGKILL)
        for t in senders:
            t.join(60)

    store = open_store(db_url)
    try:
        stored: list[tuple[str, object]] = []
        cursor = None
        while True:
            page = store.events.page(EventFilter(), limit=500, cursor=cursor)
            stored += [(r.event_id, r.document.get("data")) for r in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    finally:
        store.close()
    ids = [event_id for event_id, _ in stored]
    assert len(ids) == len(set(ids)), "a record was stored twice"
    assert acked <= set(ids), f"lost acknowledged records: {sorted(acked - set(ids))[:10]}"
    for event_id, data in stored:
        assert data == json.loads(sent[event_id]), f"{event_id} is not whole"
