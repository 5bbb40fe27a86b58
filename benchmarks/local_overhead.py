"""What the local executor costs: events/s through broker -> Trigger -> function -> reply,
against posting the same events straight to the same function process, in the same run.

    python benchmarks/local_overhead.py [--events 2000] [--concurrency 16] [--rounds 3]

`aisvc up` runs as its own process (as users run it) with one AIService on the fraud
function, one process (maxScale 1), so both paths use the same single function server.
Direct: N CloudEvents posted to the function's port, C at a time, each answered with
its reply. Through the broker: the same N posted to the broker ingress, C at a time
(each durably logged before its 202); the clock stops when the broker has logged the
N-th reply. Rounds alternate between the two paths; the best round of each is kept.
Overhead = 1 - (through-broker rate / direct rate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
FRAUD_MODEL = "pkg://aiservice_functions.fraud/models/fraud-v1.pt"
TRANSACTION = {"amount": 912.5, "merchant_category": "electronics", "hour": 3,
               "country_mismatch": True, "card_present": False}  # fmt: skip


def manifest(function: str, work: Path) -> dict[str, Any]:
    if function == "fraud":
        entrypoint, uri = "aiservice_functions.fraud", FRAUD_MODEL
    else:  # "echo": the tests' torch-free function, for machines without torch
        (work / "echo.json").write_text(json.dumps({"fixed_file": str(work / "fixed")}))
        entrypoint, uri = "flaky_fn", (work / "echo.json").as_uri()
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "consumes": [{"type": "bench.request"}],
            "produces": "bench.scored",
            "function": {
                "image": "local",
                "entrypoint": entrypoint,
                "concurrency": 16,
                "batching": {"maxBatchSize": 1},
            },
            "models": [{"name": "v1", "uri": uri}],
            "autoscaling": {"minScale": 1, "maxScale": 1},
        },
    }


def headers() -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "/bench",
            "ce-type": "bench.request", "content-type": "application/json"}  # fmt: skip


async def post_all(session: aiohttp.ClientSession, url: str, n: int, c: int, ok: int) -> None:
    body = json.dumps(TRANSACTION).encode()
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            async with session.post(url, data=body, headers=headers()) as resp:
                await resp.read()
                if resp.status != ok:
                    raise RuntimeError(f"{url} answered {resp.status}")

    await asyncio.gather(*(worker() for _ in range(c)))


async def answered(session: aiohttp.ClientSession, status_url: str) -> int:
    async with session.get(status_url) as resp:
        status = await resp.json()
    return sum(s["events"]["answered"] for s in status["services"])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def direct_round(
    session: aiohttp.ClientSession, url: str, n: int, c: int, pids: dict[str, list[int]]
) -> dict[str, float]:
    cpu = {k: cpu_seconds(v) for k, v in pids.items()}
    start = time.perf_counter()
    await post_all(session, url, n, c, 200)
    rate = n / (time.perf_counter() - start)
    return {"rate": rate, **{k: (cpu_seconds(v) - cpu[k]) / n * 1000 for k, v in pids.items()}}


async def broker_round(
    session: aiohttp.ClientSession,
    broker: str,
    status_url: str,
    n: int,
    c: int,
    pids: dict[str, list[int]],
) -> dict[str, float]:
    base = await answered(session, status_url)
    cpu = {k: cpu_seconds(v) for k, v in pids.items()}
    start = time.perf_counter()
    await post_all(session, broker, n, c, 202)
    while await answered(session, status_url) < base + n:
        await asyncio.sleep(0.02)
    rate = n / (time.perf_counter() - start)
    return {"rate": rate, **{k: (cpu_seconds(v) - cpu[k]) / n * 1000 for k, v in pids.items()}}


async def measure(state: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(state["statusUrl"]) as resp:
            status = await resp.json()
        revision = status["services"][0]["revisions"][0]
        function_url = revision["endpoints"][0]
        # The function runs under gunicorn: its master's children do the work.
        function_pids = [*revision["pids"], *children(revision["pids"])]
        pids = {"broker_cpu_ms": [state["pid"]], "function_cpu_ms": function_pids}
        broker = state["brokers"]["bench/default"]
        n, c = args.events, args.concurrency
        await direct_round(session, function_url, 200, c, pids)  # warm-up
        await broker_round(session, broker, state["statusUrl"], 200, c, pids)
        direct, through = [], []
        for _ in range(args.rounds):
            direct.append(await direct_round(session, function_url, n, c, pids))
            through.append(await broker_round(session, broker, state["statusUrl"], n, c, pids))
    best_direct = max(direct, key=lambda r: r["rate"])
    best_through = max(through, key=lambda r: r["rate"])
    return {
        "events": n,
        "concurrency": c,
        "rounds": args.rounds,
        "synchronous": args.synchronous,
        "function": args.function,
        "direct": [{k: round(v, 3) for k, v in r.items()} for r in direct],
        "broker": [{k: round(v, 3) for k, v in r.items()} for r in through],
        "best_direct": round(best_direct["rate"], 1),
        "best_broker": round(best_through["rate"], 1),
        "overhead": round(1 - best_through["rate"] / best_direct["rate"], 3),
        "broker_cpu_ms_per_event": round(best_through["broker_cpu_ms"], 3),
        "function_cpu_ms_per_event": round(best_direct["function_cpu_ms"], 3),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
    }


def children(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        path = Path(f"/proc/{pid}/task/{pid}/children")
        if path.exists():
            out += [int(p) for p in path.read_text().split()]
    return out


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL: never SIGINT, which a process started from a background job
    inherits as ignored (`aisvc up` keeps it so), and would never stop it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument(
        "--function", default="fraud", choices=["fraud", "echo"], help="echo needs no torch"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "bench.yaml").write_text(yaml.safe_dump(manifest(args.function, work)))
        env = dict(os.environ)
        tests = str(ROOT / "tests" / "local")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH")]))
        state_dir = work / ".aisvc"
        command = [
            sys.executable, "-m", "aiservice_operator.cli.local", "up",
            "-f", str(work / "bench.yaml"),
            "--state-dir", str(state_dir), "--broker-port", "0", "--serving-port", "0",
            "--event-store-port", "0", "--no-live", "--synchronous", args.synchronous,
        ]  # fmt: skip
        log = open(work / "up.log", "wb")  # noqa: SIM115 - lives as long as the process
        up = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 120
            while not (state_dir / "local.json").exists():
                if up.poll() is not None or time.monotonic() > deadline:
                    print((work / "up.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.1)
            state = json.loads((state_dir / "local.json").read_text())
            result = asyncio.run(measure(state, args))
        finally:
            stop(up)
    print(json.dumps(result, indent=2))
    print(
        f"direct {result['best_direct']:.0f} events/s, through the broker "
        f"{result['best_broker']:.0f} events/s: overhead {result['overhead']:.1%}; "
        f"CPU per event: broker {result['broker_cpu_ms_per_event']:.2f} ms, "
        f"function {result['function_cpu_ms_per_event']:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
