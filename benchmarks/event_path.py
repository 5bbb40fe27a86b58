"""The event store's ingest at production rates, beside what bounds it, in one run.

    python benchmarks/event_path.py [--records 4000] [--concurrency 16] [--rate 4000]
                                    [--part sqlite,postgresql] [--out FILE]

Each part posts N binary-mode CloudEvents, C at a time, from one aiohttp client, and
reports records/s and the p50/p99 of each answer's latency:

- ``store``: the event store as shipped (``python -m aiservice_functions.event_store
  serve``: uvicorn, one worker, group commit), decision ingest
  (``.../decisions/inputs?data=true``) and dead-letter ingest; each record committed
  before its answer. SQLite runs with WAL and ``synchronous=FULL``; PostgreSQL is a
  throwaway cluster from scripts/postgres.sh started durable (``PG_DURABLE=1``: fsync and
  full-page writes on), with one store replica and with two (the client alternates).
- ``paced``: decision ingest offered at ``--rate`` records/s (open loop, up to 64 in
  flight): the latency a sender sees at that rate.
- baselines, same rows, same database settings: (a) ``one commit each`` in-process
  (``DecisionLog.add``), (b) ``batched`` (``add_all``, 200 per commit), and (c) an HTTP
  server answering 201 to the same posts with no database (uvicorn + httptools, the same
  server stack as the store): the ceiling of the HTTP layer with this client.

``aisvc up`` end to end (one fraud AIService, decision log off and on, beside the function
posted to directly) is ``benchmarks/decision_log.py``.

The output records ``os.getloadavg()`` at start and end; a 1-minute load above 1.5 marks
the figures noisy (other work shared the cores). Ratios are taken within the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
NOISY_LOAD = 1.5
NS, SVC = "bench", "fraud"
DATA = json.dumps({"amount": 182.5, "merchant": "m-7731", "country": "DE", "hour": 3}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def headers(i: int, run: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": f"{run}-{i}",
        "ce-source": "/bench/payments",
        "ce-type": "com.example.payment.submitted",
        "ce-time": "2026-12-07T12:00:00Z",
        "ce-traceparent": f"00-{i:032x}-00f067aa0ba902b7-01",
        "content-type": "application/json",
    }


def dead_letter_headers(i: int, run: str) -> dict[str, str]:
    h = headers(i, run)
    h["ce-knativeerrordest"] = "http://fraud.bench.svc.cluster.local"
    h["ce-knativeerrorcode"] = "500"
    return h


# --- servers --------------------------------------------------------------------------


def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def start_store(db: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable, "-m", "aiservice_functions.event_store", "serve", "--db", db,
        "--port", str(port), "--allow-unauthenticated", "--log-format", "json",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, "event store")
    return proc, url


NULL_SERVER = """
import sys
from aiservice_functions.serving.asgi_server import serve_asgi
BODY = b'{"seq":1,"created":true}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
serve_asgi(app, "127.0.0.1", int(sys.argv[1]), 30.0, 10.0)
"""


def start_null_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", NULL_SERVER, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, "HTTP-only server")
    return proc, url


# --- the client -----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def post_all(
    bases: list[str], path: str, n: int, c: int, run: str, dead_letters: bool = False
) -> dict[str, Any]:
    """N posts, C in flight, round-robin over ``bases``: rate, latency, status counts."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    make = dead_letter_headers if dead_letters else headers
    next_i = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            nonlocal next_i
            while next_i < n:
                i = next_i
                next_i += 1
                started = time.perf_counter()
                async with session.post(
                    bases[i % len(bases)] + path, data=DATA, headers=make(i, run)
                ) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        elapsed = time.perf_counter() - began
    return summary(n, elapsed, latencies, statuses)


async def post_paced(base: str, path: str, n: int, rate: float, run: str) -> dict[str, Any]:
    """N posts offered at ``rate``/s (open loop, at most 64 in flight)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    gate = asyncio.Semaphore(64)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                async with session.post(base + path, data=DATA, headers=headers(i, run)) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        tasks = []
        for i in range(n):
            due = began + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    return summary(n, elapsed, latencies, statuses)


def summary(
    n: int, elapsed: float, latencies: list[float], statuses: dict[int, int]
) -> dict[str, Any]:
    return {
        "records": n,
        "seconds": round(elapsed, 3),
        "records_per_s": round(n / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


# --- in-process baselines ---------------------------------------------------------------


def in_process(db: str, n: int, batch: int) -> dict[str, Any]:
    """The same decision rows through the store's own table code, ``batch`` per commit."""
    from aiservice_functions.cloudevents_http import parse_request
    from aiservice_functions.event_store.database import Database
    from aiservice_functions.event_store.decision_records import LogSettings, to_decision
    from aiservice_functions.event_store.decisions import DecisionLog
    from aiservice_functions.event_store.records import now_us

    settings = LogSettings(include_data=True)
    database = Database(db)
    table = DecisionLog(database)
    run = f"inproc{batch}-{time.monotonic_ns()}"
    rows = []
    for i in range(n):
        event = parse_request(headers(i, run), DATA).event
        record = to_decision(event, namespace=NS, name=SVC, role="input", settings=settings,
                             received_at=now_us())  # fmt: skip
        assert record is not None
        rows.append(record)
    began = time.perf_counter()
    for start in range(0, n, batch):
        with database.transaction() as conn:
            table.add_all(conn, rows[start : start + batch])
    elapsed = time.perf_counter() - began
    database.close()
    return {"records": n, "batch": batch, "records_per_s": round(n / elapsed, 1)}


# --- parts ------------------------------------------------------------------------------


def store_part(db: str, args: argparse.Namespace, replicas: int = 1) -> dict[str, Any]:
    procs = [start_store(db) for _ in range(replicas)]
    bases = [url for _, url in procs]
    inputs = f"/v1/namespaces/{NS}/aiservices/{SVC}/decisions/inputs?data=true"
    dead = f"/v1/namespaces/{NS}/aiservices/{SVC}/dead-letters"
    tag = f"r{replicas}-{time.monotonic_ns()}"
    try:
        asyncio.run(post_all(bases, inputs, 300, args.concurrency, f"warm-{tag}"))
        out: dict[str, Any] = {
            "decision_ingest": asyncio.run(
                post_all(bases, inputs, args.records, args.concurrency, f"in-{tag}")
            ),
            "dead_letter_ingest": asyncio.run(
                post_all(bases, dead, args.records, args.concurrency, f"dl-{tag}", True)
            ),
        }
        if replicas == 1:
            out["paced"] = asyncio.run(
                post_paced(bases[0], inputs, args.records, args.rate, f"paced-{tag}")
            )
    finally:
        for proc, _ in procs:
            stop(proc)
    return out


def http_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    proc, url = start_null_server()
    path = f"/v1/namespaces/{NS}/aiservices/{SVC}/decisions/inputs?data=true"
    try:
        asyncio.run(post_all([url], path, 300, args.concurrency, "warm"))
        return asyncio.run(post_all([url], path, args.records, args.concurrency, "null"))
    finally:
        stop(proc)


def start_postgres(home: Path) -> str:
    env = {**os.environ, "PG_DURABLE": "1"}
    proc = subprocess.run(
        ["bash", str(POSTGRES_SH), "start", str(home), str(free_port())],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/postgres.sh: {proc.stderr}")
    return proc.stdout.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rate", type=float, default=4000.0)
    p.add_argument("--part", default="sqlite,postgresql")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    parts = set(args.part.split(","))
    report: dict[str, Any] = {
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "records": args.records,
        "concurrency": args.concurrency,
    }
    report["http_only"] = http_ceiling(args)
    with tempfile.TemporaryDirectory(prefix="aisvc-event-path-") as tmp:
        work = Path(tmp)
        if "sqlite" in parts:
            db = f"sqlite:///{work}/store.db"
            report["sqlite"] = {
                "store": store_part(db, args),
                "one_commit_each": in_process(f"sqlite:///{work}/a.db", args.records, 1),
                "batched_200": in_process(f"sqlite:///{work}/b.db", args.records, 200),
            }
        if "postgresql" in parts:
            home = work / "pg"
            dsn = start_postgres(home)
            try:
                report["postgresql"] = {
                    "store": store_part(dsn, args),
                    "store_2_replicas": store_part(dsn, args, replicas=2),
                    "one_commit_each": in_process(dsn, args.records, 1),
                    "batched_200": in_process(dsn, args.records, 200),
                }
            finally:
                subprocess.run(["bash", str(POSTGRES_SH), "destroy", str(home)], check=False)
    report["load_end"] = [round(x, 2) for x in os.getloadavg()]
    report["noisy"] = max(report["load_start"][0], report["load_end"][0]) > NOISY_LOAD
    ceiling = report["http_only"]["records_per_s"]
    for backend in ("sqlite", "postgresql"):
        if backend in report:
            store = report[backend]["store"]["decision_ingest"]["records_per_s"]
            report[backend]["ratios"] = {
                "store_vs_http_only": round(store / ceiling, 3),
                "store_vs_one_commit_each": round(
                    store / report[backend]["one_commit_each"]["records_per_s"], 3
                ),
            }
            if "store_2_replicas" in report[backend]:
                two = report[backend]["store_2_replicas"]["decision_ingest"]["records_per_s"]
                report[backend]["ratios"]["two_replicas_vs_one"] = round(two / store, 3)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
