"""Every panel of the shipped Grafana dashboards has data, checked against a real Prometheus.

Real components run and a real Prometheus (Debian's `prometheus` binary) scrapes them every
second: `aisvc up` with two canary rollouts of the test function `flaky_fn` under steady
traffic (one canary good and promoted, one failing every event, so it is rolled back and
its events are dead-lettered into the real event store, some then replayed), and the real
Kopf operator reconciling an AIService on the API emulator (tests/support; no
kube-apiserver runs here). The function pods' targets carry the labels the chart's
PodMonitor relabels onto them (`namespace_name`, `aiservice`, `revision_name`).

Then each dashboard's variables are filled from their own `label_values` queries, and every
query of every panel and annotation runs through Prometheus' HTTP API (`query_range`, as
Grafana does) and must parse and return at least one series. The chart's alerting rules are
evaluated the same way: each must parse, and the two that the run provokes (a rolled-back
canary, dead letters piling up) must fire.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiservice_operator.cluster.config import Config
from aiservice_operator.local.manifests import load
from aiservice_operator.local.runner import LocalRun, UpOptions

from tests.support.aiservices import manifest, ready
from tests.support.chart import CHART, find_helm
from tests.support.knative import KnativeServing
from tests.support.kubeemu import AISERVICES, EmulatorThread
from tests.support.local import FUNCTIONS_DIR as LOCAL_TESTS
from tests.support.local import Background, aiservice, write_manifests
from tests.support.operator import OperatorThread
from tests.support.rollout import PROMETHEUS_SH, free_port

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
NS = "t"
SERVICES = ("promoted", "rolled")
WAIT_S = 60.0
ROLLOUT = {
    "canary": "v2",
    "steps": [50, 100],
    "interval": "1s",
    "analysis": {"minEvents": 3, "maxErrorRate": 0.2, "maxP99LatencyMs": 10000,
                 "maxDeadLetterRate": 0.5, "failureLimit": 1},
}  # fmt: skip
GRAFANA = {"$__rate_interval": "10s", "$__interval": "1s"}
"""Grafana's built-in variables, as it would fill them for a 1 s scrape interval."""


def prometheus_binary() -> None:
    if os.environ.get("PROMETHEUS_BIN") or any(
        os.access(Path(d) / "prometheus", os.X_OK) for d in os.environ["PATH"].split(os.pathsep)
    ):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("no prometheus binary in CI (Debian package prometheus)")
    pytest.skip("no prometheus binary on this machine (Debian package prometheus)")


@dataclass
class Prometheus:
    url: str
    started: float

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('error') or response.text[:300]}")
        return body["data"]

    def range_query(self, expr: str) -> list[dict[str, Any]]:
        end = time.time()
        return list(
            self.get("/api/v1/query_range", query=expr, start=self.started, end=end, step="1s")[
                "result"
            ]
        )

    def label_values(self, query: str) -> list[str]:
        """Grafana's `label_values(metric{...}, label)` variable query."""
        found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert found, f"not a label_values query: {query}"
        selector, label = found.groups()
        return list(
            self.get(
                f"/api/v1/label/{label}/values",
                **{"match[]": selector, "start": self.started, "end": time.time()},
            )
        )


def scrape_config(home: Path, broker: int, store: int, operator: int) -> Path:
    """The scrape jobs: function pods (file_sd, written once `aisvc up` runs), the event
    store, the local run's rollout metrics and the operator."""

    def static(job: str, port: int, path: str = "/metrics") -> dict[str, Any]:
        return {
            "job_name": job,
            "honor_labels": True,  # as the chart's ServiceMonitors: the series' namespace wins
            "metrics_path": path,
            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
        }

    (home / "functions.json").write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "functions",
                "file_sd_configs": [
                    {"files": [str(home / "functions.json")], "refresh_interval": "1s"}
                ],
            },
            static("event-store", store),
            static("aisvc-local", broker, "/_aisvc/metrics"),
            static("operator", operator),
        ],
    }
    path = home / "scrape.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def function_targets(run: LocalRun) -> list[dict[str, Any]]:
    """One file_sd group per revision, labelled like the chart's PodMonitor labels pods."""
    groups = []
    for service in run.snapshot()["services"]:
        for revision in service["revisions"]:
            groups.append(
                {
                    "targets": [e.removeprefix("http://") for e in revision["endpoints"]],
                    "labels": {
                        "namespace_name": service["namespace"],
                        "aiservice": service["name"],
                        "revision_name": revision["revision"],
                    },
                }
            )
    return groups


def model(directory: Path, name: str, **extra: Any) -> str:
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"fixed_file": str(directory / "never"), **extra}))
    return path.as_uri()


def canary_service(name: str, v1: str, v2: str) -> dict[str, Any]:
    return aiservice(
        name,
        f"test.{name}",
        f"test.{name}.done",
        {"v1": v1, "v2": v2},
        extra={
            "traffic": {"stable": "v1"},
            "rollout": ROLLOUT,
            "delivery": {"retry": 0, "timeout": "PT5S"},
            "autoscaling": {"minScale": 1, "maxScale": 1, "target": 8},
        },
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, LocalRun]]:
    prometheus_binary()
    work = tmp_path_factory.mktemp("dashboards")
    old_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(LOCAL_TESTS), old_path) if p)
    broker, store, op_port = free_port(), free_port(), free_port()
    home = work / "prometheus"
    home.mkdir()
    config = scrape_config(home, broker, store, op_port)
    stop = threading.Event()
    with (
        EmulatorThread() as kube,
        OperatorThread(
            kube.url, replace(Config(retry_delay=0.3, watch_timeout=60), metrics_port=op_port)
        ),
    ):
        KnativeServing(kube).start()
        started = subprocess.run(
            [str(PROMETHEUS_SH), "start", str(home), str(free_port()), "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert started.returncode == 0, started.stderr[-2000:]
        prom = Prometheus(started.stdout.strip(), time.time())
        good, bad = model(work, "good"), model(work, "bad", fail_all=True)
        manifests = write_manifests(
            work / "canary.yaml", [canary_service("promoted", good, good),
                                   canary_service("rolled", good, bad)]
        )  # fmt: skip
        options = UpOptions(
            state_dir=work / ".aisvc",
            broker_port=broker,
            event_store_port=store,
            ready_timeout=60,
            rollout_tick_seconds=0.2,
        )
        bg = Background(LocalRun(load([manifests]), options))
        producer: threading.Thread | None = None
        try:
            bg.call(bg.run.start())
            targets = home / "functions.tmp"
            targets.write_text(json.dumps(function_targets(bg.run)))
            targets.replace(home / "functions.json")
            scraped_before_traffic(prom, len(function_targets(bg.run)))
            producer = threading.Thread(target=produce, args=(bg.run, stop), daemon=True)
            producer.start()
            kube.create(AISERVICES, manifest("watched", "ops"))
            ready(kube, "ops", "watched")
            settle(bg.run)
            yield prom, bg.run
        finally:
            stop.set()
            if producer is not None:
                producer.join(10)
            bg.close()
            subprocess.run([str(PROMETHEUS_SH), "stop", str(home)], timeout=30, check=False)
            if old_path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old_path


def scraped_before_traffic(prom: Prometheus, functions: int) -> None:
    """Wait until Prometheus has scraped every target once, with the rollout counters still
    at 0: a rollback and its dead letters can happen within a second of the first event, and
    a counter whose first sample already counts them shows no increase() to the panels."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        up = prom.get("/api/v1/query", query="up == 1")["result"]
        jobs = [r["metric"]["job"] for r in up]
        counters = prom.get(
            "/api/v1/query", query='aisvc_rollout_decisions_total{aiservice="rolled"}'
        )["result"]
        if (
            jobs.count("functions") >= functions
            and counters
            and {"event-store", "aisvc-local", "operator"} <= set(jobs)
        ):
            return
        time.sleep(0.5)
    pytest.fail(f"Prometheus did not scrape every target within {WAIT_S:.0f} s")


def produce(run: LocalRun, stop: threading.Event) -> None:
    """Steady traffic to both AIServices through the local broker."""
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            for name in SERVICES:
                client.post(
                    f"{run.broker_url}/{NS}/default",
                    headers={
                        "ce-specversion": "1.0",
                        "ce-id": str(uuid.uuid4()),
                        "ce-source": "/tests",
                        "ce-type": f"test.{name}",
                        "content-type": "application/json",
                    },
                    content=b"{}",
                )
            time.sleep(0.02)


def settle(run: LocalRun) -> None:
    """Wait for both rollouts to end (bounded), then replay some of the dead letters."""
    deadline = time.monotonic() + WAIT_S
    phases: dict[str, Any] = {}
    while time.monotonic() < deadline:
        phases = {s["name"]: (s["rollout"] or {}).get("phase") for s in run.snapshot()["services"]}
        if phases == {"promoted": "Succeeded", "rolled": "Failed"}:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"rollouts did not end as expected: {phases}")
    # One letter only: the failed canary may leave as few as three (minEvents), and the
    # dead-letter alert needs some still pending after the replay.
    replayed = httpx.post(
        f"{run.event_store_url}/v1/replay",
        json={"filter": {"namespace": NS, "name": "rolled"}, "limit": 1},
        timeout=30,
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["replayed"] >= 1


def fill(text: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):  # $aiservice before $a...
        text = text.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return text


def variables(prom: Prometheus, board: dict[str, Any]) -> dict[str, str]:
    """Each query variable filled from its own label_values query, in order (a chained one
    sees the values before it): every value of a multi-value one, as Grafana writes a
    multi-value selection for a regex matcher."""
    values: dict[str, str] = {}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = fill(var["query"]["query"], values)
        found = prom.label_values(query)
        if not found:
            return {}
        if var.get("multi"):
            values[var["name"]] = "(" + "|".join(sorted(found)) + ")"
        else:
            values[var["name"]] = NS if NS in found else sorted(found)[0]
    return values


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and every Prometheus annotation."""
    out = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"])
        for p in board["panels"]
        for t in p.get("targets", [])
    ]
    out += [
        (f"annotation {a['name']!r}", a["expr"])
        for a in board["annotations"]["list"]
        if a.get("expr")
    ]
    return out


def empty_queries(prom: Prometheus, board: dict[str, Any]) -> list[str]:
    values = variables(prom, board)
    if not values:
        return ["a variable has no values yet"]
    window = f"{max(2, int(time.time() - prom.started))}s"
    fixed = {**values, "__range": window}
    empty = []
    for where, expr in queries(board):
        query = fill(expr, fixed)
        for builtin, value in GRAFANA.items():
            query = query.replace(builtin, value)
        assert "$" not in query, f"{where}: unfilled variable in {query}"
        if not prom.range_query(query):  # a query that does not parse raises here
            empty.append(f"{where}: {query}")
    return empty


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_panel_query_returns_data(world: tuple[Prometheus, LocalRun], path: Path) -> None:
    prom, _ = world
    board = json.loads(path.read_text())
    assert queries(board), "a dashboard without queries"
    deadline = time.monotonic() + WAIT_S  # scrapes land every second: wait until they did
    while (empty := empty_queries(prom, board)) and time.monotonic() < deadline:
        time.sleep(1)
    assert empty == []


def test_alert_rules_parse_and_the_provoked_ones_fire(
    world: tuple[Prometheus, LocalRun], tmp_path: Path
) -> None:
    prom, _ = world
    helm = find_helm()
    if helm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no helm binary in CI")
        pytest.skip("no helm binary (scripts/helm.sh)")
    rendered = subprocess.run(
        [helm, "template", "x", str(CHART), "--set", "alerts.enabled=true",
         "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rules = {
        r["alert"]: r["expr"]
        for g in yaml.safe_load(rendered)["spec"]["groups"]
        for r in g["rules"]
    }
    want = {"AIServiceRolloutRolledBack": "rolled", "AIServiceDeadLettersGrowing": "rolled"}
    deadline = time.monotonic() + WAIT_S
    while True:
        firing = {}
        for alert, expr in rules.items():  # every rule must parse (an error raises)
            result = prom.get("/api/v1/query", query=expr)["result"]
            firing[alert] = {r["metric"].get("aiservice") for r in result}
        missing = {a: s for a, s in want.items() if s not in firing[a]}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert missing == {}, firing
