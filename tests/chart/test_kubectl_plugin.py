"""`kubectl aisvc ...` works through kubectl's own plugin lookup, and `kubectl get ais` has
the columns users watch a rollout with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from aiservice_operator.cli.main import app

from tests.support.chart import ROOT

ROLLOUT_COMMANDS = ["status", "list", "promote", "abort", "pause", "resume", "dlq"]
"""What the plugin must offer on a cluster (the user-facing contract of `kubectl aisvc`)."""


def _find_kubectl() -> str | None:
    return shutil.which("kubectl") or (
        str(ROOT / ".tools" / "bin" / "kubectl")
        if os.access(ROOT / ".tools" / "bin" / "kubectl", os.X_OK)
        else None
    )


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PATH with this interpreter's bin folder (where pip put `kubectl-aisvc`) and kubectl."""
    kubectl = _find_kubectl()
    if kubectl is None:
        pytest.skip(
            "no kubectl binary: not on PATH and .tools/bin/kubectl missing (scripts/helm.sh)"
        )
    bindir = Path(sys.executable).parent
    if not (bindir / "kubectl-aisvc").exists():
        pytest.skip(f"kubectl-aisvc is not installed in {bindir} (pip install -e .)")
    home = tmp_path_factory.mktemp("home")
    return {
        "PATH": os.pathsep.join([str(bindir), str(Path(kubectl).parent), "/usr/bin", "/bin"]),
        "HOME": str(home),
        "KUBECONFIG": str(home / "kubeconfig"),  # an absent kubeconfig: nothing is contacted
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
    }


def _kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_kubectl_finds_the_plugin(plugin_env: dict[str, str]) -> None:
    proc = _kubectl(plugin_env, "plugin", "list")
    assert proc.returncode == 0, proc.stderr
    found = [line for line in proc.stdout.splitlines() if line.endswith("/kubectl-aisvc")]
    assert found == [str(Path(sys.executable).parent / "kubectl-aisvc")]
    assert "warning" not in proc.stderr.lower(), proc.stderr


def test_kubectl_aisvc_help_lists_every_command(plugin_env: dict[str, str]) -> None:
    proc = _kubectl(plugin_env, "aisvc", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: kubectl-aisvc" in proc.stdout
    group = typer.main.get_command(app)
    registered = list(getattr(group, "commands", {}))
    assert registered
    for name in [*registered, *ROLLOUT_COMMANDS]:
        assert f" {name} " in proc.stdout, f"`kubectl aisvc {name}` missing:\n{proc.stdout}"


def test_unknown_subcommand_fails_with_a_reason(plugin_env: dict[str, str]) -> None:
    proc = _kubectl(plugin_env, "aisvc", "no-such-command")
    assert proc.returncode != 0
    assert "no-such-command" in proc.stderr


def _aiservice_crd() -> dict[str, Any]:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("spec", {}).get("names", {}).get("kind") == "AIService":
                return dict(doc)
    pytest.skip("no AIService CRD in crds/ yet")


def _schema_has(schema: dict[str, Any], json_path: str) -> bool:
    """Whether a simple printer-column JSONPath (.a.b, .a[?(...)].b) exists in the schema."""
    node = schema
    for part in json_path.lstrip(".").split("."):
        key = part.split("[", 1)[0]
        props = node.get("properties", {})
        if key not in props:
            return False
        node = props[key]
        if "[" in part:
            node = node.get("items", {})
    return True


def test_kubectl_get_ais_shows_ready_stable_canary_and_weight() -> None:
    crd = _aiservice_crd()
    assert "ais" in crd["spec"]["names"].get("shortNames", [])
    for version in crd["spec"]["versions"]:
        if not version.get("served"):
            continue
        columns = {c["name"]: c for c in version.get("additionalPrinterColumns", [])}
        assert {"Ready", "Stable", "Canary", "Weight"} <= set(columns), columns
        schema = version["schema"]["openAPIV3Schema"]
        for name in ("Ready", "Stable", "Canary", "Weight"):
            path = columns[name]["jsonPath"]
            if name == "Ready":
                path = path.replace('[?(@.type=="Ready")]', "[]")
            assert _schema_has(schema, path), f"column {name}: {path} is not in the schema"
        assert columns["Weight"]["type"] == "integer"
