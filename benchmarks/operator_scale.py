"""The operator at scale: reconcile latency, throughput, memory and API requests with hundreds
of AIServices, as ratios to a baseline that applies the same objects with no operator.

    python benchmarks/operator_scale.py --n 100 --n 500 --n 1000 --out benchmarks/results

For every N, two runs, each against a fresh API server process (the test emulator with
Knative Serving's stand-in and a convergence observer, `benchmarks/scale/apiserver.py`):

- baseline: a plain script creates each AIService and then the compiled children
  (`compile.steady_state`) straight through the `kubernetes` client; no operator.
- operator: `python -m aiservice_operator` in its own process; the script creates the
  AIServices only.

Phases, timed on the API server's clock: `create` (N AIServices at once from a pool of
client threads), `probe` (a few more, one at a time, with N live: the latency a user sees),
`update` (a spec edit of all N that rewrites every child), and for the operator `resync`
(restart it after convergence and count its writes: there should be none). A child
"matches" when it contains what the compiler emits once every revision is ready, so the
operator's latency includes the revision-before-traffic round trips through Knative.

Figures: latency p50/p95/p99, time to converge all N and objects per second, the operator's
peak RSS (VmHWM) and CPU seconds from /proc, API requests per AIService by verb and
resource, and the CPU seconds of the API server, the observer and this script.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aiservice_operator.core import compile as compiler  # noqa: E402
from aiservice_operator.core.spec import parse  # noqa: E402
from kubernetes import client as k8s  # noqa: E402

from benchmarks.scale import workload  # noqa: E402
from benchmarks.scale.apiserver import DRIVER_AGENT  # noqa: E402

Obj = dict[str, Any]
AIS = ("aiservice.dev", "v1alpha1", "aiservices")
KSVC = ("serving.knative.dev", "v1", "services")
TRIGGER = ("eventing.knative.dev", "v1", "triggers")
MERGE = "application/merge-patch+json"
WRITE_VERBS = ("create", "update", "patch", "delete")


# --- Processes ---------------------------------------------------------------------------


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _clock_ticks()


def proc_memory_mb(pid: int) -> dict[str, float]:
    """Current and peak resident set size in MiB (VmRSS, VmHWM)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return {"rss_mb": values.get("VmRSS", 0.0), "peak_rss_mb": values.get("VmHWM", 0.0)}


class ApiServer:
    """The emulator process and its control endpoints."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.scale.apiserver"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the API server did not start; see {log}")
        self.url: str = json.loads(line)["url"]

    def control(self, path: str, body: Obj | None = None, timeout: float = 120) -> Obj:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/_bench/" + path, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            result: Obj = json.loads(response.read())
            return result

    def phase(self, name: str) -> None:
        self.control("phase", {"phase": name})

    def wait(self, phase: str, timeout: float, until: str = "matched") -> int:
        """Block until every expectation of `phase` matched; returns how many did not."""
        query = f"wait?phase={phase}&timeout={timeout}&until={until}"
        return int(self.control(query, timeout=timeout + 30)["pending"])

    def wait_one(self, namespace: str, name: str, timeout: float) -> int:
        query = f"wait-one?namespace={namespace}&name={name}&timeout={timeout}"
        return int(self.control(query, timeout=timeout + 30)["pending"])

    def quiet(self, seconds: float, timeout: float) -> None:
        self.control(f"quiet?seconds={seconds}&timeout={timeout}", timeout=timeout + 30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Operator:
    """`python -m aiservice_operator` pointed at the API server."""

    def __init__(
        self, url: str, log: Path, env: dict[str, str] | None = None, source: Path | None = None
    ) -> None:
        self._log = log.open("a")
        # Its /metrics on a free port (the default one may be taken on a shared machine).
        extra = {"AISVC_METRICS_PORT": str(_free_port()), **(env or {})}
        if source is not None:  # an exported tree of another commit, imported first
            paths = [str(source / "operator"), str(source / "functions")]
            extra["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiservice_operator"],
            cwd=source or REPO,
            env={**os.environ, "AISVC_KUBE_SERVER": url, **extra},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.started = time.monotonic()

    def stats(self) -> dict[str, float]:
        return {"cpu_seconds": proc_cpu_seconds(self.proc.pid), **proc_memory_mb(self.proc.pid)}

    def stop(self) -> dict[str, float]:
        """SIGTERM and wait; returns the last CPU and memory figures before it exited."""
        last = self.stats() if self.proc.poll() is None else {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return last


def operator_counts(api: ApiServer, phase: str) -> dict[tuple[str, str], int]:
    """The operator's requests so far in `phase`, by (verb, resource)."""
    return {
        (c["verb"], c["resource"]): c["count"]
        for c in api.control("counts")["counts"]
        if c["phase"] == phase and c["client"] == "operator"
    }


def export_tree(ref: str, workdir: Path) -> Path:
    """The operator and functions packages as of git `ref`, for before/after comparisons."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    target = workdir / f"src-{sha}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", sha, "operator", "functions"],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def wait_for_watches(api: ApiServer, operator: Operator, phase: str, timeout: float = 60) -> float:
    """Seconds until the operator watches AIServices, Knative Services and Triggers."""
    wanted = {"aiservices", "services", "triggers"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if operator.proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {operator.proc.returncode}")
        watched = {r for v, r in operator_counts(api, phase) if v == "watch"}
        if wanted <= watched:
            return time.monotonic() - operator.started
        time.sleep(0.1)
    raise RuntimeError("the operator did not start watching in time")


def wait_for_reads(api: ApiServer, phase: str, objects: int, timeout: float) -> None:
    """Until the operator has read `objects` AIServices in `phase` (its resume pass)."""
    deadline = time.monotonic() + timeout
    while operator_counts(api, phase).get(("get", "aiservices"), 0) < objects:
        if time.monotonic() > deadline:
            raise RuntimeError("the restarted operator did not revisit every AIService")
        time.sleep(0.1)


# --- The client side ---------------------------------------------------------------------


@dataclass
class Driver:
    """Creates and edits the workload through the `kubernetes` client; optionally (baseline)
    applies the compiled children itself."""

    url: str
    namespaces: int
    apply_children: bool
    api: k8s.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        config = k8s.Configuration()
        config.host = self.url
        config.connection_pool_maxsize = 32
        api_client = k8s.ApiClient(config)
        api_client.user_agent = DRIVER_AGENT
        self.api = k8s.CustomObjectsApi(api_client)

    def create(self, index: int) -> None:
        body = workload.manifest(index, self.namespaces)
        ns = body["metadata"]["namespace"]
        created = self.api.create_namespaced_custom_object(*AIS[:2], ns, AIS[2], body)
        if self.apply_children:
            desired = compiler.steady_state(parse(cast(Obj, created)))
            self.api.create_namespaced_custom_object(*KSVC[:2], ns, KSVC[2], desired.service)
            for trigger in desired.triggers:
                self.api.create_namespaced_custom_object(*TRIGGER[:2], ns, TRIGGER[2], trigger)

    def update(self, index: int) -> None:
        body = workload.manifest(index, self.namespaces)
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        patched = self.api.patch_namespaced_custom_object(
            *AIS[:2], ns, AIS[2], name, workload.changed(body), _content_type=MERGE
        )
        if self.apply_children:
            desired = compiler.steady_state(parse(cast(Obj, patched)))
            for group, version, plural in (KSVC, TRIGGER):
                objects = [desired.service] if plural == "services" else list(desired.triggers)
                for obj in objects:
                    self.api.patch_namespaced_custom_object(
                        group,
                        version,
                        ns,
                        plural,
                        obj["metadata"]["name"],
                        {"metadata": obj["metadata"], "spec": obj["spec"]},
                        _content_type=MERGE,
                    )


def run_pool(fn: Callable[[int], None], indexes: Iterable[int], workers: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(fn, i) for i in indexes]:
            future.result()


# --- Figures -----------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds (nearest rank)."""
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))], 1)

    return {
        "p50_ms": rank(0.50),
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "max_ms": round(ordered[-1], 1),
    }


def phase_figures(report: Obj, phase: str) -> Obj:
    records = [r for r in report["records"] if r["phase"] == phase]
    matched = [r for r in records if r["matched_at"] is not None]
    latencies = [(r["matched_at"] - r["written_at"]) * 1000 for r in matched]
    ready = [(r["ready_at"] - r["written_at"]) * 1000 for r in records if r["ready_at"]]
    figures: Obj = {"objects": len(records), "unmatched": len(records) - len(matched)}
    figures["children_latency"] = percentiles(latencies)
    if ready:
        figures["status_ready_latency"] = percentiles(ready)
    if matched:
        span = max(r["matched_at"] for r in matched) - min(r["written_at"] for r in records)
        figures["converge_seconds"] = round(span, 3)
        figures["objects_per_second"] = round(len(matched) / span, 1) if span > 0 else None
    figures["requests"] = request_figures(report, phase, len(records))
    return figures


def request_figures(report: Obj, phase: str, objects: int) -> Obj:
    """Requests by client in a phase: totals, writes, per AIService and by verb/resource."""
    out: Obj = {}
    for client_name in ("operator", "driver"):
        rows = [c for c in report["counts"] if c["phase"] == phase and c["client"] == client_name]
        if not rows:
            continue
        total = sum(c["count"] for c in rows if c["verb"] != "watch")
        writes = sum(c["count"] for c in rows if c["verb"] in WRITE_VERBS)
        out[client_name] = {
            "total": total,
            "writes": writes,
            "per_aiservice": round(total / objects, 2) if objects else None,
            "writes_per_aiservice": round(writes / objects, 2) if objects else None,
            "by_verb": {
                f"{c['verb']} {c['resource']}": c["count"]
                for c in sorted(rows, key=lambda c: -int(c["count"]))
            },
        }
    return out


@dataclass
class Meter:
    """CPU seconds of processes across a phase."""

    pids: dict[str, int]
    start: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> Meter:
        self.start = {k: proc_cpu_seconds(p) for k, p in self.pids.items()}
        self.start["driver"] = time.process_time()
        self.wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.result = {
            f"{k}_cpu_seconds": round(proc_cpu_seconds(p) - self.start[k], 2)
            for k, p in self.pids.items()
        }
        self.result["driver_cpu_seconds"] = round(time.process_time() - self.start["driver"], 2)
        self.result["wall_seconds"] = round(time.monotonic() - self.wall, 2)


# --- One run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    n: int
    namespaces: int = 10
    workers: int = 8
    probes: int = 20
    timeout: float = 600
    workdir: Path = Path("/tmp/aisvc-operator-scale")
    operator_env: tuple[tuple[str, str], ...] = ()
    operator_ref: str = ""
    """A git ref to run the operator from (default: this working tree)."""


def run_mode(settings: Settings, mode: str) -> Obj:
    """One run against a fresh API server: `baseline` or `operator`."""
    logs = settings.workdir
    logs.mkdir(parents=True, exist_ok=True)
    api = ApiServer(logs / f"apiserver-{mode}-{settings.n}.log")
    operator: Operator | None = None
    result: Obj = {"mode": mode}
    try:
        pids = {"apiserver": api.proc.pid}
        op_log = logs / f"operator-{settings.n}.log"
        op_log.write_text("")
        if mode == "operator":
            source = export_tree(settings.operator_ref, logs) if settings.operator_ref else None
            operator = Operator(api.url, op_log, dict(settings.operator_env), source)
            result["startup_seconds"] = round(wait_for_watches(api, operator, "setup"), 2)
            pids["operator"] = operator.proc.pid
        driver = Driver(api.url, settings.namespaces, apply_children=mode == "baseline")
        n, timeout = settings.n, settings.timeout
        phases: Obj = {}

        def settle(phase: str) -> None:
            """The operator's status writes and Events finish inside their phase."""
            if operator is not None:
                api.wait(phase, timeout, until="ready")
                api.quiet(0.5, timeout)

        api.phase("create")
        with Meter(pids) as meter:
            run_pool(driver.create, range(n), settings.workers)
            api.wait("create", timeout)
            settle("create")
        phases["create"] = {"cpu": meter.result}

        api.phase("probe")
        with Meter(pids) as meter:
            for index in range(n, n + settings.probes):
                driver.create(index)
                name = workload.name_for(index)
                api.wait_one(workload.namespace_for(index, settings.namespaces), name, timeout)
                time.sleep(0.05)
            settle("probe")
        phases["probe"] = {"cpu": meter.result}

        api.phase("update")
        with Meter(pids) as meter:
            run_pool(driver.update, range(n), settings.workers)
            api.wait("update", timeout)
            settle("update")
        phases["update"] = {"cpu": meter.result}

        if operator is not None:
            result["first_process"] = operator.stop()
            api.phase("resync")
            operator = Operator(api.url, op_log, dict(settings.operator_env), source)
            started = time.monotonic()
            wait_for_watches(api, operator, "resync")
            wait_for_reads(api, "resync", n + settings.probes, timeout)
            result["resync_seconds"] = round(time.monotonic() - started, 2)
            api.quiet(1.0, timeout)  # anything it would still write comes within this second
            result["restarted_process"] = operator.stats()

        report = api.control("report", timeout=120)
        result.update(_summary(report, phases, operator is not None, n + settings.probes))
        result["apiserver"] = {
            "cpu_seconds": round(proc_cpu_seconds(api.proc.pid), 2),
            **proc_memory_mb(api.proc.pid),
        }
        return result
    finally:
        if operator is not None:
            operator.stop()
        api.stop()


def _summary(report: Obj, phases: Obj, resynced: bool, objects: int) -> Obj:
    """The observer's report per phase, with CPU per AIService beside each phase."""
    for phase, extra in phases.items():
        figures = {**phase_figures(report, phase), **extra}
        # CPU per AIService hardly moves with the machine's load; wall times do.
        cpu = {k: v for k, v in extra["cpu"].items() if k.endswith("_cpu_seconds")}
        figures["cpu_ms_per_aiservice"] = {
            k.removesuffix("_cpu_seconds"): round(v * 1000 / max(1, figures["objects"]), 1)
            for k, v in {**cpu, "total_cpu_seconds": sum(cpu.values())}.items()
        }
        phases[phase] = figures
    summary: Obj = {}
    if resynced:
        phases["resync"] = {"requests": request_figures(report, "resync", objects)}
        summary["resync_writes"] = phases["resync"]["requests"].get("operator", {}).get("writes", 0)
    summary["phases"] = phases
    summary["observer_cpu_seconds"] = round(report["observer_seconds"], 2)
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def run_scale(settings: Settings) -> Obj:
    """Baseline then operator for one N; the operator's figures also as ratios."""
    load_before = os.getloadavg()
    baseline = run_mode(settings, "baseline")
    operator = run_mode(settings, "operator")
    ratios: Obj = {}
    for phase in ("create", "probe", "update"):
        b, o = baseline["phases"][phase], operator["phases"][phase]
        ratios[phase] = {
            "converge_seconds": _ratio(o.get("converge_seconds"), b.get("converge_seconds")),
            "total_cpu": _ratio(
                o["cpu_ms_per_aiservice"]["total"], b["cpu_ms_per_aiservice"]["total"]
            ),
            "p50": _ratio(o["children_latency"]["p50_ms"], b["children_latency"]["p50_ms"]),
            "p95": _ratio(o["children_latency"]["p95_ms"], b["children_latency"]["p95_ms"]),
        }
    return {
        "n": settings.n,
        "settings": {
            "namespaces": settings.namespaces,
            "workers": settings.workers,
            "probes": settings.probes,
            "operator_env": dict(settings.operator_env),
            "operator_ref": settings.operator_ref or "working tree",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0],
        },
        "baseline": baseline,
        "operator": operator,
        "ratios": ratios,
        "targets": targets(settings.n, operator, ratios),
    }


def targets(n: int, operator: Obj, ratios: Obj) -> Obj:
    """The goals, each with the measured value and whether it was met."""
    probe_p95 = operator["phases"]["probe"]["children_latency"]["p95_ms"]
    peak = max(
        operator.get("first_process", {}).get("peak_rss_mb", 0.0),
        operator.get("restarted_process", {}).get("peak_rss_mb", 0.0),
    )
    return {
        "probe_p95_ms_under_100": {
            "value": probe_p95,
            "met": probe_p95 is not None and probe_p95 < 100,
        },
        "create_converge_ratio_at_most_1.5": {
            "value": ratios["create"]["converge_seconds"],
            "met": (ratios["create"]["converge_seconds"] or 99) <= 1.5,
        },
        "peak_rss_mb_under_150": {"value": round(peak, 1), "met": peak < 150},
        "resync_writes_zero": {
            "value": operator["resync_writes"],
            "met": operator["resync_writes"] == 0,
        },
    }


def summary(result: Obj) -> str:
    """A short human-readable table of one N."""
    b, o = result["baseline"]["phases"], result["operator"]["phases"]
    lines = [f"N={result['n']} (load {result['machine']['loadavg_before']})"]
    for phase in ("create", "probe", "update"):
        bl, ol = b[phase]["children_latency"], o[phase]["children_latency"]
        lines.append(
            f"  {phase:7s} baseline p50/p95/p99 {bl['p50_ms']}/{bl['p95_ms']}/{bl['p99_ms']} ms, "
            f"converge {b[phase].get('converge_seconds')} s | operator "
            f"{ol['p50_ms']}/{ol['p95_ms']}/{ol['p99_ms']} ms, converge "
            f"{o[phase].get('converge_seconds')} s ({o[phase].get('objects_per_second')}/s), "
            f"requests/AIService "
            f"{o[phase]['requests'].get('operator', {}).get('per_aiservice')}; CPU ms/AIService "
            f"baseline {b[phase]['cpu_ms_per_aiservice']['total']}, operator run "
            f"{o[phase]['cpu_ms_per_aiservice']['total']} "
            f"(operator {o[phase]['cpu_ms_per_aiservice'].get('operator')})"
        )
    op = result["operator"]
    lines.append(
        f"  operator peak RSS {op['first_process'].get('peak_rss_mb', 0):.1f} MiB, "
        f"CPU {op['first_process'].get('cpu_seconds')} s; resync writes {op['resync_writes']} "
        f"in {op['resync_seconds']} s"
    )
    for name, target in result["targets"].items():
        lines.append(f"  target {name}: {target['value']} {'met' if target['met'] else 'MISSED'}")
    return "\n".join(lines)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--operator-env {text!r}: expected NAME=VALUE")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="AIServices (repeatable)")
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--workers", type=int, default=8, help="client threads creating")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, help="write operator-scale-<N>.raw.json here")
    parser.add_argument("--operator-ref", default="", help="run the operator from this git ref")
    parser.add_argument("--baseline-only", action="store_true", help="measure the emulator alone")
    parser.add_argument(
        "--operator-env", action="append", default=[], help="NAME=VALUE for the operator"
    )
    args = parser.parse_args(argv)
    for n in args.n or [100]:
        settings = Settings(
            n=n,
            namespaces=args.namespaces,
            workers=args.workers,
            probes=args.probes,
            timeout=args.timeout,
            operator_env=tuple(_pair(e) for e in args.operator_env),
            operator_ref=args.operator_ref,
        )
        if args.baseline_only:
            print(json.dumps(run_mode(settings, "baseline"), indent=1), flush=True)
            continue
        result = run_scale(settings)
        print(summary(result), flush=True)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"operator-scale-{n}.raw.json"
            path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
