"""What the decision log costs: the hot path with the log on vs off, and how many decision
records per second the event store ingests on SQLite and on PostgreSQL.

    python benchmarks/decision_log.py [--events 400] [--rounds 2] [--ingest 2000]
                                      [--part hot,ingest] [--postgres]

Hot path: `aisvc up` (its own process, as users run it) with one AIService on the fraud
function (maxScale 1), once without and once with `spec.decisionLog` (includeData). The
same events go through the broker at concurrency 1 (the clock per event: ingress to the
reply logged by the broker, i.e. the latency an event sees) and 16 (throughput). The log
runs off the function's path (Triggers to the event store), so what it can cost here is
CPU shared on one machine: broker fan-out and store writes. Rounds alternate off/on
runs; the best round of each is kept. Cost = 1 - on/off.

Ingest: the event store served as in production (`python -m aiservice_functions.event_store
serve`, gunicorn gthread, 1 worker x 8 threads), N binary-mode CloudEvents posted to
`.../decisions/inputs?data=true` 16 at a time, each committed (SQLite: WAL,
synchronous=FULL) before its answer. PostgreSQL (`--postgres`) is a throwaway cluster
from scripts/postgres.sh, which runs with fsync off: its figure is an upper bound.

The output records `os.getloadavg()` at start and end; with a 1-minute load above 1.5
the figures are marked noisy (other work shares the cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_overhead import FRAUD_MODEL, ROOT, TRANSACTION, broker_round, headers, manifest, stop

NOISY_LOAD = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_up(work: Path, logged: bool) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    doc = manifest("fraud", work)
    if logged:
        doc["spec"]["decisionLog"] = {"includeData": True}
    tag = "on" if logged else "off"
    (work / f"bench-{tag}.yaml").write_text(yaml.safe_dump(doc))
    state_dir = work / f".aisvc-{tag}"
    command = [
        sys.executable, "-m", "aiservice_operator.cli.local", "up",
        "-f", str(work / f"bench-{tag}.yaml"), "--state-dir", str(state_dir),
        "--broker-port", "0", "--serving-port", "0", "--event-store-port", "0", "--no-live",
    ]  # fmt: skip
    log = open(work / f"up-{tag}.log", "wb")  # noqa: SIM115 - lives as long as the process
    up = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not (state_dir / "local.json").exists():
        if up.poll() is not None or time.monotonic() > deadline:
            stop(up)
            raise RuntimeError((work / f"up-{tag}.log").read_text())
        time.sleep(0.2)
    return up, json.loads((state_dir / "local.json").read_text())


async def function_latency(
    session: aiohttp.ClientSession, state: dict[str, Any]
) -> tuple[float, float]:
    """(sum, count) of the function's own latency histogram, from its /metrics."""
    async with session.get(state["statusUrl"]) as resp:
        status = await resp.json()
    endpoint = status["services"][0]["revisions"][0]["endpoints"][0]
    async with session.get(endpoint + "/metrics") as resp:
        text = await resp.text()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("aisvc_function_latency_seconds_sum") and 'outcome="replied"' in line:
            total += float(line.rsplit(" ", 1)[1])
        elif (
            line.startswith("aisvc_function_latency_seconds_count") and 'outcome="replied"' in line
        ):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


async def hot_round(state: dict[str, Any], n: int, c: int) -> tuple[float, float]:
    """(events/s through the broker, the function's own mean latency in ms)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        broker = state["brokers"]["bench/default"]
        before = await function_latency(session, state)
        result = await broker_round(session, broker, state["statusUrl"], n, c, {})
        after = await function_latency(session, state)
    mean_ms = (after[0] - before[0]) / max(after[1] - before[1], 1) * 1000
    return float(result["rate"]), mean_ms


def hot_path(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for logged in (False, True):
        up, state = start_up(work, logged)
        try:
            asyncio.run(hot_round(state, 100, 4))  # warm-up
            rates = {
                c: [asyncio.run(hot_round(state, args.events, c)) for _ in range(args.rounds)]
                for c in (1, 16)
            }
        finally:
            stop(up)
        out["on" if logged else "off"] = rates
    summary = {}
    for c in (1, 16):
        off, on = max(r for r, _ in out["off"][c]), max(r for r, _ in out["on"][c])
        fn_off = min(ms for _, ms in out["off"][c])
        fn_on = min(ms for _, ms in out["on"][c])
        summary[f"c{c}"] = {
            "function_latency_ms_off": round(fn_off, 3),
            "function_latency_ms_on": round(fn_on, 3),
            "function_latency_cost": round(fn_on / fn_off - 1, 3),
            "broker_events_s_off": round(off, 1),
            "broker_events_s_on": round(on, 1),
            "broker_throughput_cost": round(1 - on / off, 3),
            "rounds": {"off": [[round(r, 1), round(ms, 3)] for r, ms in out["off"][c]],
                       "on": [[round(r, 1), round(ms, 3)] for r, ms in out["on"][c]]},
        }  # fmt: skip
    return summary


async def post_decisions(url: str, n: int, c: int) -> float:
    body = json.dumps({"text": "the parcel arrived late", "customer": {"id": 7}}).encode()
    remaining = iter(range(n))

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in remaining:
            headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()),
                       "ce-source": "/bench", "ce-type": "bench.request",
                       "content-type": "application/json"}  # fmt: skip
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"ingest answered {resp.status}")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(c)))
        return n / (time.perf_counter() - start)


def ingest_rate(db: str, n: int, work: Path) -> float:
    port = free_port()
    command = [
        sys.executable, "-m", "aiservice_functions.event_store", "serve", "--db", db,
        "--host", "127.0.0.1", "--port", str(port), "--allow-unauthenticated",
    ]  # fmt: skip
    log = open(work / "store.log", "ab")  # noqa: SIM115 - lives as long as the process
    store = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/health/readiness", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or store.poll() is not None:
                    raise RuntimeError((work / "store.log").read_text()) from None
                time.sleep(0.2)
        url = base + "/v1/namespaces/bench/aiservices/bench/decisions/inputs?data=true"
        asyncio.run(post_decisions(url, 200, 16))  # warm-up
        return asyncio.run(post_decisions(url, n, 16))
    finally:
        stop(store)


def runtime_cost(events: int) -> dict[str, float]:
    """The function runtime's own cost of the reply attributes the log links by
    (causationid, correlationid, latency): `handle()` on the fraud function in-process,
    with the reply extensions as they are and as they were without them, interleaved."""
    from aiservice_functions import contract, fraud
    from aiservice_functions.runtime.app import FunctionService, create_app
    from aiservice_functions.runtime.config import RuntimeConfig

    env = {"K_REVISION": "bench-v1", "AISVC_SERVICE": "bench", "AISVC_NAMESPACE": "bench",
           "AISVC_MODEL_VERSION": "v1", "AISVC_REPLY_TYPE": "bench.scored",
           "AISVC_MODEL_URI": FRAUD_MODEL, "AISVC_BATCH_MAX_SIZE": "1"}  # fmt: skip
    app = create_app(fraud.function, RuntimeConfig.from_env(fraud.function.batching, env=env))
    service = app.extensions["aisvc"]
    client = app.test_client()
    deadline = time.monotonic() + 60
    while client.get(contract.PATH_READINESS).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("fraud model did not load")
        time.sleep(0.1)
    with_links = FunctionService._reply_extensions

    def without_links(incoming: Any, trace: Any, latency_ms: Any = None) -> dict[str, Any]:
        out = with_links(incoming, trace, None)
        for name in (contract.EXT_CAUSATION, contract.EXT_CORRELATION):
            out.pop(name, None)
        return out

    body = json.dumps(TRANSACTION).encode()
    timings: dict[str, list[float]] = {"with": [], "without": []}
    for round_ in range(6):
        variant = "with" if round_ % 2 else "without"
        service._reply_extensions = with_links if variant == "with" else without_links
        start = time.perf_counter()
        for _ in range(events):
            answer = service.handle(headers(), body)
            assert answer.status == 200
        timings[variant].append((time.perf_counter() - start) / events * 1e6)
    service.close()
    best = {k: min(v) for k, v in timings.items()}
    return {
        "handle_us_without_links": round(best["without"], 1),
        "handle_us_with_links": round(best["with"], 1),
        "cost": round(best["with"] / best["without"] - 1, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ingest", type=int, default=2000)
    parser.add_argument("--part", default="runtime,hot,ingest")
    parser.add_argument("--postgres", action="store_true", help="also ingest into PostgreSQL")
    args = parser.parse_args()
    parts = set(args.part.split(","))
    result: dict[str, Any] = {"load_average_start": os.getloadavg(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "runtime" in parts:
            result["runtime"] = runtime_cost(args.events * 5)
        if "hot" in parts:
            result["hot_path"] = hot_path(args, work)
        if "ingest" in parts:
            result["ingest_sqlite_per_s"] = round(
                ingest_rate(f"sqlite:///{work}/store.db", args.ingest, work), 1
            )
            if args.postgres:
                pg = work / "pg"
                script = str(ROOT / "scripts" / "postgres.sh")
                dsn = subprocess.run(
                    [script, "start", str(pg), str(free_port())],
                    capture_output=True, text=True, check=True, timeout=120,
                ).stdout.strip()  # fmt: skip
                try:
                    result["ingest_postgresql_per_s"] = round(
                        ingest_rate(dsn, args.ingest, work), 1
                    )
                finally:
                    subprocess.run([script, "destroy", str(pg)], timeout=60, check=False)
    result["load_average_end"] = os.getloadavg()
    result["noisy"] = (
        max(result["load_average_start"][0], result["load_average_end"][0]) > NOISY_LOAD
    )
    result["command"] = " ".join(["python", "benchmarks/decision_log.py", *sys.argv[1:]])
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
