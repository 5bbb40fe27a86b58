"""`aisvc promote|abort|pause|resume|status` through the real `kubernetes` client and a
kubeconfig, against the API emulator (tests/support/kubeemu.py).

Why the emulator: in-process edge cases (missing objects, an AIService without a rollout);
the commands against the real API server are in tests/cluster/test_rollout.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiservice_operator.cli.main import app
from aiservice_operator.cli.rollout import command_patch, status_view, traffic_bar
from typer.testing import CliRunner

from tests.support.kubeemu import AISERVICES, EmulatorThread

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


def manifest(name: str, rollout: bool = True) -> dict[str, Any]:
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
        "metadata": {"name": name, "namespace": NS},
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
