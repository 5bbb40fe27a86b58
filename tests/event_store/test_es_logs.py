"""The event store logs JSON lines with the keys the runtime and the operator use
(``--log-format text`` for a terminal), never event data. A real server process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from aiservice_functions import contract

from tests.support.event_store import dead_letter_headers, free_port
from tests.support.processes import stop

SECRET = "a-review-nobody-may-read-in-logs"


def _run_store(tmp_path: Path, *extra: str) -> str:
    port = free_port()
    env = {**os.environ, contract.ENV_LOG_LEVEL: "DEBUG"}
    env.pop(contract.ENV_LOG_FORMAT, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiservice_functions.event_store", "serve", "--db",
         f"sqlite:///{tmp_path}/e.db", "--port", str(port), "--allow-unauthenticated", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + contract.PATH_READINESS).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the store did not start"
            time.sleep(0.1)
        body = json.dumps({"text": SECRET}).encode()
        path = contract.dead_letter_path("shop", "sentiment")
        assert httpx.post(base + path, content=body, headers=dead_letter_headers("l1")).is_success
        assert (
            httpx.post(base + path, content=b"{", headers=dead_letter_headers("l2")).status_code
            == 400
        )
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        finally:
            stop(proc)  # SIGKILL, had SIGTERM not stopped it
    return out


def test_json_lines_with_the_shared_keys_and_no_event_data(tmp_path: Path) -> None:
    out = _run_store(tmp_path)
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), entry
    assert SECRET not in out
    assert any("refused dead-letter" in json.loads(line)["msg"] for line in lines)


def test_text_format_on_request(tmp_path: Path) -> None:
    out = _run_store(tmp_path, "--log-format", "text")
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines
    with pytest.raises(ValueError):
        json.loads(lines[0])
