"""The suite's own process helper (tests/support/processes.py): what a test starts is
stopped, even when it ignores SIGINT (as everything started from a background job does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import running, stop

# A child that says it is ready, then sleeps; it ignores SIGINT (and SIGTERM when asked).
CHILD = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--spawn" in sys.argv:
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(grandchild.pid, flush=True)
print("ready", flush=True)
time.sleep(600)
"""


@contextmanager
def _child(*flags: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *flags], stdout=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:  # the helper failed: do not leave the child behind
            proc.kill()
            proc.wait()


def _ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_process_that_ignores_sigint_is_stopped_with_sigterm() -> None:
    with _child() as proc:
        _ready(proc)
        assert stop(proc) == -signal.SIGTERM


def test_one_that_ignores_sigterm_too_is_killed() -> None:
    with _child("--ignore-term") as proc:
        _ready(proc)
        assert stop(proc, timeout=0.5) == -signal.SIGKILL


def test_running_stops_it_when_the_block_fails() -> None:
    command = [sys.executable, "-c", CHILD]
    with pytest.raises(RuntimeError), running(command, stdout=subprocess.PIPE) as proc:
        _ready(proc)
        raise RuntimeError("the test failed")
    assert proc.returncode == -signal.SIGTERM


def test_a_group_is_stopped_with_its_children() -> None:
    command = [sys.executable, "-c", CHILD, "--spawn", "--ignore-term"]
    with running(command, group=True, timeout=0.5, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        _ready(proc)
        assert _alive(grandchild)
    assert proc.returncode == -signal.SIGKILL
    try:
        deadline = time.monotonic() + 10  # SIGKILL is delivered, not waited for
        while _alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _alive(grandchild)
    finally:
        if _alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)
