"""`aisvc promote|abort|pause|resume|status|list` through the real `kubernetes` client and
a kubeconfig, against the API emulator (tests/support/kubeemu.py).

Why the emulator: in-process edge cases (missing objects, an AIService without a rollout,
a status written at a chosen moment by a stand-in for the operator); the commands against
the real API server and operator are in tests/cluster/test_rollout.py.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiservice_operator.cli.main import app
from aiservice_operator.cli.rollout_view import status_view, traffic_bar
from aiservice_operator.cli.targets import command_patch
from typer.testing import CliRunner

from tests.support.kubeemu import AISERVICES, EmulatorThread, wait_for

NS = "cli"
ROLLOUT_STATUS: dict[str, Any] = {
    "phase": "Progressing",
    "canary": "v2",
    "stable": "v1",
    "step": 2,
    "weight": 25,
    "failures": 1,
    "message": "84 events, error rate 0.01, p99 120 ms: within thresholds; step 2/4",
    "history": [
        {"at": "2026-01-01T12:00:00.000Z", "action": "start", "weight": 0, "reason": "started"},
        {"at": "2026-01-01T12:01:00.000Z", "action": "advance", "weight": 25, "reason": "ok"},
    ],
}


def manifest(name: str, rollout: bool = True, namespace: str = NS) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "consumes": [{"type": "com.example.review"}],
        "function": {"image": "img:1", "entrypoint": "aiservice_functions.sentiment"},
        "models": [
            {"name": "v1", "uri": "file:///models/v1.pt"},
            {"name": "v2", "uri": "file:///models/v2.pt"},
        ],
        "traffic": {"stable": "v1"},
    }
    if rollout:
        spec["rollout"] = {"canary": "v2", "steps": [10, 25, 50, 100]}
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorThread, Path]]:
    with EmulatorThread() as kube:
        config = tmp_path_factory.mktemp("kube") / "config"
        config.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: emu\n"
            f"clusters: [{{name: emu, cluster: {{server: '{kube.url}'}}}}]\n"
            "users: [{name: me, user: {}}]\n"
            f"contexts: [{{name: emu, context: {{cluster: emu, user: me, namespace: {NS}}}}}]\n"
        )
        kube.create(AISERVICES, manifest("sentiment"))
        kube.patch(
            AISERVICES, NS, "sentiment", {"status": {"rollout": ROLLOUT_STATUS}}, status=True
        )
        kube.create(AISERVICES, manifest("plain", rollout=False))
        kube.create(AISERVICES, manifest("elsewhere", namespace="other"))
        kube.patch(
            AISERVICES,
            "other",
            "elsewhere",
            {"status": {"rollout": {**ROLLOUT_STATUS, "phase": "Succeeded", "weight": 100}}},
            status=True,
        )
        yield kube, config


def annotations_of(kube: EmulatorThread, name: str) -> dict[str, str]:
    return dict(kube.get(AISERVICES, NS, name)["metadata"].get("annotations") or {})


def test_commands_set_the_annotations_the_operator_reads(
    kube: tuple[EmulatorThread, Path],
) -> None:
    emulator, config = kube
    runner = CliRunner()
    result = runner.invoke(app, ["pause", "sentiment", "--kubeconfig", str(config)])
    assert result.exit_code == 0, result.output
    assert "aiservice.dev/pause" in annotations_of(emulator, "sentiment")

    result = runner.invoke(app, ["resume", "sentiment", "-n", NS, "--kubeconfig", str(config)])
    assert result.exit_code == 0, result.output
    now = annotations_of(emulator, "sentiment")
    assert "aiservice.dev/resume" in now and "aiservice.dev/pause" not in now  # cancelled

    result = runner.invoke(app, ["abort", "sentiment", "--kubeconfig", str(config)])
    assert result.exit_code == 0 and "aiservice.dev/abort" in annotations_of(emulator, "sentiment")


def test_status_shows_phase_step_and_traffic(kube: tuple[EmulatorThread, Path]) -> None:
    _, config = kube
    result = CliRunner().invoke(app, ["status", "sentiment", "--kubeconfig", str(config)])
    assert result.exit_code == 0, result.output
    assert "Progressing" in result.output and "step 2/4" in result.output
    assert "v1  75%" in result.output and "25% v2" in result.output
    assert "advance" in result.output


def test_clear_errors_for_missing_objects_and_rollouts(kube: tuple[EmulatorThread, Path]) -> None:
    _, config = kube
    runner = CliRunner()
    missing = runner.invoke(app, ["promote", "nope", "--kubeconfig", str(config)])
    assert missing.exit_code == 1 and "aiservice cli/nope not found" in missing.output
    plain = runner.invoke(app, ["promote", "plain", "--kubeconfig", str(config)])
    assert plain.exit_code == 1 and "has no spec.rollout" in plain.output
    nowhere = runner.invoke(app, ["status", "x", "--kubeconfig", "/nonexistent/config"])
    assert nowhere.exit_code == 2 and "cannot reach a cluster" in nowhere.output
    assert "/nonexistent/config" in nowhere.stderr


def test_views() -> None:
    patch = command_patch("pause", datetime(2026, 1, 1, tzinfo=UTC))
    assert patch == {
        "aiservice.dev/pause": "2026-01-01T00:00:00.000Z",
        "aiservice.dev/resume": None,
    }
    bar = traffic_bar("v1", "v2", 0, shadow=True).plain
    assert bar.startswith("v1 100% ") and "mirrored" in bar
    plain = status_view(manifest("plain", rollout=False))
    assert "no rollout: all traffic on v1" in plain.renderables[1].plain  # type: ignore[union-attr]


# --- machine-readable status, watching, waiting, listing ---------------------------------


def with_rollout(emulator: EmulatorThread, name: str, **state: Any) -> None:
    """A fresh AIService with a rollout in `state` (on top of ROLLOUT_STATUS)."""
    if emulator.find(AISERVICES, NS, name) is None:
        emulator.create(AISERVICES, manifest(name))
    emulator.patch(
        AISERVICES, NS, name, {"status": {"rollout": {**ROLLOUT_STATUS, **state}}}, status=True
    )


def aisvc(config: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--kubeconfig", str(config)])


def test_status_output_json_and_yaml(kube: tuple[EmulatorThread, Path]) -> None:
    _, config = kube
    shown = aisvc(config, "status", "sentiment", "-o", "json")
    assert shown.exit_code == 0, shown.output
    state = json.loads(shown.stdout)
    assert (state["name"], state["namespace"], state["phase"]) == ("sentiment", NS, "Progressing")
    assert (state["step"], state["steps"], state["weight"]) == (2, 4, 25)
    assert (state["stable"], state["canary"], state["failures"]) == ("v1", "v2", 1)
    assert state["message"] == ROLLOUT_STATUS["message"]
    assert [h["action"] for h in state["history"]] == ["start", "advance"]
    assert state["health"] == "progressing" and state["conditions"] == []
    as_yaml = aisvc(config, "status", "sentiment", "-o", "yaml")
    assert as_yaml.exit_code == 0 and yaml.safe_load(as_yaml.stdout) == state

    bad = aisvc(config, "status", "sentiment", "-o", "xml")
    assert bad.exit_code == 2 and "xml" in bad.stderr and bad.stdout == ""


def test_status_exit_codes_when_asked(kube: tuple[EmulatorThread, Path]) -> None:
    emulator, config = kube
    with_rollout(emulator, "failed", phase="Failed", weight=0)
    with_rollout(emulator, "done", phase="Succeeded", weight=100)
    assert aisvc(config, "status", "failed").exit_code == 0  # plain status: as before
    assert aisvc(config, "status", "failed", "--timeout", "30s").exit_code == 1
    assert aisvc(config, "status", "done", "--timeout", "30s").exit_code == 0
    late = aisvc(config, "status", "sentiment", "--timeout", "1s")  # still Progressing
    assert late.exit_code == 3 and "timed out" in late.stderr and "Progressing" in late.stderr


def test_status_watch_redraws_until_the_rollout_ends(kube: tuple[EmulatorThread, Path]) -> None:
    emulator, config = kube
    with_rollout(emulator, "watched", phase="Progressing")
    emulator.clear_log()

    def finish() -> None:  # once the watch has read it: the operator's last two decisions
        wait_for(
            lambda: any(r.name == "watched" and r.verb == "get" for r in emulator.requests()),
            timeout=30,
        )
        with_rollout(emulator, "watched", phase="Promoting", weight=100)
        with_rollout(emulator, "watched", phase="Succeeded", weight=100)

    standin = threading.Thread(target=finish, daemon=True)
    standin.start()
    watched = aisvc(config, "status", "watched", "--watch", "--timeout", "60s", "-o", "json")
    standin.join(30)
    assert watched.exit_code == 0, watched.output
    phases = [json.loads(line)["phase"] for line in watched.stdout.splitlines()]
    assert phases[0] == "Progressing" and phases[-1] == "Succeeded", phases
    assert len(phases) == len(set(phases))  # one line per change, not per poll


def operator_standin(emulator: EmulatorThread, name: str, command: str, *phases: str) -> Any:
    """Acts as the operator on `command`: once its annotation is set, records the decision
    (answering the command) through `phases` and removes the annotation."""

    def act() -> None:
        key = f"aiservice.dev/{command}"
        wait_for(lambda: key in annotations_of(emulator, name), timeout=30)
        weight = 100 if command == "promote" else 0
        decision = {"at": "2026-01-01T12:05:00.000Z", "action": command, "command": command,
                    "weight": weight, "reason": f"{command} by a user"}  # fmt: skip
        history = [*ROLLOUT_STATUS["history"], decision]
        emulator.patch(AISERVICES, NS, name, {"metadata": {"annotations": {key: None}}})
        for phase in phases:
            with_rollout(emulator, name, phase=phase, weight=weight, history=history)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def test_promote_and_abort_wait_for_the_operator(kube: tuple[EmulatorThread, Path]) -> None:
    emulator, config = kube
    with_rollout(emulator, "promo")
    standin = operator_standin(emulator, "promo", "promote", "Promoting", "Succeeded")
    promoted = aisvc(config, "promote", "promo", "--wait", "--timeout", "60s")
    standin.join(30)
    assert promoted.exit_code == 0, promoted.output
    assert "Succeeded" in promoted.stdout

    with_rollout(emulator, "halt")
    standin = operator_standin(emulator, "halt", "abort", "Failed")
    aborted = aisvc(config, "abort", "halt", "--wait", "--timeout", "60s")
    standin.join(30)
    assert aborted.exit_code == 1, aborted.output  # rolled back: degraded
    assert "Failed" in aborted.stdout

    with_rollout(emulator, "ignored")  # no operator: the request is never answered
    late = aisvc(config, "promote", "ignored", "--wait", "--timeout", "1s")
    assert late.exit_code == 3 and "timed out" in late.stderr


def test_list_in_one_namespace_or_all(kube: tuple[EmulatorThread, Path]) -> None:
    _, config = kube
    here = aisvc(config, "list")
    assert here.exit_code == 0, here.output
    lines = here.stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "PHASE", "STEP", "STABLE", "CANARY", "WEIGHT", "READY", "AGE",
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["sentiment"][1:6] == ["Progressing", "2/4", "v1", "v2", "25%"]
    assert rows["plain"][1:6] == ["-", "-", "v1", "-", "-"]
    assert "elsewhere" not in rows

    everywhere = aisvc(config, "list", "-A", "-o", "json")
    assert everywhere.exit_code == 0, everywhere.output
    items = {(i["namespace"], i["name"]): i for i in json.loads(everywhere.stdout)["items"]}
    assert {("cli", "sentiment"), ("cli", "plain"), ("other", "elsewhere")} <= set(items)
    assert items[("other", "elsewhere")]["phase"] == "Succeeded"
    table = aisvc(config, "list", "--all-namespaces")
    assert table.stdout.splitlines()[0].split()[:2] == ["NAME", "NAMESPACE"]


def test_no_cluster_and_no_local_run_is_said_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    missing = tmp_path / "no-such-kubeconfig"
    env = {"KUBECONFIG": str(missing), "HOME": str(home)}
    for args in (["status", "x"], ["promote", "x"], ["list"]):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 2, result.output
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: no cluster configured (no kubeconfig at ")
        assert str(missing) in lines[0] and "not in a pod" in lines[0]
        assert "no local run (aisvc up) in .aisvc" in lines[0]
        assert "Service host/port" not in result.stderr  # not the client's own text
    assert os.environ.get("KUBECONFIG") != str(missing)  # CliRunner restored it
