"""`make demo` as the user runs it: the shipped pipeline chains sentiment into topic.

A real `aisvc up --demo` process on free loopback ports, with the two function servers
(MiniLM each) it starts; it must end with every sample review answered by the last stage.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
AISVC = [sys.executable, "-m", "aiservice_operator.cli.main"]  # the `aisvc` command


def test_every_demo_review_is_routed_by_the_second_stage(tmp_path: Path) -> None:
    result = subprocess.run(
        [*AISVC, "up", "-f", str(REPO_ROOT / "examples" / "pipeline.yaml"), "--demo",
         "--no-live", "--no-event-store", "--state-dir", str(tmp_path / ".aisvc"),
         "--broker-port", "0", "--serving-port", "0"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "80"},  # and stdout is a pipe, as in a CI log
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "4 of 4 events reached the end of the pipeline (com.example.review.routed)" in out, out
    # Each reply on one line: nothing in a log wraps it, so the table is not folded at 80.
    routed = r"reply\s*│\s*topic-stage\s*│\s*com\.example\.review\.routed\s*│\s*topic=\S+ "
    assert len(re.findall(routed, out)) == 4, out
    sent = [line for line in out.splitlines() if line.startswith("sent ")]
    assert len(sent) == 4 and all(line.endswith("}") for line in sent), out
    assert "dead-letter" not in out and "unrouted" not in out, out
    # The sample about a rude agent is a complaint about service.
    assert "support-urgent" in out, out
