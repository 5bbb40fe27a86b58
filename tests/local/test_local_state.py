"""What the CLI believes of a local run's ``local.json``: only a file of this user's,
naming a live process and loopback URLs; and never with the event store's token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiservice_operator.cli.main import app
from aiservice_operator.local.state_files import read_state
from typer.testing import CliRunner

TOKEN = "cluster-store-token"


@dataclass
class Recorder:
    """An HTTP server on loopback standing where a state file points: it records each
    request's path and Authorization header, and answers an empty page."""

    server: ThreadingHTTPServer
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder: Recorder

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"items": [], "nextCursor": None}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    recorder = Recorder(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=recorder.server.serve_forever, daemon=True).start()
    yield recorder
    recorder.server.shutdown()


def plant(state_dir: Path, **state: Any) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "local.json"
    path.write_text(json.dumps(state))
    return path


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def dlq_list(cwd: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("AISVC_EVENT_STORE_URL", raising=False)
    monkeypatch.setenv("AISVC_EVENT_STORE_TOKEN", TOKEN)
    return CliRunner().invoke(app, ["dlq", "list", "-o", "json", *args])


def test_a_live_run_of_this_user_is_believed_and_gets_no_token(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant(tmp_path / ".aisvc", pid=os.getpid(), eventStoreUrl=recorder.url)
    result = dlq_list(tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert [auth for _, auth in recorder.seen] == [None]  # found, and no token sent


@pytest.mark.parametrize(
    "planted",
    [
        {},  # no pid
        {"pid": "1"},
        {"pid": True},
        {"pid": "dead"},
        {"pid": "mine", "chown": 65534},  # another user's file
        {"pid": "mine", "brokers": {"t/default": "http://rebind.attacker.example/t/default"}},
    ],
)
def test_a_planted_state_file_redirects_nothing(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, planted: dict[str, Any]
) -> None:
    pid = {"mine": os.getpid(), "dead": dead_pid()}.get(planted.get("pid"), planted.get("pid"))
    state = {k: v for k, v in planted.items() if k != "chown"}
    state.update({"eventStoreUrl": recorder.url} | ({} if pid is None else {"pid": pid}))
    path = plant(tmp_path / ".aisvc", **state)
    if "chown" in planted:
        os.chown(path, planted["chown"], planted["chown"])
    assert read_state(tmp_path / ".aisvc") is None
    dlq_list(tmp_path, monkeypatch)  # falls back to the default URL, wherever that is
    assert recorder.seen == []


@pytest.mark.parametrize(
    "command",
    [
        ["dlq", "list"],
        ["trace", "some-id"],
        ["reprocess", "svc", "--model", "v2"],
        ["export", "svc"],
    ],
)
def test_a_state_dir_naming_a_stopped_run_is_an_error(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    state_dir = tmp_path / "run1"
    plant(state_dir, pid=dead_pid(), eventStoreUrl=recorder.url)
    monkeypatch.delenv("AISVC_EVENT_STORE_URL", raising=False)
    result = CliRunner().invoke(app, [*command, "--state-dir", str(state_dir)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: no local run found in {state_dir} (start one with `aisvc up -f FILE`), "
        "or pass --url"
    ]
    assert recorder.seen == []
