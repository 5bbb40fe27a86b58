"""`python -m aiservice_operator --help` explains its settings and starts nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_help_lists_the_environment_settings_without_starting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiservice_operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name in ("AISVC_KUBE_SERVER", "AISVC_WATCH_NAMESPACES", "AISVC_METRICS_PORT"):
        assert name in result.stdout
    assert "kopf" not in result.stderr.lower()  # no operator log lines: it did not start


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "aiservice_operator"],
        [sys.executable, "-m", "kopf", "run", "-m", "aiservice_operator.cluster.handlers", "-A"],
    ],
    ids=["python -m aiservice_operator", "the chart's kopf run"],
)
def test_a_malformed_setting_stops_the_operator_at_start(command: list[str]) -> None:
    """Checked before anything runs, not at the first rollout tick: the variable is named."""
    env = {
        **os.environ,
        "AISVC_PROMETHEUS_QUERIES": '{"p99": "sum(x)"}',  # not a known query name
        "AISVC_KUBE_SERVER": "http://127.0.0.1:9",  # never contacted
    }
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "AISVC_PROMETHEUS_QUERIES: unknown metric queries: p99" in result.stderr
