"""`aisvc up`'s event path at rate: one fraud AIService at concurrency 16, the decision
log off and on, beside the function posted to directly, in one run.

    python benchmarks/event_path_local.py [--events 4000] [--concurrency 16] [--rounds 2]
                                          [--modes off,on] [--profile DIR]

For each mode, `aisvc up` runs as its own process (as users run it) with one AIService on
the fraud function (one process: minScale = maxScale = 1, containerConcurrency 16); with
``on`` the AIService has ``spec.decisionLog`` (includeData), so every event also goes to
the event store twice (its input and its reply). Rounds alternate:

- *direct*: N CloudEvents posted to the function's own port, C at a time;
- *broker*: the same N posted to the broker ingress, C at a time, each committed before
  its 202. ``answered``: the clock stops when the broker has logged the N-th reply (the
  service's own deliveries). ``logged`` (mode on): when the decision-log Triggers have also
  delivered all 2N records to the event store.

Latency: ``ingress`` is the 202's round trip as the sender sees it; ``end_to_end`` is,
per event, the time from its commit in the broker log to its reply's commit (both read
from the broker's own log afterwards). ``log_writes_per_commit`` is the broker log's
mean group size over the run (from the status API). CPU per event is user + system time from
`/proc` of the broker, the function and the event store, which moves less with other
work on the machine than the rates do. The best round of each path is kept.

The output records `os.getloadavg()` at start and end; with a 1-minute load above 1.5
the figures are marked noisy (other work shares the cores). ``--profile DIR`` also
records py-spy profiles (collapsed stacks) of the broker and the function during one
extra broker round per mode, and prints the top frames by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_overhead import TRANSACTION, children, cpu_seconds, headers, manifest

NOISY_LOAD = 1.5
DECISION_ROLES = ("decision-inputs", "decision-replies")


def start_up(work: Path, logged: bool) -> tuple[subprocess.Popen[bytes], dict[str, Any], Path]:
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
    up = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while not (state_dir / "local.json").exists():
        if up.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((work / f"up-{tag}.log").read_text())
        time.sleep(0.2)
    return up, json.loads((state_dir / "local.json").read_text()), state_dir


async def status(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as resp:
        result: dict[str, Any] = await resp.json()
        return result


def progress(snapshot: dict[str, Any]) -> tuple[int, int]:
    """(replies the service answered, records the decision-log Triggers delivered)."""
    answered = sum(s["events"]["answered"] for s in snapshot["services"])
    logged = sum(t["delivered"] for t in snapshot["triggers"] if t["role"] in DECISION_ROLES)
    return answered, logged


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def post_all(
    session: aiohttp.ClientSession, url: str, n: int, c: int, ok: int
) -> list[float]:
    """Post N events C at a time; each post's round trip in seconds."""
    body = json.dumps(TRANSACTION).encode()
    remaining = iter(range(n))
    latencies: list[float] = []

    async def worker() -> None:
        for _ in remaining:
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers()) as resp:
                await resp.read()
                if resp.status != ok:
                    raise RuntimeError(f"{url} answered {resp.status}")
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(c)))
    return latencies


def end_to_end(db: Path, since: float) -> list[float]:
    """Per event accepted after ``since``: its reply's commit time minus its own."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT r.accepted_at - e.accepted_at FROM events r JOIN events e "
            "ON e.seq = CAST(substr(r.cause, 1, instr(r.cause, ':') - 1) AS INTEGER) "
            "WHERE r.cause IS NOT NULL AND e.cause IS NULL AND e.accepted_at >= ?",
            (since,),
        ).fetchall()
    return [float(r[0]) for r in rows]


def ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 2)


async def direct_round(
    session: aiohttp.ClientSession, url: str, n: int, c: int, pids: dict[str, list[int]]
) -> dict[str, Any]:
    cpu = {k: cpu_seconds(v) for k, v in pids.items()}
    start = time.perf_counter()
    lat = await post_all(session, url, n, c, 200)
    rate = n / (time.perf_counter() - start)
    return {
        "rate": round(rate, 1),
        "p50_ms": ms(lat, 0.5),
        "p99_ms": ms(lat, 0.99),
        **{k: round((cpu_seconds(v) - cpu[k]) / n * 1000, 3) for k, v in pids.items()},
    }


async def broker_round(
    session: aiohttp.ClientSession,
    state: dict[str, Any],
    db: Path,
    n: int,
    c: int,
    pids: dict[str, list[int]],
    logged: bool,
) -> dict[str, Any]:
    base_answered, base_logged = progress(await status(session, state["statusUrl"]))
    cpu = {k: cpu_seconds(v) for k, v in pids.items()}
    wall0 = time.time()
    start = time.perf_counter()
    lat = await post_all(session, state["brokers"]["bench/default"], n, c, 202)
    answered_at = logged_at = None
    deadline = time.monotonic() + 600
    while answered_at is None or (logged and logged_at is None):
        answered, records = progress(await status(session, state["statusUrl"]))
        now = time.perf_counter()
        if answered_at is None and answered >= base_answered + n:
            answered_at = now
        if logged and logged_at is None and records >= base_logged + 2 * n:
            logged_at = now
        if time.monotonic() > deadline:
            raise RuntimeError(f"round did not finish: {answered=} {records=}")
        await asyncio.sleep(0.01)
    e2e = end_to_end(db, wall0)
    result: dict[str, Any] = {
        "rate": round(n / (answered_at - start), 1),
        "ingress_p50_ms": ms(lat, 0.5),
        "ingress_p99_ms": ms(lat, 0.99),
        "end_to_end_p50_ms": ms(e2e, 0.5),
        "end_to_end_p99_ms": ms(e2e, 0.99),
        **{k: round((cpu_seconds(v) - cpu[k]) / n * 1000, 3) for k, v in pids.items()},
    }
    if logged_at is not None:
        result["rate_logged"] = round(n / (logged_at - start), 1)
    return result


def profile(pids: dict[str, list[int]], out: Path, seconds: int) -> list[subprocess.Popen[bytes]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    spies = []
    for name, group in pids.items():
        for pid in group:
            command = [
                spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "-f", "raw",
                "-o", str(out / f"{name}-{pid}.txt"), "--nonblocking",
            ]  # fmt: skip
            spies.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
    return spies


def top_frames(path: Path, k: int = 15) -> list[tuple[str, float]]:
    """The frames with the most own samples in a py-spy raw (collapsed) profile."""
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frame = stack.rsplit(";", 1)[-1]
        own[frame] += int(count)
        total += int(count)
    return [(f, round(n / max(total, 1), 3)) for f, n in own.most_common(k)]


async def measure(
    state: dict[str, Any], db: Path, args: argparse.Namespace, logged: bool, work: Path
) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        snap = await status(session, state["statusUrl"])
        revision = snap["services"][0]["revisions"][0]
        function_url = revision["endpoints"][0]
        pids = {
            "broker_cpu_ms": [state["pid"]],
            "function_cpu_ms": [*revision["pids"], *children(revision["pids"])],
        }
        # The event store is the other child of `aisvc up` (with its own workers).
        store = [p for p in children([state["pid"]]) if p not in revision["pids"]]
        if store:
            pids["store_cpu_ms"] = [*store, *children(store)]
        n, c = args.events, args.concurrency
        await direct_round(session, function_url, 300, c, pids)  # warm-up
        await broker_round(session, state, db, 300, c, pids, logged)
        direct, broker = [], []
        for _ in range(args.rounds):
            direct.append(await direct_round(session, function_url, n, c, pids))
            broker.append(await broker_round(session, state, db, n, c, pids, logged))
        profiles = {}
        if args.profile:
            out = Path(args.profile) / ("on" if logged else "off")
            out.mkdir(parents=True, exist_ok=True)
            spies = profile(pids, out, 8)
            await asyncio.sleep(0.5)
            await broker_round(session, state, db, n, c, pids, logged)
            for spy in spies:
                spy.wait(60)
            profiles = {p.name: top_frames(p) for p in sorted(out.glob("*.txt"))}
        group = (await status(session, state["statusUrl"])).get("log") or {}
    return {
        "direct": direct,
        "broker": broker,
        "best_direct": max(r["rate"] for r in direct),
        "best_broker": max(r["rate"] for r in broker),
        **({"best_broker_logged": max(r["rate_logged"] for r in broker)} if logged else {}),
        # The broker log's group commit over the whole run: writes per fsync'ed commit.
        "log_writes_per_commit": round(group["writes"] / max(group["commits"], 1), 1)
        if group
        else None,
        **({"profiles": profiles} if profiles else {}),
    }


def stop(up: subprocess.Popen[bytes]) -> None:
    """Stop `aisvc up` with SIGTERM (SIGINT is ignored when this runs as a background
    job of a shell); past a minute, kill it with all it started."""
    up.send_signal(signal.SIGTERM)
    try:
        up.wait(60)
    except subprocess.TimeoutExpired:
        print("aisvc up did not stop within 60 s: killed", file=sys.stderr)
        os.killpg(up.pid, signal.SIGKILL)
        up.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="off,on")
    parser.add_argument("--profile", default="", help="record py-spy profiles into this folder")
    args = parser.parse_args()
    result: dict[str, Any] = {"load_average_start": os.getloadavg(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for mode in args.modes.split(","):
            logged = mode == "on"
            up, state, state_dir = start_up(work, logged)
            try:
                result[mode] = asyncio.run(
                    measure(state, state_dir / "broker.db", args, logged, work)
                )
            finally:
                stop(up)
    if "off" in result:
        off = result["off"]
        off["broker_vs_direct"] = round(off["best_broker"] / off["best_direct"], 3)
    if "off" in result and "on" in result:
        on = result["on"]
        on["broker_vs_direct"] = round(on["best_broker"] / on["best_direct"], 3)
        result["log_cost_answered"] = round(1 - on["best_broker"] / result["off"]["best_broker"], 3)
        result["log_cost_logged"] = round(
            1 - on["best_broker_logged"] / result["off"]["best_broker"], 3
        )
    result["load_average_end"] = os.getloadavg()
    result["noisy"] = (
        max(result["load_average_start"][0], result["load_average_end"][0]) > NOISY_LOAD
    )
    result["command"] = " ".join(["python", "benchmarks/event_path_local.py", *sys.argv[1:]])
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
