"""Canary rollouts on the local run: the operator's rollout tick, fed by the canary
processes' /metrics and the event store, promotes a good version and rolls back a bad one."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiservice_operator.cli.main import app
from aiservice_operator.core.compile import shadow_trigger_name
from aiservice_operator.core.rollout import annotation as aiservice_annotation
from aiservice_operator.local.manifests import load
from aiservice_operator.local.runner import LocalRun, UpOptions
from aiservice_operator.local.state_files import read_state
from typer.testing import CliRunner

from tests.support.local import Background, aiservice, write_manifests

WAIT_S = 90.0
ROLLOUT = {
    "canary": "v2",
    "steps": [50, 100],
    "interval": "1s",
    "analysis": {"minEvents": 3, "maxErrorRate": 0.2, "maxP99LatencyMs": 10000,
                 "maxDeadLetterRate": 0.5, "failureLimit": 1},
}  # fmt: skip


def model(directory: Path, name: str, **extra: Any) -> str:
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"fixed_file": str(directory / "never"), **extra}))
    return path.as_uri()


def canary_service(name: str, v1: str, v2: str, **rollout: Any) -> dict[str, Any]:
    return aiservice(
        name,
        f"test.{name}",
        f"test.{name}.done",
        {"v1": v1, "v2": v2},
        extra={
            "traffic": {"stable": "v1"},
            "rollout": {**ROLLOUT, **rollout},
            "delivery": {"retry": 0, "timeout": "PT5S"},
        },
    )


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory, function_path: None) -> Iterator[LocalRun]:
    work = tmp_path_factory.mktemp("rollout")
    good, bad = model(work, "good"), model(work, "bad", fail_all=True)
    manifests = write_manifests(
        work / "canary.yaml",
        [
            canary_service("promoted", good, good),
            canary_service("rolled", good, bad),
            # Shadow mode, with an interval long enough that only a command ends it.
            canary_service("shadowed", good, good, shadow=True, interval="10m", steps=[10, 100]),
        ],
    )
    options = UpOptions(state_dir=work / ".aisvc", ready_timeout=60, rollout_tick_seconds=0.2)
    bg = Background(LocalRun(load([manifests]), options))
    bg.call(bg.run.start())
    state = read_state(work / ".aisvc")
    assert state is not None
    stop = threading.Event()

    def produce() -> None:  # steady traffic to both services while they roll
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                for name in ("promoted", "rolled", "shadowed"):
                    client.post(
                        state["brokers"]["t/default"],
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

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        yield bg.run
    finally:
        stop.set()
        producer.join(10)
        bg.close()


def phase_of(run: LocalRun, name: str, phases: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        service = next(s for s in run.snapshot()["services"] if s["name"] == name)
        rollout = service["rollout"] or {}
        if rollout.get("phase") in phases:
            return service
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: rollout still at {rollout} after {WAIT_S}s")
        time.sleep(0.1)


def test_a_good_canary_is_promoted_step_by_step(rolled: LocalRun) -> None:
    service = phase_of(rolled, "promoted", {"Succeeded", "Failed"})
    rollout = service["rollout"]
    assert rollout["phase"] == "Succeeded", rollout
    weights = {r["model"]: r["percent"] for r in service["revisions"]}
    assert weights == {"v1": 0, "v2": 100}
    steps = [h.get("weight") for h in rollout["history"]]
    assert 50 in steps and 100 in steps  # it went through every step


def test_a_failing_canary_is_rolled_back(rolled: LocalRun) -> None:
    service = phase_of(rolled, "rolled", {"Succeeded", "Failed"})
    rollout = service["rollout"]
    assert rollout["phase"] == "Failed", rollout
    weights = {r["model"]: r["percent"] for r in service["revisions"]}
    assert weights == {"v1": 100, "v2": 0}
    assert service["events"]["deadLettered"] > 0  # the canary's failures were dead-lettered


def test_dlq_cli_reads_the_local_runs_event_store(rolled: LocalRun) -> None:
    phase_of(rolled, "rolled", {"Succeeded", "Failed"})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(rolled.state_dir.parent)
        mp.delenv("AISVC_EVENT_STORE_URL", raising=False)
        listed = CliRunner().invoke(
            app, ["dlq", "list", "-n", "t", "--name", "rolled", "-o", "json"]
        )
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.output)["items"]
    assert letters and all(d["name"] == "rolled" for d in letters)


def test_commands_find_the_run_by_its_state_dir(
    rolled: LocalRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase_of(rolled, "promoted", {"Succeeded", "Failed"})
    phase_of(rolled, "rolled", {"Succeeded", "Failed"})
    monkeypatch.chdir(tmp_path)  # not where the run keeps its state
    monkeypatch.delenv("AISVC_EVENT_STORE_URL", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))  # and no cluster
    state = ["--state-dir", str(rolled.state_dir)]
    runner = CliRunner()

    letters = runner.invoke(
        app, ["dlq", "list", "-n", "t", "--name", "rolled", "-o", "json", *state]
    )
    assert letters.exit_code == 0, letters.output
    assert json.loads(letters.stdout)["items"]

    # The decision-log commands find the run's event store the same way.
    letter = json.loads(letters.stdout)["items"][0]
    traced = runner.invoke(app, ["trace", letter["id"], "-o", "json", *state])
    assert traced.exit_code == 0, traced.output
    assert json.loads(traced.stdout)["records"] == []  # the store answered: no decision log
    exported = runner.invoke(app, ["export", "rolled", "-n", "t", *state])
    assert exported.exit_code == 0, exported.output

    lost = runner.invoke(app, ["status", "promoted", "-n", "t"])
    assert lost.exit_code == 2 and "no local run (aisvc up) in .aisvc" in lost.stderr

    shown = runner.invoke(app, ["status", "promoted", "-n", "t", "-o", "json", *state])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["phase"] == "Succeeded"

    def exit_code(*args: str) -> int:
        return runner.invoke(app, [*args, "-n", "t", "--timeout", "60s", *state]).exit_code

    assert exit_code("status", "promoted") == 0  # Succeeded: healthy
    assert exit_code("status", "rolled") == 1  # rolled back: degraded

    listed = runner.invoke(app, ["list", "-n", "t", "-o", "json", *state])
    assert listed.exit_code == 0, listed.output
    items = {i["name"]: i for i in json.loads(listed.stdout)["items"]}
    assert set(items) == {"promoted", "rolled", "shadowed"}
    assert (items["promoted"]["phase"], items["rolled"]["phase"]) == ("Succeeded", "Failed")
    assert {c["type"]: c["status"] for c in items["promoted"]["conditions"]}["Ready"] == "True"
    table = runner.invoke(app, ["list", "-A", *state])
    assert table.exit_code == 0, table.output
    row = next(line.split() for line in table.stdout.splitlines() if line.startswith("promoted "))
    assert row[:8] == ["promoted", "t", "Succeeded", "2/2", "v1", "v2", "100%", "True"]


def shadow_stats(run: LocalRun) -> tuple[int, int]:
    """(delivered, answered) of the shadow Trigger of `shadowed`."""
    assert run.dispatcher is not None
    ais = run.services_runs[("t", "shadowed")].ais
    name = shadow_trigger_name(ais, ais.spec.consumes[0])
    return run.dispatcher.stats.delivered[name], run.dispatcher.stats.answered[name]


def test_shadow_mode_mirrors_events_to_the_canary_and_no_consumer_gets_its_replies(
    rolled: LocalRun,
) -> None:
    service = phase_of(rolled, "shadowed", {"Progressing"})
    weights = {r["model"]: r["percent"] for r in service["revisions"]}
    assert weights["v2"] == service["rollout"]["weight"] < 100  # routed as the rollout says
    deadline = time.monotonic() + WAIT_S
    while shadow_stats(rolled)[0] < 5:
        assert time.monotonic() < deadline, "no shadow deliveries"
        time.sleep(0.1)
    delivered, answered = shadow_stats(rolled)
    # The canary answers, under the shadow reply type: only a decision log's Trigger
    # selects it (tests/unit/test_compile_rules.py), and this service keeps none.
    assert delivered >= 5 and answered > 0
    roles = {t["role"] for t in rolled.snapshot()["triggers"] if t["owner"] == "shadowed"}
    assert roles == {"primary", "shadow"}


def test_abort_command_rolls_back(rolled: LocalRun) -> None:
    phase_of(rolled, "shadowed", {"Progressing"})
    state = read_state(rolled.state_dir)
    assert state is not None
    url = f"{state['commandsUrl']}/t/shadowed"
    command = {"X-Aisvc-Command": "1"}
    unknown = httpx.post(f"{url}/sideways", headers=command)
    assert unknown.status_code == 404 and "unknown command" in unknown.json()["error"]
    unknown = httpx.post(f"{state['commandsUrl']}/t/nosuch/sideways", headers=command)
    assert unknown.status_code == 404 and "unknown command" in unknown.json()["error"]
    assert httpx.post(f"{state['commandsUrl']}/t/nosuch/abort", headers=command).status_code == 400
    # A web page cannot send one: a cross-origin POST, or one without the header, is refused.
    evil = {**command, "Origin": "http://evil.example"}
    assert httpx.post(f"{url}/abort", headers=evil).status_code == 403
    assert httpx.post(f"{url}/abort").status_code == 403
    assert phase_of(rolled, "shadowed", {"Progressing"})
    with pytest.MonkeyPatch.context() as mp:  # the CLI finds the run from its directory
        mp.chdir(rolled.state_dir.parent)
        aborted = CliRunner().invoke(
            app, ["abort", "shadowed", "-n", "t", "--wait", "--timeout", "60s"]
        )
        assert aborted.exit_code == 1, aborted.output  # waited until rolled back: degraded
        assert "t/shadowed: Failed, v2 at 0%" in aborted.stdout
        service = phase_of(rolled, "shadowed", {"Failed", "Succeeded"})
        shown = CliRunner().invoke(app, ["status", "shadowed", "-n", "t"])
    assert shown.exit_code == 0, shown.output
    assert "t/shadowed" in shown.output and "Failed" in shown.output
    assert service["rollout"]["phase"] == "Failed"
    assert {r["model"]: r["percent"] for r in service["revisions"]} == {"v1": 100, "v2": 0}
    # The rolled-back canary gets no more mirrored copies.
    roles = {t["role"] for t in rolled.snapshot()["triggers"] if t["owner"] == "shadowed"}
    assert roles == {"primary"}
    assert (
        aiservice_annotation("abort") not in rolled.services_runs[("t", "shadowed")].ais.annotations
    )
