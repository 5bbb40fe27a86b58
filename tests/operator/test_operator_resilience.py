"""Restarts, conflicts and the shipped entry point, against the API emulator.

Why the emulator: faults on demand (401 re-login, 5xx, throttling, dropped watches) at a
chosen moment, which a real API server does not produce; the real-server counterpart, an API
server and etcd restart, is in tests/cluster/test_operator.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiservice_operator.cluster import kube as kube_client
from aiservice_operator.core.analysis import Observation

from tests.support.aiservices import manifest, ready, traffic
from tests.support.knative import KnativeServing
from tests.support.kubeemu import (
    AISERVICES,
    KSERVICES,
    NAMESPACES,
    TRIGGERS,
    EmulatorThread,
    wait_for,
)
from tests.support.operator import OperatorThread
from tests.support.processes import stop

ROOT = Path(__file__).resolve().parents[2]


def settle(kube: EmulatorThread, quiet: float = 0.3) -> None:
    """Wait until no request has reached the API for `quiet` seconds (the operator idles)."""
    seen = -1
    while True:
        count = len(kube.requests())
        if count == seen:
            return
        seen = count
        time.sleep(quiet)


@pytest.fixture
def cluster() -> Iterator[tuple[EmulatorThread, KnativeServing]]:
    with EmulatorThread() as kube:
        yield kube, KnativeServing(kube).start()


def test_restart_resumes_without_rewriting_children(
    cluster: tuple[EmulatorThread, KnativeServing],
) -> None:
    kube, _ = cluster
    two = manifest(
        "calm",
        "r1",
        models=[
            {"name": "v1", "uri": "file:///models/v1.pt"},
            {"name": "v2", "uri": "file:///models/v2.pt"},
        ],
        traffic={
            "stable": "v1",
            "split": [{"model": "v1", "percent": 50}, {"model": "v2", "percent": 50}],
        },
        consumes=[{"type": "a.b"}, {"type": "c.d", "filters": [{"suffix": {"source": "/x"}}]}],
    )
    with OperatorThread(kube.url):
        kube.create(AISERVICES, two)
        kube.create(AISERVICES, manifest("plain", "r2"))
        before = ready(kube, "r1", "calm")
        ready(kube, "r2", "plain")
        settle(kube)
    children = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for kind in (KSERVICES, TRIGGERS)
        for o in kube.list(kind)
    }
    kube.clear_log()

    with OperatorThread(kube.url):
        # The resume reconcile reads both AIServices' Triggers last; then it is done.
        wait_for(
            lambda: (
                {
                    r.namespace
                    for r in kube.requests()
                    if r.plural == "triggers" and r.verb == "list"
                }
                >= {"r1", "r2"}
            ),
            what="the resume reconcile",
        )
        settle(kube)

    assert kube.writes("services", "triggers", "revisions") == []
    assert [w for w in kube.writes("aiservices") if w.subresource == "status"] == []
    after = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for kind in (KSERVICES, TRIGGERS)
        for o in kube.list(kind)
    }
    assert after == children
    assert kube.get(AISERVICES, "r1", "calm")["status"] == before["status"]


def test_conflicts_are_retried(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    kube.inject_fault(
        lambda r: r.namespace == ns and r.plural == "services" and r.verb == "create", 409, times=1
    )
    kube.inject_fault(
        lambda r: r.namespace == ns and r.plural == "triggers" and r.verb == "list", 500, times=1
    )
    kube.create(AISERVICES, manifest("retry", ns))
    ready(kube, ns, "retry")
    codes = [
        (r.plural, r.verb, r.code)
        for r in kube.requests()
        if r.namespace == ns
        and r.plural in ("services", "triggers")
        and r.verb in ("create", "list")
    ]
    assert ("services", "create", 409) in codes and ("services", "create", 201) in codes
    assert ("triggers", "list", 500) in codes and ("triggers", "list", 200) in codes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ENTRY_POINTS = {
    "python -m": [sys.executable, "-m", "aiservice_operator"],
    # What the chart runs (namespaces from the command line instead of the environment).
    "kopf run": [
        sys.executable,
        "-m",
        "kopf",
        "run",
        "--standalone",
        "-m",
        "aiservice_operator.cluster.handlers",
    ],
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_the_shipped_entry_points_run_the_operator(
    cluster: tuple[EmulatorThread, KnativeServing], ns: str, entry: str
) -> None:
    kube, _ = cluster
    metrics_port = free_port()
    env = {
        **os.environ,
        "AISVC_METRICS_PORT": str(metrics_port),  # not the default 8000: tests run side by side
        "AISVC_KUBE_SERVER": kube.url,
        "AISVC_WATCH_NAMESPACES": ns,
        "AISVC_EVENT_STORE_URL": "http://store.example:8080",
        "AISVC_RESYNC_SECONDS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "functions")]),
    }
    kube.create(NAMESPACES, {"metadata": {"name": ns}})  # watched by name: it must exist
    kube.create(AISERVICES, manifest("proc", ns))
    kube.create(AISERVICES, manifest("elsewhere", "not-watched"))
    process = subprocess.Popen(
        [*ENTRY_POINTS[entry], *(["--namespace", ns] if entry == "kopf run" else [])],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status = ready(kube, ns, "proc")
        assert status["status"]["url"] == f"http://proc.{ns}.svc.cluster.local"
        (trigger,) = kube.list(TRIGGERS, ns)
        assert trigger["spec"]["delivery"]["deadLetterSink"]["uri"].startswith(
            "http://store.example:8080/v1/namespaces/"
        )
        assert kube.find(KSERVICES, "not-watched", "elsewhere") is None
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'aisvc_operator_reconciles_total{result="ok"}' in scraped
        # Stripped of the labels the watch filters on, no event reaches the operator:
        # the resync puts them back.
        label = "app.kubernetes.io/managed-by"
        kube.patch(KSERVICES, ns, "proc", {"metadata": {"labels": {label: None}}})
        wait_for(
            lambda: kube.get(KSERVICES, ns, "proc")["metadata"]["labels"].get(label),
            what="the labels restored by the resync",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=20)
        finally:
            stop(process)  # SIGKILL, had SIGTERM not stopped it
    assert process.returncode == 0, output
    _assert_json_lines(output, ns)


def _assert_json_lines(output: str, ns: str) -> None:
    """One log format (the runtime's and the store's keys) from either entry point, and
    per-object lines say which AIService they are about."""
    entries = []
    for line in output.splitlines():
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    assert entries
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), entry
    about_proc = [e for e in entries if (e.get("k8s_ref") or {}).get("name") == "proc"]
    assert about_proc and all(e["k8s_ref"]["namespace"] == ns for e in about_proc)


def test_every_request_the_operator_makes_is_a_registered_permission(
    cluster: tuple[EmulatorThread, KnativeServing],
) -> None:
    """The RBAC registry (kube.required_permissions) against what the running operator
    actually requested through a whole lifecycle: a gap here is a 403 on a real cluster."""
    kube, _ = cluster
    with OperatorThread(kube.url):
        kube.create(AISERVICES, manifest("a", "perm", consumes=[{"type": "x"}, {"type": "y"}]))
        kube.create(AISERVICES, manifest("bad", "perm", traffic={"stable": "nope"}))
        ready(kube, "perm", "a")
        ready(kube, "perm", "bad", status="False")
        kube.patch(AISERVICES, "perm", "a", {"spec": {"consumes": [{"type": "x"}]}})
        wait_for(lambda: len(kube.list(TRIGGERS, "perm")) == 1, what="a Trigger pruned")
        kube.patch(
            KSERVICES,
            "perm",
            "a",
            {"spec": {"traffic": [{"latestRevision": True, "percent": 100}]}},
        )
        wait_for(
            lambda: kube.get(KSERVICES, "perm", "a")["spec"]["traffic"][0].get("revisionName"),
            what="the drift reverted",
        )
        kube.delete(AISERVICES, "perm", "a")
        settle(kube)
    made = {
        (r.group, r.plural + (f"/{r.subresource}" if r.subresource else ""), r.verb)
        for r in kube.requests()
    }
    assert ("serving.knative.dev", "services", "patch") in made
    assert ("eventing.knative.dev", "triggers", "delete") in made
    assert made - set(kube_client.required_permissions()) == set()


def rollout(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("rollout") or {})


class GatedObserver:
    """The canary's metrics, in place of Prometheus (the tick's writes are under test, not
    the metric source): the canary is reported not ready until `go` is set, then healthy."""

    event_store = None

    def __init__(self) -> None:
        self.go = threading.Event()

    def observe(self, *, canary_ready: bool, window_seconds: float, **_: object) -> Observation:
        ready = canary_ready and self.go.is_set()
        return Observation(
            events=100, p99_latency_ms=5, window_seconds=window_seconds, canary_ready=ready
        )


def test_a_rollout_step_reaches_traffic_after_a_failed_write(
    cluster: tuple[EmulatorThread, KnativeServing],
) -> None:
    """The tick records the new weight in status, then reconciles; when that write fails,
    the retried tick has nothing new to decide, yet the weight must still reach traffic."""
    kube, _ = cluster
    canary = manifest(
        "step",
        "r3",
        models=[
            {"name": "v1", "uri": "file:///models/v1.pt"},
            {"name": "v2", "uri": "file:///models/v2.pt"},
        ],
        rollout={"canary": "v2", "steps": [50, 100], "interval": "10m"},
    )
    observer = GatedObserver()
    operator = OperatorThread(kube.url)
    operator.memo.observer = observer
    with operator:
        kube.create(AISERVICES, canary)
        wait_for(
            lambda: (
                kube.find(KSERVICES, "r3", "step")
                and any(t.get("tag") == "canary" for t in traffic(kube, "r3", "step"))
            ),
            what="the canary routable at 0%",
        )
        settle(kube)
        kube.inject_fault(lambda r: r.plural == "services" and r.verb == "patch", 409)
        observer.go.set()
        wait_for(
            lambda: kube.get(AISERVICES, "r3", "step")["status"]["rollout"]["weight"] == 50,
            what="step 1 recorded",
        )
        percent = wait_for(
            lambda: (
                {t.get("tag"): t["percent"] for t in traffic(kube, "r3", "step")}["canary"] == 50
            ),
            what="the canary's weight in traffic",
        )
        assert percent
