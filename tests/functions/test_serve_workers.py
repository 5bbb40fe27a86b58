"""Several worker processes behind one serve command: summed metrics, pod-wide readiness.

Runs the real ``python -m aiservice_functions.runtime serve`` with two worker processes
and the torch-free ``gated_fn`` function, whose replies name the worker that answered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.net import free_port
from tests.support.runtime import metric_value, post_binary, wait_ready

HERE = Path(__file__).resolve().parent
STALE_PID = 4242


@dataclass
class Served:
    base: str
    proc: subprocess.Popen[bytes]
    gate: Path
    metrics_dir: Path
    sent: int = 0


def _stale_metrics(directory: Path) -> None:
    """Files another run left behind: summed in if the server used this directory."""
    directory.mkdir(parents=True)
    script = (
        "from prometheus_client import Counter\n"
        "c = Counter('aisvc_function_events', 'x', ['outcome', 'model_version'])\n"
        "c.labels('replied', 'v1').inc(1000)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    (directory / f"ready-{STALE_PID}").touch()
    assert any(directory.glob("counter_*.db"))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("workers")
    gate, tmp = root / "gate", root / "tmp"
    gate.mkdir()
    # A directory a killed server left (removed at start), and one inherited from the
    # environment, as the function processes of a local run share it (ignored).
    left = tmp / f"aisvc-metrics-{_dead_pid()}-old"
    _stale_metrics(left)
    inherited = root / "inherited"
    _stale_metrics(inherited)
    model = root / "model.txt"
    model.write_text("m")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "GATED_FN_DIR": str(gate),
        "PROMETHEUS_MULTIPROC_DIR": str(inherited),
        "TMPDIR": str(tmp),
        "AISVC_WORKERS": "2",
        "AISVC_CONCURRENCY": "8",
        "AISVC_MODEL_URI": model.as_uri(),
        "AISVC_MODEL_VERSION": "v1",
        "AISVC_REPLY_TYPE": "com.example.gated",
        "PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiservice_functions.runtime", "serve", "gated_fn"],
        env=env,
        stdout=(root / "stdout.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (made := list(tmp.glob(f"aisvc-metrics-{proc.pid}-*"))):
            assert proc.poll() is None and time.monotonic() < deadline, "no metrics directory"
            time.sleep(0.02)
        assert not left.exists()
        yield Served(f"http://127.0.0.1:{port}", proc, gate, made[0])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _get(url: str) -> requests.Response:
    # A new connection each time, so the kernel may hand it to either worker.
    with requests.Session() as session:
        return session.get(url, timeout=10)


def _send(served: Served, count: int) -> set[int]:
    """Post ``count`` events, 8 at a time on fresh connections; the pids that answered."""

    def one(_: int) -> int:
        response = post_binary(served.base, {"n": 1})
        assert response.status_code == 200, response.text
        return int(response.json()["pid"])

    with ThreadPoolExecutor(8) as pool:
        pids = set(pool.map(one, range(count)))
    served.sent += count
    return pids


def _worker_pids(served: Served) -> set[int]:
    pids: set[int] = set()
    for _ in range(50):  # until both workers answered (the kernel picks who accepts)
        pids |= _send(served, 40)
        if len(pids) == 2:
            return pids
    raise AssertionError(f"only workers {pids} answered")


def test_ready_only_once_every_worker_loaded_its_model(served: Served) -> None:
    deadline = time.monotonic() + 60
    while True:  # the first worker loads at once, the second waits for the gate
        try:
            if _get(f"{served.base}/health/liveness").status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    assert not (served.metrics_dir / f"ready-{STALE_PID}").exists()
    # Ask until the worker that has its model answered too: it must say 503 as well.
    answers: list[requests.Response] = []
    while not any("detail" in a.json() for a in answers):
        assert len(answers) < 200, "the loaded worker never answered readiness"
        answers.append(_get(f"{served.base}/health/readiness"))
    assert {a.status_code for a in answers} == {503}
    assert {a.json()["status"] for a in answers} == {"loading"}
    (served.gate / "open").touch()
    wait_ready(served.base)
    assert len(list(served.metrics_dir.glob("ready-*"))) == 2


def test_metrics_sum_the_events_of_both_workers(served: Served) -> None:
    wait_ready(served.base)
    pids = _worker_pids(served)
    assert len(pids) == 2
    text = _get(f"{served.base}/metrics").text
    # Exactly what was sent: both workers summed, no other run's files.
    replied = metric_value(
        text, "aisvc_function_events_total", outcome="replied", model_version="v1"
    )
    assert replied == served.sent
    count = metric_value(
        text, "aisvc_function_latency_seconds_count", outcome="replied", model_version="v1"
    )
    assert count == served.sent
    assert metric_value(text, "aisvc_function_model_ready", model_version="v1") == 1
    # Every worker answers /metrics with the same totals.
    assert all(
        metric_value(
            _get(f"{served.base}/metrics").text,
            "aisvc_function_events_total",
            outcome="replied",
            model_version="v1",
        )
        == served.sent
        for _ in range(6)
    )


def test_a_replaced_worker_keeps_the_totals_and_drops_its_marker(served: Served) -> None:
    wait_ready(served.base)
    victim = min(_worker_pids(served))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while (served.metrics_dir / f"ready-{victim}").exists():
        assert time.monotonic() < deadline, "the master did not forget the dead worker"
        time.sleep(0.05)
    wait_ready(served.base)
    pids = _worker_pids(served)
    assert victim not in pids
    text = _get(f"{served.base}/metrics").text
    # The dead worker's events stay counted: counters never go down.
    assert (
        metric_value(text, "aisvc_function_events_total", outcome="replied", model_version="v1")
        == served.sent
    )
    assert len(list(served.metrics_dir.glob("ready-*"))) == 2


def test_sigterm_stops_every_worker(served: Served) -> None:
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(30) == 0
    assert not served.metrics_dir.exists()
