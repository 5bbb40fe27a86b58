"""`python -m aiservice_operator --help` explains its settings and starts nothing."""

from __future__ import annotations

import subprocess
import sys


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
