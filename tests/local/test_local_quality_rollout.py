"""Canary rollouts gated on model quality, on the local run with real models: the shipped
sentiment v1 head as stable, real MiniLM functions, the real event store on SQLite with
the decision log on, reviews streaming in and a labelling system sending feedback.

The canaries are the shipped v2 head (a real improvement) and a deliberately bad head
(tests/data: weights zeroed, bias towards "positive", so it answers every review
"positive", quickly and with 200 OK). The bad head passes the error, latency and
dead-letter gates every time; only the quality checks catch it."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiservice_functions import contract
from aiservice_functions.sentiment.data import hand_written_set
from aiservice_operator.cli.main import app
from aiservice_operator.local.manifests import load
from aiservice_operator.local.runner import LocalRun, UpOptions
from aiservice_operator.local.state_files import read_state
from typer.testing import CliRunner

from tests.support.local import Background

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
"""Four real-model rollouts share one run; starting it takes minutes on a busy machine."""

DATA = Path(__file__).resolve().parents[1] / "data"
V1 = "pkg://aiservice_functions.sentiment/models/head-v1.pt"
V2 = "pkg://aiservice_functions.sentiment/models/head-v2.pt"
BAD = (DATA / "sentiment-head-always-positive.pt").as_uri()
NS = "q"
WAIT_S = 240.0
TRAFFIC_GATES = {"maxErrorRate": 0.05, "maxP99LatencyMs": 5000, "maxDeadLetterRate": 0.05,
                 "minEvents": 14, "failureLimit": 1}  # fmt: skip
"""A busy machine delivers ~3 reviews a second to each service: 14 fill a 5 s window. v2
disagrees with v1 on 2 of the 24 reviews, 11 and 13 apart in the cycle, so any 14 or more
consecutive reviews hold at most ceil(n / 11) of them: agreement >= 12/14 = 0.857."""
QUALITY = {"minAgreement": 0.85, "maxOutputDrift": 0.2}
SERVICES: dict[str, tuple[str, dict[str, Any]]] = {
    "agree": (BAD, {"minAgreement": 0.85}),
    "drift": (BAD, {"maxOutputDrift": 0.2}),
    "better": (V2, QUALITY),
    "graded": (BAD, {"minAccuracy": 0.8, "minFeedback": 20}),
}
REVIEWS = hand_written_set()
"""24 natural reviews, half positive, streamed round-robin: every window holds them alike
(v1 labels 10 positive, v2 10, the bad head 24)."""


def manifest(name: str, canary: str, checks: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "consumes": [{"type": f"test.review.{name}"}],
            "produces": f"test.scored.{name}",
            "function": {
                "image": "ghcr.io/aiservice-dev/aiservice-functions:0.1.0",
                "entrypoint": "aiservice_functions.sentiment",
                "batching": {"maxBatchSize": 16, "maxWaitMs": 5},
            },
            "models": [{"name": "v1", "uri": V1}, {"name": "v2", "uri": canary}],
            "traffic": {"stable": "v1"},
            "rollout": {
                "canary": "v2",
                "steps": [50, 100],
                "interval": "5s",
                "shadow": True,
                "analysis": {**TRAFFIC_GATES, **checks},
            },
            "decisionLog": {},
            "delivery": {"retry": 0, "timeout": "PT10S"},
        },
    }


class Labeller:
    """A labelling system: reads the decisions from the store's API and sends, through the
    broker, the true label of half of them (every one for services in `everything`)."""

    def __init__(self, store: str, broker: str, truth: dict[str, str]) -> None:
        self.store, self.broker, self.truth = store, broker, truth
        self.labelled = {"agree", "drift", "better"}
        self.everything: set[str] = set()
        self.after: dict[str, int] = {}
        self.sent: dict[str, int] = {}

    def label(self, client: httpx.Client) -> None:
        for name in sorted(self.labelled | self.everything):
            url = f"{self.store}/v1/namespaces/{NS}/aiservices/{name}/decisions"
            params = {"role": "reply", "after": self.after.get(name, 0), "limit": 500}
            items = client.get(url, params=params).json()["items"]
            for n, item in enumerate(items):
                self.after[name] = item["seq"]
                truth = self.truth.get((item["causationId"] or "").partition("#")[2])
                if truth is None or (name not in self.everything and n % 2):
                    continue
                headers = {"ce-specversion": "1.0", "ce-id": f"label-{item['id']}",
                           "ce-source": "/labelling", "ce-type": contract.FEEDBACK_TYPE,
                           f"ce-{contract.EXT_FEEDBACK_FOR}": name,
                           "content-type": "application/json"}  # fmt: skip
                body = {"decisionId": item["id"], "label": truth}
                client.post(self.broker, headers=headers, json=body)
                self.sent[name] = self.sent.get(name, 0) + 1


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRun, Labeller]]:
    work = tmp_path_factory.mktemp("quality")
    path = work / "quality.yaml"
    docs = [manifest(name, canary, checks) for name, (canary, checks) in SERVICES.items()]
    path.write_text(yaml.safe_dump_all(docs))
    options = UpOptions(state_dir=work / ".aisvc", ready_timeout=240, rollout_tick_seconds=0.5)
    bg = Background(LocalRun(load([path]), options))
    try:
        bg.call(bg.run.start(), timeout=300)
    except Exception:
        bg.close()
        raise
    state = read_state(work / ".aisvc")
    assert state is not None and state["eventStoreUrl"]
    broker = state["brokers"][f"{NS}/default"]
    truth: dict[str, str] = {}
    labeller = Labeller(state["eventStoreUrl"], broker, truth)
    stop = threading.Event()

    def produce() -> None:  # about 8 reviews a second to each service
        with httpx.Client(timeout=10) as client:
            for review in itertools.cycle(REVIEWS):
                if stop.is_set():
                    return
                for name in SERVICES:  # an id each: the broker takes (source, id) once
                    event_id = f"{name}-{uuid.uuid4()}"
                    truth[event_id] = review.label
                    headers = {"ce-specversion": "1.0", "ce-id": event_id,
                               "ce-source": "/reviews", "ce-type": f"test.review.{name}",
                               "content-type": "application/json"}  # fmt: skip
                    client.post(broker, headers=headers, json={"text": review.text})
                time.sleep(0.12)

    def label() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.wait(1.0):
                labeller.label(client)

    threads = [threading.Thread(target=f, daemon=True) for f in (produce, label)]
    for thread in threads:
        thread.start()
    try:
        yield bg.run, labeller
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        bg.close()


def rollout(run: LocalRun, name: str) -> dict[str, Any]:
    service = next(s for s in run.snapshot()["services"] if s["name"] == name)
    return dict(service["rollout"] or {})


def finished(run: LocalRun, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while (state := rollout(run, name)).get("phase") not in ("Succeeded", "Failed"):
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: rollout still at {json.dumps(state)[:3000]} after {WAIT_S}s")
        time.sleep(0.5)
    return state


def analyses(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The history entries that judged an analysis (not the promotion's bookkeeping)."""
    return [h for h in state["history"] if "agreement" in (h.get("metrics") or {})]


def rolled_back(state: dict[str, Any]) -> dict[str, Any]:
    """The analysis that rolled the canary back (failureLimit 1: the first that failed)."""
    return next(h for h in state["history"] if h["action"] == "rollback")


def report(name: str, entry: dict[str, Any]) -> None:
    m = entry["metrics"]
    keys = ("events", "errorRate", "p99LatencyMs", "deadLetterRate", "paired", "agreement",
            "outputDrift", "feedback", "accuracy", "stableAccuracy")  # fmt: skip
    print(f"\n{name}: {entry['action']}: " + ", ".join(f"{k}={m.get(k)}" for k in keys))


def assert_traffic_gates_passed(metrics: dict[str, Any]) -> None:
    """The bad head answers fast and without errors: the metric gates alone would pass."""
    assert metrics["events"] >= TRAFFIC_GATES["minEvents"]
    assert metrics["errorRate"] <= TRAFFIC_GATES["maxErrorRate"]
    assert metrics["p99LatencyMs"] <= TRAFFIC_GATES["maxP99LatencyMs"]
    assert metrics["deadLetterRate"] <= TRAFFIC_GATES["maxDeadLetterRate"]


def test_a_head_answering_one_label_is_rolled_back_by_min_agreement(
    run: tuple[LocalRun, Labeller],
) -> None:
    state = finished(run[0], "agree")
    assert state["phase"] == "Failed", state
    failed = rolled_back(state)
    report("agree (bad head)", failed)
    assert "minAgreement 0.85" in failed["reason"] and "maxErrorRate" not in failed["reason"]
    metrics = failed["metrics"]
    assert metrics["agreement"] < 0.85 and metrics["paired"] >= TRAFFIC_GATES["minEvents"]
    assert_traffic_gates_passed(metrics)


def test_a_head_answering_one_label_is_rolled_back_by_max_output_drift(
    run: tuple[LocalRun, Labeller],
) -> None:
    state = finished(run[0], "drift")
    assert state["phase"] == "Failed", state
    failed = rolled_back(state)
    report("drift (bad head)", failed)
    assert "maxOutputDrift 0.2" in failed["reason"] and "minAgreement" not in failed["reason"]
    assert failed["metrics"]["outputDrift"] > 0.2
    assert_traffic_gates_passed(failed["metrics"])


def test_the_v2_head_is_promoted_with_the_same_limits(run: tuple[LocalRun, Labeller]) -> None:
    state = finished(run[0], "better")
    assert state["phase"] == "Succeeded", state
    judged = [h for h in analyses(state) if h["action"] in ("advance", "promote")]
    assert len(judged) == 2  # both steps passed an analysis with the quality checks
    for entry in judged:
        report("better (v2)", entry)
        assert entry["metrics"]["agreement"] >= 0.85 and entry["metrics"]["outputDrift"] <= 0.2


def test_min_accuracy_holds_below_min_feedback_then_rolls_back_on_labels(
    run: tuple[LocalRun, Labeller],
) -> None:
    local, labeller = run
    deadline = time.monotonic() + WAIT_S
    while not any("minFeedback 20" in h["reason"] for h in rollout(local, "graded")["history"]):
        assert time.monotonic() < deadline, rollout(local, "graded")
        time.sleep(0.5)
    state = rollout(local, "graded")
    assert state["phase"] == "Progressing" and state["step"] == 1  # held, not failed
    held = next(h for h in state["history"] if "minFeedback 20" in h["reason"])
    assert held["action"] == "hold" and held["metrics"]["feedback"] < 20
    assert_traffic_gates_passed(held["metrics"])

    labeller.everything.add("graded")  # the labels arrive: every decision so far
    state = finished(local, "graded")
    assert state["phase"] == "Failed", state
    failed = rolled_back(state)
    report("graded (bad head)", failed)
    assert "minAccuracy 0.8" in failed["reason"]
    metrics = failed["metrics"]
    assert metrics["feedback"] >= 20 and metrics["accuracy"] < 0.8
    assert metrics["stableAccuracy"] > metrics["accuracy"]


def test_status_and_the_console_show_the_quality_checks(run: tuple[LocalRun, Labeller]) -> None:
    local, _ = run
    finished(local, "agree")
    state = ["--state-dir", str(local.state_dir)]
    shown = CliRunner().invoke(app, ["status", "agree", "-n", NS, *state])
    assert shown.exit_code == 0, shown.output
    table = [line.split() for line in shown.stdout.splitlines()]
    assert ["quality", "value", "limit"] in table
    row = next(cells for cells in table if cells[:1] == ["agreement"] and "min" in cells)
    assert row[2:] == ["min", "0.85", "FAILED"] and float(row[1]) < 0.85
    as_json = CliRunner().invoke(app, ["status", "agree", "-n", NS, "-o", "json", *state])
    rows = {q["check"]: q for q in json.loads(as_json.stdout)["quality"]}
    assert rows["agreement"]["value"] < 0.85 and rows["output drift"]["limit"] is None

    store = read_state(local.state_dir)
    assert store is not None
    page = httpx.get(f"{store['eventStoreUrl']}/console/rollouts/{NS}/agree", timeout=10)
    assert page.status_code == 200, page.text[:500]
    card = page.text.split('id="quality"', 1)[1].split("</section>", 1)[0]
    assert "Agreement with the stable" in card and "min 0.85" in card and "failed" in card
