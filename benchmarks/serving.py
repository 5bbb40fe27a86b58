#!/usr/bin/env python
"""Serving benchmark: the functions runtime against KServe and MLServer, same models.

For each model (MiniLM ``sentiment``, tiny-MLP ``fraud``) it

1. measures the in-process ceiling: ``infer`` on batches of 32, one torch thread per
   process, for 1 and 2 processes (no HTTP at all);
2. starts every server at once on loopback: ours (``python -m aiservice_functions.runtime
   serve``: the runtime's own worker-count and batching defaults, plus any
   ``--ours-variant``), KServe 0.21 with 1 worker (its default) and with 2 workers, and
   MLServer 1.7 with adaptive batching (``mlserver_runtime``);
3. checks that all servers give the same answers for the sample payloads;
4. runs ``wrk`` (closed loop, binary-mode CloudEvents, one item per request) at each
   concurrency for ``--duration`` seconds, servers interleaved and their order rotated
   each round, for ``--rounds`` rounds;
5. prints medians over rounds and the ratios ours/peer with the ratio of each round, and
   writes every raw run to ``benchmarks/results/serving-<time>.raw.json``.

The 1-minute load average is recorded before every run; a ratio whose runs started
above 3/4 of the CPUs' worth of load is flagged **noisy**. ``--neighbour`` keeps one
core busy with another process for the whole run.

``--device cuda`` runs the models on the GPU: ours once per precision of ``--precisions``
(``ours-cuda-fp32``, ``ours-cuda-fp16``) plus ``ours-cpu``, the same function on the CPU,
and KServe once per precision with the same model on the GPU; the in-process ceiling runs
on the GPU in the first precision, and each server's GPU memory (``nvidia-smi``) is
recorded after the runs. ``benchmarks/gpu.sh`` is the whole GPU run, set-up included.

Set up once with ``benchmarks/setup.sh`` (wrk from Debian, KServe in
``benchmarks/.venv-kserve``, MLServer in ``benchmarks/.venv-mlserver``), then run
``.venv/bin/python benchmarks/serving.py``. ``--servers ours`` runs without the peers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import bench_models  # noqa: E402

KSERVE_PYTHON = HERE / ".venv-kserve" / "bin" / "python"
MLSERVER_PYTHON = HERE / ".venv-mlserver" / "bin" / "python"
RESULTS_DIR = HERE / "results"
CE_HEADERS = {
    "ce-specversion": "1.0",
    "ce-source": "/benchmarks/serving",
    "ce-type": "com.example.bench.request",
    "content-type": "application/json",
}
REPLY_TYPE = "com.example.bench.reply"


# --- servers ---------------------------------------------------------------------------


@dataclass
class Server:
    """One server process under test (its whole process group is stopped at the end)."""

    label: str
    kind: str  # "ours" | "kserve" | "mlserver"
    url: str
    ready_url: str
    command: list[str]
    env: dict[str, str]
    workers: int = 1
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_s: float = 0.0

    def start(self, log_dir: Path) -> None:
        self.log_path = log_dir / f"{self.label}.log"
        log = self.log_path.open("wb")
        self.started_s = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float) -> float:
        """Seconds from start until ready (all workers up); raises with the log tail."""
        assert self.proc is not None and self.log_path is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited: {self._tail()}")
            if self._answers() and self._workers_up():
                return time.monotonic() - self.started_s
            time.sleep(0.25)
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s: {self._tail()}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _workers_up(self) -> bool:
        if self.kind != "kserve" or self.workers <= 1:
            return True
        assert self.log_path is not None
        started = self.log_path.read_text(errors="replace").count("Application startup complete")
        return started >= self.workers

    def _tail(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")[-2000:]

    def batch_totals(self) -> tuple[float, float] | None:
        """Events and forward passes so far, from our runtime's /metrics (None elsewhere)."""
        if self.kind != "ours":
            return None
        with urllib.request.urlopen(self.url + "metrics", timeout=5) as response:
            text = response.read().decode()
        totals = {"sum": 0.0, "count": 0.0}
        for line in text.splitlines():
            for key in totals:
                if line.startswith(f"aisvc_function_batch_size_{key}"):
                    totals[key] += float(line.rsplit(" ", 1)[1])
        return totals["sum"], totals["count"]

    def _group_stats(self) -> list[list[str]]:
        """``/proc/<pid>/stat`` fields (after the command name) of the process group."""
        assert self.proc is not None
        stats = []
        for status in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = status.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.proc.pid:  # process group id
                    stats.append(fields)
        return stats

    def rss_mb(self) -> float:
        """Resident memory of the whole process group (parent and workers)."""
        page = os.sysconf("SC_PAGE_SIZE")
        return sum(int(f[21]) * page for f in self._group_stats()) / 2**20

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the process group: unlike throughput,
        CPU per request hardly depends on what else runs on a shared machine."""
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(f[11]) + int(f[12]) for f in self._group_stats()) / ticks

    def gpu_mb(self) -> float | None:
        """GPU memory the process group holds (``nvidia-smi``), None without a GPU."""
        if shutil.which("nvidia-smi") is None:
            return None
        pids = {int(f[0]) for f in self._group_stats_with_pid()}
        query = ["nvidia-smi", "--query-compute-apps=pid,used_memory"]
        out = subprocess.run(
            [*query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30
        )
        total = 0.0
        for line in out.stdout.splitlines():
            pid, _, used = line.partition(",")
            with contextlib.suppress(ValueError):
                if int(pid) in pids:
                    total += float(used)
        return total

    def _group_stats_with_pid(self) -> list[list[str]]:
        """Like ``_group_stats``, with the pid in front."""
        assert self.proc is not None
        stats = []
        for status in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = status.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.proc.pid:
                    stats.append([status.parent.name, *fields])
        return stats

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def ours(model: str, port: int, env: dict[str, str], label: str = "ours") -> Server:
    entry = bench_models.NAMES[model]
    command = [sys.executable, "-m", "aiservice_functions.runtime", "serve", entry]
    command += ["--port", str(port), "--host", "127.0.0.1", "--reply-type", REPLY_TYPE]
    base = f"http://127.0.0.1:{port}"
    return Server(
        label=label,
        kind="ours",
        url=f"{base}/",
        ready_url=f"{base}/health/readiness",
        command=command,
        # Threads >= the highest concurrency, so that c=16 can fill a batch (Knative
        # would set this from containerConcurrency).
        env={
            "AISVC_MODEL_VERSION": "bench",
            "AISVC_TORCH_THREADS": "1",
            "AISVC_CONCURRENCY": "32",
            **env,
        },
    )


def kserve(model: str, port: int, workers: int, device_env: dict[str, str] | None = None) -> Server:
    """``device_env``: ``AISVC_DEVICE``/``AISVC_PRECISION`` for the model (``bench_models``)."""
    command = [str(KSERVE_PYTHON), str(HERE / "kserve_server.py"), "--model", model]
    command += ["--http_port", str(port), "--workers", str(workers)]
    base = f"http://127.0.0.1:{port}"
    device_env = device_env or {"AISVC_DEVICE": "cpu"}
    suffix = ""
    if device_env.get("AISVC_DEVICE", "cpu") != "cpu":
        suffix = f"-cuda-{device_env.get('AISVC_PRECISION', 'fp16')}"
    return Server(
        label=f"kserve-{workers}w{suffix}",
        kind="kserve",
        url=f"{base}/v1/models/{model}:predict",
        ready_url=f"{base}/v1/models/{model}",
        command=command,
        env={"PYTHONPATH": str(REPO / "functions"), **device_env},
        workers=workers,
    )


def mlserver(model: str, port: int, workers: int) -> Server:
    command = [str(MLSERVER_PYTHON), str(HERE / "mlserver_runtime.py"), "--model", model]
    command += ["--http_port", str(port), "--workers", str(workers)]
    base = f"http://127.0.0.1:{port}"
    return Server(
        label=f"mlserver-{workers}w",
        kind="mlserver",
        url=f"{base}/v2/models/{model}/infer",
        ready_url=f"{base}/v2/models/{model}/ready",
        command=command,
        env={"PYTHONPATH": os.pathsep.join([str(REPO / "functions"), str(HERE)])},
        workers=workers,
    )


def request_body(server: Server, payload: Any) -> str:
    """What one request carries: the event's data (CloudEvents), or a V2 request (MLServer)."""
    if server.kind == "mlserver":
        return json.dumps(
            {
                "inputs": [
                    {
                        "name": "payload",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": [json.dumps(payload)],
                    }
                ]
            }
        )
    return json.dumps(payload)


def post(server: Server, payload: Any) -> tuple[int, Any]:
    """One request as the load generator sends it; returns status and the reply data."""
    request = urllib.request.Request(
        server.url,
        data=request_body(server, payload).encode(),
        headers={**CE_HEADERS, "ce-id": "check"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            data = json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    if server.kind == "mlserver":
        data = json.loads(data["outputs"][0]["data"][0])
    return response.status, data


# --- load generator --------------------------------------------------------------------

LUA = """
local bodies = {%(bodies)s}
local path = %(path)s
local n = 0
request = function()
  n = n + 1
  local headers = {%(headers)s, ["ce-id"] = "bench-" .. n}
  return wrk.format("POST", path, headers, bodies[(n %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "status_errors": %%d, "connect_errors": %%d, ' ..
    '"read_errors": %%d, "write_errors": %%d, "timeouts": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk_script(model: str, server: Server, directory: Path) -> Path:
    """A wrk script posting the model's sample payloads in turn, as binary CloudEvents."""
    url = server.url
    path = "/" + url.split("/", 3)[3]
    bodies = ", ".join(lua_string(request_body(server, p)) for p in bench_models.PAYLOADS[model])
    headers = ", ".join(f'["{k}"] = "{v}"' for k, v in CE_HEADERS.items())
    script = directory / f"{model}-{server.label}.lua"
    script.write_text(LUA % {"bodies": bodies, "path": lua_string(path), "headers": headers})
    return script


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    """One closed-loop wrk run; wrk with one thread keeps the load generator's CPU small."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
    command += ["-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            raw = json.loads(line.removeprefix("RESULT "))
            errors = sum(raw[k] for k in raw if k.endswith("_errors")) + raw["timeouts"]
            return {
                "rps": raw["requests"] / (raw["duration_us"] / 1e6),
                "p50_ms": raw["p50_us"] / 1000,
                "p90_ms": raw["p90_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "max_ms": raw["max_us"] / 1000,
                "requests": raw["requests"],
                "errors": errors,
                "raw": raw,
            }
    raise RuntimeError(f"wrk gave no result: {out.stdout[-500:]} {out.stderr[-500:]}")


# --- in-process ceiling ----------------------------------------------------------------


def _ceiling_worker(model: str, batch: int, seconds: float, start: Any, out: Any) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    predictor = bench_models.load(model)
    payloads = bench_models.PAYLOADS[model]
    items = [predictor.decode(payloads[i % len(payloads)]) for i in range(batch)]
    for _ in range(3):
        predictor.infer(items)
    start.wait()
    done = 0
    began, cpu_began = time.perf_counter(), time.process_time()
    while time.perf_counter() - began < seconds:
        predictor.infer(items)
        done += batch
    out.put((done / (time.perf_counter() - began), 1000 * (time.process_time() - cpu_began) / done))


def ceiling(
    model: str,
    processes: int,
    batch: int = 32,
    seconds: float = 8.0,
    device_env: dict[str, str] | None = None,
) -> tuple[float, float]:
    """Items/s of ``infer`` on full batches in ``processes`` single-threaded processes,
    and the CPU milliseconds each item cost; ``device_env`` places the model."""
    os.environ.update(device_env or {"AISVC_DEVICE": "cpu"})  # spawned processes inherit it
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(processes)
    out: Any = ctx.Queue()
    workers = [
        ctx.Process(target=_ceiling_worker, args=(model, batch, seconds, start, out))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    rates: list[tuple[float, float]] = []
    deadline = time.monotonic() + 300
    while len(rates) < processes and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            rates.append(out.get(timeout=1))
        if len(rates) < processes and any(w.exitcode not in (None, 0) for w in workers):
            for worker in workers:
                worker.kill()
            raise RuntimeError(f"{model}: a ceiling process failed (see its traceback above)")
    for worker in workers:
        worker.join(30)
    return sum(r for r, _ in rates), statistics.mean(c for _, c in rates)


# --- the benchmark ---------------------------------------------------------------------


def gpu_name() -> str | None:
    """The GPU's name and driver as ``nvidia-smi`` reports them, None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip() or None


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def quiet_limit() -> float:
    """Above this 1-minute load average a run counts as noisy: 3/4 of the CPUs busy."""
    return 0.75 * (os.cpu_count() or 1)


@contextlib.contextmanager
def neighbour(enabled: bool) -> Iterator[None]:
    """Another process keeping one core busy for the whole run (the noisy-neighbour mode)."""
    if not enabled:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def running(servers: list[Server], log_dir: Path, timeout: float) -> Iterator[dict[str, float]]:
    startup: dict[str, float] = {}
    try:
        for server in servers:
            server.start(log_dir)
        for server in servers:
            startup[server.label] = server.wait_ready(timeout)
            print(f"  {server.label}: ready in {startup[server.label]:.1f} s", flush=True)
        yield startup
    finally:
        for server in servers:
            server.stop()


def check_answers(model: str, servers: list[Server]) -> None:
    """Every server must give the same reply data for every sample payload."""
    for payload in bench_models.PAYLOADS[model]:
        replies = {s.label: post(s, payload) for s in servers}
        statuses = {label: status for label, (status, _) in replies.items()}
        if set(statuses.values()) != {200}:
            raise RuntimeError(f"{model}: not every server answered 200: {replies}")
        first = next(iter(replies.values()))[1]
        for label, (_, data) in replies.items():
            if data.get("label") != first.get("label"):
                raise RuntimeError(f"{model}: {label} answered {data}, others {first}")


def servers_for(
    model: str, args: argparse.Namespace, devices: list[dict[str, str]]
) -> list[Server]:
    """The servers under test; ``devices``: the device settings of the GPU servers."""
    on_gpu = args.device != "cpu"
    port = args.base_port
    servers: list[Server] = []
    if "ours" in args.servers:
        base_env = dict(args.ours_env)
        if on_gpu:
            for device_env in devices:
                label = f"ours-cuda-{device_env['AISVC_PRECISION']}"
                servers.append(ours(model, port, {**base_env, **device_env}, label=label))
                port += 1
            servers.append(ours(model, port, {**base_env, "AISVC_DEVICE": "cpu"}, "ours-cpu"))
        else:
            servers.append(ours(model, port, {"AISVC_DEVICE": "cpu", **base_env}))
        for label, env in args.ours_variant:
            port += 1
            servers.append(ours(model, port, {**base_env, **env}, label=label))
    for workers in args.kserve_workers if "kserve" in args.servers else []:
        for device_env in devices or [{"AISVC_DEVICE": "cpu"}]:
            port += 1
            servers.append(kserve(model, port, workers, device_env))
    for workers in args.mlserver_workers if "mlserver" in args.servers else []:
        port += 1
        servers.append(mlserver(model, port, workers))
    return servers


def bench_model(model: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"model": model, "runs": [], "ceiling": {}, "ceiling_cpu_ms": {}}
    on_gpu = args.device != "cpu"
    devices = [{"AISVC_DEVICE": args.device, "AISVC_PRECISION": p} for p in args.precisions] or [
        {"AISVC_DEVICE": "cpu"}
    ]
    batch = 128 if on_gpu else 32
    for processes in args.ceiling_processes:
        rate, cpu_ms = ceiling(
            model, processes, batch=batch, seconds=args.ceiling_seconds, device_env=devices[0]
        )
        result["ceiling"][str(processes)] = rate
        result["ceiling_cpu_ms"][str(processes)] = cpu_ms
        print(
            f"  ceiling on {devices[0]}, {processes} process(es) x 1 thread, batch {batch}: "
            f"{rate:.0f} items/s, {cpu_ms:.2f} CPU ms/item (load {loadavg():.1f})"
        )

    servers = servers_for(model, args, devices if on_gpu else [])

    with running(servers, log_dir, args.start_timeout) as startup:
        result["startup_s"] = startup
        check_answers(model, servers)
        scripts = {s.label: wrk_script(model, s, log_dir) for s in servers}
        for server in servers:  # warm-up: first requests, lazy imports, allocator
            run_wrk(server.url, scripts[server.label], 8, args.warmup)
        for round_no in range(args.rounds):
            for connections in args.concurrency:
                order = servers[round_no % len(servers) :] + servers[: round_no % len(servers)]
                for server in order:
                    before, batches = loadavg(), server.batch_totals()
                    cpu = server.cpu_seconds()
                    run = run_wrk(server.url, scripts[server.label], connections, args.duration)
                    cpu = server.cpu_seconds() - cpu
                    run.update(server=server.label, c=connections, round=round_no, load1=before)
                    run["noisy"] = before > quiet_limit()
                    run["cpu_ms_per_req"] = 1000 * cpu / max(run["requests"], 1)
                    after = server.batch_totals()
                    if batches and after and after[1] > batches[1]:
                        run["mean_batch"] = (after[0] - batches[0]) / (after[1] - batches[1])
                    result["runs"].append(run)
                    print(
                        f"  round {round_no + 1} c={connections:<2} {server.label:10} "
                        f"{run['rps']:8.1f} req/s  p50 {run['p50_ms']:7.1f} ms  "
                        f"p99 {run['p99_ms']:7.1f} ms  CPU {run['cpu_ms_per_req']:5.1f} ms/req  "
                        f"errors {run['errors']}  "
                        f"load {before:.1f}"
                        + (f"  mean batch {run['mean_batch']:.1f}" if "mean_batch" in run else ""),
                        flush=True,
                    )
        result["rss_mb"] = {s.label: round(s.rss_mb()) for s in servers}
        gpu = {s.label: s.gpu_mb() for s in servers}
        result["gpu_mb"] = {label: mb for label, mb in gpu.items() if mb is not None}
    return result


def medians(result: dict[str, Any]) -> dict[tuple[str, int], dict[str, float]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in result["runs"]:
        groups.setdefault((run["server"], run["c"]), []).append(run)
    return {
        key: {
            metric: statistics.median(r[metric] for r in runs)
            for metric in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_req")
        }
        | {
            "errors": sum(r["errors"] for r in runs),
            "n": len(runs),
            "noisy": any(r.get("noisy") for r in runs),
            "max_load": max(r["load1"] for r in runs),
        }
        for key, runs in groups.items()
    }


def report(result: dict[str, Any], concurrency: list[int]) -> str:
    """Markdown: absolute medians per server, then ratios ours/KServe."""
    med = medians(result)
    servers = list(dict.fromkeys(run["server"] for run in result["runs"]))
    lines = [f"#### {result['model']}", ""]
    ceilings = ", ".join(f"{p} proc: {r:.0f}/s" for p, r in result["ceiling"].items())
    lines.append(f"In-process ceiling (1 torch thread per process): {ceilings}.")
    cpu = result.get("ceiling_cpu_ms", {}).get("1")
    if cpu:
        lines.append(f"In-process CPU per item (1 process): {cpu:.2f} ms.")
    lines.append("")
    lines.append("| server | c | req/s | p50 ms | p99 ms | server CPU ms/req | errors |")
    lines.append("|---|---|---|---|---|---|---|")
    for server in servers:
        for c in concurrency:
            m = med.get((server, c))
            if m:
                lines.append(
                    f"| {server} | {c} | {m['rps']:.1f} | {m['p50_ms']:.1f} | "
                    f"{m['p99_ms']:.1f} | {m['cpu_ms_per_req']:.2f} | {m['errors']:.0f} |"
                )
    ours_labels = [s for s in servers if s.startswith("ours")]
    if ours_labels:
        one_proc = result["ceiling"].get("1")
        cpu_ceiling = result.get("ceiling_cpu_ms", {}).get("1")
        lines += [
            "",
            "| ours | vs | c | throughput ratio (per round) | p50 ratio | p99 ratio "
            "| CPU/req ratio | ours / 1-proc ceiling: req/s | : CPU per item | max load |",
        ]
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        pairs = [(o, s) for o in ours_labels for s in servers if not s.startswith("ours")]
        pairs += [(o, s) for o in ours_labels[1:] for s in ours_labels[:1]]
        for mine, other in pairs:
            for c in concurrency:
                a, b = med.get((mine, c)), med.get((other, c))
                if a and b:
                    share = f"{a['rps'] / one_proc:.0%}" if one_proc else "-"
                    cpu_share = f"{cpu_ceiling / a['cpu_ms_per_req']:.0%}" if cpu_ceiling else "-"
                    rps, p50 = a["rps"] / b["rps"], a["p50_ms"] / b["p50_ms"]
                    p99 = a["p99_ms"] / b["p99_ms"]
                    cpu = a["cpu_ms_per_req"] / b["cpu_ms_per_req"]
                    rounds = ", ".join(
                        f"{x:.2f}" for x in round_ratios(result["runs"], mine, other, c)
                    )
                    noisy = " **noisy**" if a["noisy"] or b["noisy"] else ""
                    load = max(a["max_load"], b["max_load"])
                    lines.append(
                        f"| {mine} | {other} | {c} | {rps:.2f}x ({rounds}) | {p50:.2f} | "
                        f"{p99:.2f} | {cpu:.2f} | {share} | {cpu_share} | {load:.1f}{noisy} |"
                    )
    return "\n".join(lines)


def round_ratios(runs: list[dict[str, Any]], mine: str, other: str, c: int) -> list[float]:
    """Throughput ratio per round: each round runs both servers back to back."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["c"] == c and run["server"] in (mine, other):
            by_round.setdefault(run["round"], {})[run["server"]] = run["rps"]
    return [r[mine] / r[other] for _, r in sorted(by_round.items()) if len(r) == 2 and r[other]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sentiment,fraud")
    parser.add_argument(
        "--servers", default="ours,kserve,mlserver", help="any of ours, kserve, mlserver"
    )
    parser.add_argument("--concurrency", default="1,8,16")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--kserve-workers", default="1,2", help="KServe configurations")
    parser.add_argument(
        "--mlserver-workers", default="1", help="MLServer inference worker processes"
    )
    parser.add_argument(
        "--ours-variant",
        action="append",
        default=[],
        metavar="LABEL:NAME=VALUE,...",
        help="another configuration of our runtime, e.g. ours-1w2t:AISVC_WORKERS=1,"
        "AISVC_TORCH_THREADS=2",
    )
    parser.add_argument(
        "--neighbour", action="store_true", help="keep one core busy with another process"
    )
    parser.add_argument("--ceiling-processes", default="1,2")
    parser.add_argument("--ceiling-seconds", type=float, default=8.0)
    parser.add_argument("--base-port", type=int, default=18180)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument(
        "--ours-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for our runtime, e.g. AISVC_BATCH_MAX_WAIT_MS=2",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu, or cuda[:N] to serve on a GPU (see above)"
    )
    parser.add_argument(
        "--precisions", default="fp32,fp16", help="with --device cuda: one server per precision"
    )
    parser.add_argument("--out", type=Path, default=None, help="raw JSON results file")
    args = parser.parse_args(argv)
    args.precisions = [p for p in args.precisions.split(",") if p] if args.device != "cpu" else []
    args.models = [m for m in args.models.split(",") if m]
    args.servers = set(args.servers.split(","))
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.kserve_workers = [int(w) for w in args.kserve_workers.split(",")]
    args.ceiling_processes = [int(p) for p in args.ceiling_processes.split(",") if p]
    args.ours_env = [tuple(kv.split("=", 1)) for kv in args.ours_env]
    args.mlserver_workers = [int(w) for w in args.mlserver_workers.split(",") if w]
    variants = []
    for spec in args.ours_variant:
        label, _, settings = spec.partition(":")
        if not label.startswith("ours-"):
            parser.error(f"--ours-variant label must start with 'ours-': {label!r}")
        variants.append((label, dict(kv.split("=", 1) for kv in settings.split(",") if kv)))
    args.ours_variant = variants
    return args


def preflight(args: argparse.Namespace) -> None:
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk (Debian package)")
    if "kserve" in args.servers and not KSERVE_PYTHON.exists():
        missing.append(f"KServe venv at {KSERVE_PYTHON.parent.parent}")
    if "mlserver" in args.servers and not MLSERVER_PYTHON.exists():
        missing.append(f"MLServer venv at {MLSERVER_PYTHON.parent.parent}")
    if args.device != "cpu" and shutil.which("nvidia-smi") is None:
        missing.append("nvidia-smi (a GPU and its driver)")
    if missing:
        sys.exit(f"missing: {', '.join(missing)}; run benchmarks/setup.sh first")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preflight(args)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta = {
        "started": started,
        "cpus": os.cpu_count(),
        "load1_at_start": loadavg(),
        "noisy_above_load": quiet_limit(),
        "neighbour": args.neighbour,
        "gpu": gpu_name(),
        "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
    }
    print(f"serving benchmark {started}: {os.cpu_count()} CPUs, load {meta['load1_at_start']}")
    results = []
    with tempfile.TemporaryDirectory(prefix="aisvc-bench-") as tmp, neighbour(args.neighbour):
        for model in args.models:
            print(f"{model}:", flush=True)
            results.append(bench_model(model, args, Path(tmp)))
    meta["load1_at_end"] = loadavg()
    out = args.out or RESULTS_DIR / f"serving-{started.replace(':', '')}.raw.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    print()
    for result in results:
        print(report(result, args.concurrency))
        print(
            f"\nstartup s: {result['startup_s']}; RSS MB after the runs: {result['rss_mb']}; "
            f"GPU MB: {result.get('gpu_mb') or '-'}\n"
        )
    print(f"raw runs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
