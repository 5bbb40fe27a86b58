"""Stopping the processes a test or a benchmark starts, whatever happened.

With SIGTERM, never SIGINT: a process started from a non-interactive background job
(`make test &`, a CI step) inherits SIGINT as ignored, and keeps it so (`aisvc up` rightly
does), so SIGINT may never stop it. SIGKILL follows when SIGTERM has not stopped it in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

STOP_TIMEOUT_S = 30.0


def stop(
    proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S, *, group: bool = False
) -> int:
    """SIGTERM, then SIGKILL after `timeout` seconds; the exit status (negative: the signal
    that ended it). With `group` the signals go to the process's group (it was started with
    `start_new_session=True`), so its own children get them too. Pipes are drained, so a
    child blocked writing to a full one still ends."""
    if proc.poll() is None:
        _send(proc, signal.SIGTERM, group)
        try:
            proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _send(proc, signal.SIGKILL, group)
            proc.communicate()
    return proc.returncode


def _send(proc: subprocess.Popen[Any], sig: signal.Signals, group: bool) -> None:
    if not group:
        proc.send_signal(sig)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def running(
    command: Sequence[str | Path],
    *,
    group: bool = False,
    timeout: float = STOP_TIMEOUT_S,
    **popen: Any,
) -> Iterator[subprocess.Popen[Any]]:
    """`Popen(command, **popen)`, stopped (see `stop`) when the block ends, however it ends."""
    proc = subprocess.Popen(command, start_new_session=group, **popen)
    try:
        yield proc
    finally:
        stop(proc, timeout, group=group)
