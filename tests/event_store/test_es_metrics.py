"""The event store's /metrics over real HTTP: ingest outcomes, replay results, retention
deletions and store latency count what the requests did; no token is needed and no event
data shows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiservice_functions import contract
from aiservice_functions.event_store import telemetry
from aiservice_functions.event_store.retention import RetentionPolicy
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.support.event_store import (
    AUTH,
    NS,
    SVC,
    Receiver,
    dead_letter_headers,
    free_port,
    post_dead_letter,
)
from tests.support.processes import stop

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client, server: str) -> tuple[str, Samples]:
    response = client.get(f"{server}{contract.PATH_METRICS}")  # no Authorization header
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_ingest_outcomes_are_counted_per_kind(server: str, client: httpx.Client) -> None:
    for event_id in ("a", "b", "c"):
        assert post_dead_letter(client, server, event_id).status_code == 201
    assert post_dead_letter(client, server, "a").status_code == 200  # redelivery
    not_an_event = client.post(
        server + contract.dead_letter_path(NS, SVC), content=b"{}", headers={"content-type": "x"}
    )
    assert not_an_event.status_code in (400, 415)
    too_large = client.post(
        server + contract.dead_letter_path(NS, SVC),
        headers=dead_letter_headers("huge"),
        content=b"x" * (contract.DEFAULT_MAX_BODY_BYTES + 10),
    )
    assert too_large.status_code == 413
    audit = client.post(
        server + contract.audit_path(NS, SVC),
        headers={**dead_letter_headers("decision-1"), "ce-type": "dev.aiservice.rollout.decision"},
        content=b"{}",
    )
    assert audit.status_code == 201

    text, samples = scrape(client, server)
    name = "aisvc_event_store_ingested_total"
    assert value(samples, name, kind="dead-letter", outcome="stored") == 3
    assert value(samples, name, kind="dead-letter", outcome="duplicate") == 1
    assert value(samples, name, kind="dead-letter", outcome="refused") == 2
    assert value(samples, name, kind="dead-letter", outcome="unavailable") == 0
    assert value(samples, name, kind="audit", outcome="stored") == 1
    # Per AIService, revision and code: the three stored, the redelivery not again.
    letters = "aisvc_event_store_dead_letters_total"
    assert value(samples, letters, namespace=NS, aiservice=SVC, revision="none", code="500") == 3
    # Every add that reached the database was timed: 3 stored + 1 duplicate + 1 audit.
    assert value(samples, "aisvc_event_store_store_duration_seconds_count", operation="add") == 5
    assert value(samples, "aisvc_event_store_store_duration_seconds_sum", operation="add") > 0
    # Counts only: neither ids, sources nor event data reach the metrics; the AIService's
    # name only as a label.
    assert "review a" not in text and "/shop/reviews" not in text
    assert all(f'"{SVC}"' in line for line in text.splitlines() if SVC in line)


def test_queries_and_replays_are_counted(
    server: str, client: httpx.Client, receiver: Receiver
) -> None:
    for event_id in ("r1", "r2", "r3"):
        post_dead_letter(client, server, event_id)
    receiver.fail_ids = {"r2"}
    assert client.get(f"{server}/v1/events", headers=AUTH).status_code == 200
    assert client.get(f"{server}/v1/events/1", headers=AUTH).status_code == 200
    response = client.post(
        f"{server}/v1/replay", json={"all": True, "target": receiver.url}, headers=AUTH
    )
    assert (response.json()["replayed"], response.json()["failed"]) == (2, 1)

    _, samples = scrape(client, server)
    pending = "aisvc_event_store_dead_letters_pending"
    assert value(samples, pending, namespace=NS, aiservice=SVC) == 1  # r2 failed again
    assert value(samples, "aisvc_event_store_replayed_total", result="replayed") == 2
    assert value(samples, "aisvc_event_store_replayed_total", result="failed") == 1
    jobs = "aisvc_event_store_replay_jobs_total"
    assert value(samples, jobs, outcome="partial") == 1
    assert value(samples, jobs, outcome="replayed") == value(samples, jobs, outcome="failed") == 0
    timed = "aisvc_event_store_store_duration_seconds_count"
    assert value(samples, timed, operation="page") == 1
    assert value(samples, timed, operation="get") == 1


def test_pending_dead_letters_are_counted_per_aiservice(
    server: str, client: httpx.Client, receiver: Receiver
) -> None:
    _, samples = scrape(client, server)
    assert not any(name == "aisvc_event_store_dead_letters_pending" for name, _ in samples)
    for event_id in ("p1", "p2"):
        post_dead_letter(client, server, event_id)
    post_dead_letter(client, server, "q1", name="other")
    _, samples = scrape(client, server)
    pending = "aisvc_event_store_dead_letters_pending"
    assert value(samples, pending, namespace=NS, aiservice=SVC) == 2
    assert value(samples, pending, namespace=NS, aiservice="other") == 1
    replayed = client.post(
        f"{server}/v1/replay",
        json={"filter": {"name": "other"}, "target": receiver.url},
        headers=AUTH,
    )
    assert replayed.json()["replayed"] == 1
    _, samples = scrape(client, server)
    assert value(samples, pending, namespace=NS, aiservice=SVC) == 2
    # Still shown, at zero: a panel of pending dead letters drops to 0, it does not vanish.
    assert samples[(pending, frozenset({"namespace": NS, "aiservice": "other"}.items()))] == 0


def test_dead_letter_series_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "MAX_DEAD_LETTER_SERIES", 2)
    metrics = telemetry.StoreMetrics()
    for revision in ("r1", "r2", "r3", "r4", "r1"):
        metrics.dead_letter(NS, SVC, revision, 500)
    samples = {
        tuple(s.labels[k] for k in ("namespace", "aiservice", "revision", "code")): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == "aisvc_event_store_dead_letters_total"
    }
    assert samples == {
        (NS, SVC, "r1", "500"): 2,
        (NS, SVC, "r2", "500"): 1,
        ("other", "other", "other", "other"): 2,
    }


def test_dead_letter_counts_carry_the_revision(server: str, client: httpx.Client) -> None:
    extra = {f"ce-{contract.EXT_REVISION}": "svc-v2"}
    post_dead_letter(client, server, "rev-1", code=503, extra=extra)
    _, samples = scrape(client, server)
    letters = "aisvc_event_store_dead_letters_total"
    assert value(samples, letters, namespace=NS, aiservice=SVC, revision="svc-v2", code="503") == 1


def test_retention_deletions_are_counted(
    make_server_url: Callable[..., str], client: httpx.Client
) -> None:
    server = make_server_url(
        retention=RetentionPolicy(max_count=2, interval_s=0.05, batch=10, pause_s=0)
    )
    for i in range(5):
        assert post_dead_letter(client, server, f"old-{i}").status_code == 201
    name = "aisvc_event_store_retention_deleted_total"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, samples = scrape(client, server)
        if value(samples, name, limit="max_count") >= 3:
            break
        time.sleep(0.05)
    assert value(samples, name, limit="max_count") == 3
    assert value(samples, name, limit="max_age") == 0


def test_several_workers_answer_for_all_of_them(tmp_path: Path) -> None:
    """Real gunicorn with two worker processes: whichever worker answers /metrics, it
    counts the events every worker stored (samples shared through the server's own
    PROMETHEUS_MULTIPROC_DIR, made under TMPDIR as the function runtime makes its own)."""
    port = free_port()
    tmp = tmp_path / "tmp"
    # A directory a killed server left (removed at start), and one inherited from the
    # environment, as the processes of a local run share it (ignored, left alone).
    left = tmp / f"aisvc-metrics-{_dead_pid()}-old"
    left.mkdir(parents=True)
    (left / "counter_1.db").write_bytes(b"stale")
    inherited = tmp_path / "inherited"
    inherited.mkdir()
    (inherited / "counter_2.db").write_bytes(b"someone else's")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(inherited), "TMPDIR": str(tmp)}
    command = [sys.executable, "-m", "aiservice_functions.event_store", "serve"]
    args = ["--db", f"sqlite:///{tmp_path}/events.db", "--host", "127.0.0.1"]
    log = (tmp_path / "log").open("wb")
    proc = subprocess.Popen(
        [*command, *args, "--port", str(port), "--workers", "2", "--threads", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, (tmp_path / "log").read_text()[-2000:]
                try:
                    if client.get(base + contract.PATH_READINESS).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "store did not become ready"
                time.sleep(0.1)
            shared = next(tmp.glob(f"aisvc-metrics-{proc.pid}-*"))
            assert not left.exists()
            for i in range(8):
                # A new connection each: gunicorn hands them to either worker.
                response = httpx.post(
                    base + contract.dead_letter_path(NS, SVC),
                    headers=dead_letter_headers(f"w-{i}"),
                    content=b"{}",
                    timeout=10,
                )
                assert response.status_code == 201
            for _ in range(4):
                with httpx.Client(timeout=10) as fresh:  # a new connection, any worker
                    _, samples = scrape(fresh, base)
                name = "aisvc_event_store_ingested_total"
                assert value(samples, name, kind="dead-letter", outcome="stored") == 8
            # Two workers, each with its own file; the answer above is their sum (in a
            # typical run gunicorn spreads the eight events 4 and 4).
            per_worker = _stored_per_worker(shared)
            assert len(per_worker) == 2 and sum(per_worker.values()) == 8
        assert (inherited / "counter_2.db").read_bytes() == b"someone else's"
    finally:
        stop(proc, group=True)
        log.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


def _stored_per_worker(shared: Path) -> dict[str, float]:
    """Dead letters stored, per worker file of the shared directory."""
    out = {}
    for path in shared.glob("counter_*.db"):
        values = MmapedDict(str(path))
        try:
            out[path.name] = sum(
                v for key, v, _ in values.read_all_values() if "ingested" in key and "stored" in key
            )
        finally:
            values.close()
    return out
