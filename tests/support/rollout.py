"""Real metric sources for the rollout tests: a real Prometheus (Debian's `prometheus`
binary, installed by scripts/ci-deps.sh) scraping a queue-proxy stand-in process every
second, and the real event store app on SQLite. Without the binary those tests skip."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server

from tests.support.processes import stop

HERE = Path(__file__).resolve().parent
PROMETHEUS_SH = HERE.parents[1] / "scripts" / "prometheus.sh"
STANDIN = HERE.parent / "rollout" / "revision_standin.py"
"""A program, run as a script: it stays next to the tests that start it."""
NAMESPACE = "shop"
TOKEN = "rollout-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll `check` until it returns something truthy (bounded; fails naming `what`)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError) as err:
            last_error = err
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last error: {last_error})")


@dataclass
class Standin:
    """Client of the revision stand-in process (see revision_standin.py)."""

    url: str

    def register(
        self,
        revision: str,
        *,
        shape: str = "qp",
        error_rate: float = 0.0,
        delay_ms: float = 0,
        namespace: str = NAMESPACE,
    ) -> None:
        response = httpx.post(
            f"{self.url}/control/{revision}",
            json={
                "shape": shape,
                "error_rate": error_rate,
                "delay_ms": delay_ms,
                "namespace": namespace,
            },
        )
        response.raise_for_status()

    def send(self, revision: str, count: int, shape: str = "qp") -> dict[int, int]:
        """Send `count` events through the revision; answers by status code."""
        codes: dict[int, int] = {}
        with httpx.Client() as client:
            for _ in range(count):
                code = client.post(f"{self.url}/{shape}/{revision}", content=b"{}").status_code
                codes[code] = codes.get(code, 0) + 1
        return codes


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN), str(port), NAMESPACE],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/metrics").status_code == 200, "the stand-in")
        yield Standin(url)
    finally:
        stop(proc)


@dataclass
class Prometheus:
    url: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}).json()
        return list(body["data"]["result"])

    def wait_value(self, promql: str, expected: float) -> None:
        """Wait until Prometheus has scraped `promql` at `expected`."""

        def check() -> bool:
            result = self.query(promql)
            return bool(result) and float(result[0]["value"][1]) == expected

        wait_for(check, f"{promql} == {expected}")

    def wait_settled(self, selector: str, expected: float) -> None:
        """Wait until every scrape of the last 3 s saw the series of `selector` summing to
        `expected`: enough samples after the traffic for `increase()` to extrapolate little
        (with only one it adds up to a whole scrape interval's worth)."""
        self.wait_value(f"sum(min_over_time({selector}[3s]))", expected)


@pytest.fixture(scope="session")
def prometheus(standin: Standin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    home = tmp_path_factory.mktemp("prometheus")
    target = standin.url.removeprefix("http://")
    started = subprocess.run(
        [str(PROMETHEUS_SH), "start", str(home), str(free_port()), target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if started.returncode == 3:
        pytest.skip(f"no Prometheus on this machine: {started.stderr.strip()}")
    if started.returncode != 0:
        pytest.fail(f"could not start Prometheus: {started.stderr[-2000:]}")
    prom = Prometheus(started.stdout.strip())
    try:
        wait_for(lambda: prom.query('up{job="revisions"} == 1'), "the first scrape")
        yield prom
    finally:
        subprocess.run([str(PROMETHEUS_SH), "stop", str(home)], timeout=30, check=False)


@dataclass
class EventStore:
    url: str
    token: str

    def dead_letter(self, service: str, revision: str, event_id: str) -> None:
        """Post one dead letter attributed to `revision`, the way Knative's dispatcher
        would deliver it to the default dead-letter sink."""
        response = httpx.post(
            f"{self.url}/v1/namespaces/{NAMESPACE}/aiservices/{service}/dead-letters",
            content=b'{"text": "bad"}',
            headers={
                "ce-specversion": "1.0",
                "ce-id": event_id,
                "ce-source": "/shop",
                "ce-type": "com.example.review",
                "ce-aisvcrevision": revision,
                "ce-knativeerrorcode": "500",
                "content-type": "application/json",
            },
        )
        assert response.status_code == 201, response.text

    def audit(self, service: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/v1/namespaces/{namespace}/aiservices/{service}/audit",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        response.raise_for_status()
        return list(response.json()["items"])


@pytest.fixture(scope="session")
def event_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    from aiservice_functions.event_store import create_app, open_store

    db = tmp_path_factory.mktemp("event-store") / "events.db"
    store = open_store(f"sqlite:///{db}")
    app = create_app(store, token=TOKEN)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield EventStore(f"http://127.0.0.1:{server.server_port}", TOKEN)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        store.close()
