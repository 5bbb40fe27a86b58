"""The broker killed with SIGKILL mid-stream and started again: no accepted event is lost,
and none is answered twice (counted at a receiving sink)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from aiservice_operator.local.state_files import read_state
from aiservice_operator.local.supervisor import free_port

from tests.support.local import aiservice, model_file, sink_trigger, start_sink, write_manifests
from tests.support.processes import stop as stop_process

N_EVENTS = 200
KILL_AFTER = 60
WAIT_S = 90.0
HEADERS = {"ce-specversion": "1.0", "ce-source": "/crash", "ce-type": "test.request",
           "content-type": "application/json"}  # fmt: skip


def start_up(
    manifests: Path, state_dir: Path, broker_port: int, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "aiservice_operator.cli.local", "up", "-f", str(manifests),
        "--state-dir", str(state_dir), "--broker-port", str(broker_port),
        "--serving-port", "0", "--event-store-port", "0", "--no-live",
    ]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + WAIT_S
    while True:
        state = read_state(state_dir)
        if state is not None and state.get("pid") == proc.pid:
            return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            pytest.fail(f"aisvc up did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def test_sigkill_loses_nothing_accepted_and_answers_once(
    tmp_path: Path, function_path: None
) -> None:
    uri, _ = model_file(tmp_path)
    sink = start_sink()
    manifests = write_manifests(
        tmp_path / "m.yaml",
        [
            aiservice("stage-one", "test.request", "test.done", {"v1": uri}),
            sink_trigger("sink", "test.done", sink.url),
        ],
    )
    state_dir, log = tmp_path / ".aisvc", tmp_path / "up.log"
    port = free_port()
    broker = f"http://127.0.0.1:{port}/t/default"
    first = start_up(manifests, state_dir, port, log)

    accepted: list[str] = []
    refused = 0
    done, stop = threading.Event(), threading.Event()

    def produce() -> None:
        nonlocal refused
        with httpx.Client(timeout=5) as client:
            for i in range(N_EVENTS):
                event_id = f"ev-{i}-{uuid.uuid4()}"
                headers = {**HEADERS, "ce-id": event_id}
                while not stop.is_set():  # a producer retries until 202, with the same id
                    try:
                        response = client.post(
                            broker, headers=headers, content=json.dumps({"n": i})
                        )
                        if response.status_code == 202:
                            accepted.append(event_id)
                            break
                    except httpx.HTTPError:
                        pass
                    refused += 1
                    time.sleep(0.05)
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    second: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + WAIT_S
        while len(accepted) < KILL_AFTER:
            assert time.monotonic() < deadline, (
                f"the broker did not accept {KILL_AFTER} events: {log.read_text()[-2000:]}"
            )
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = start_up(manifests, state_dir, port, log)
        assert done.wait(WAIT_S), "the producer did not finish"
        deadline = time.monotonic() + WAIT_S
        while {e["data"]["origin"] for e in sink.snapshot()} != set(accepted):
            assert time.monotonic() < deadline, "not every accepted event was answered"
            time.sleep(0.1)
        time.sleep(0.5)  # let stragglers (a duplicate delivery, if any) arrive
    finally:
        stop.set()
        # SIGTERM: from a background job SIGINT is ignored, and `aisvc up` keeps it so.
        stop_process(first)
        code = stop_process(second) if second is not None else None
        sink.server.shutdown()

    assert refused > 0, "the kill did not interrupt the stream"
    replies: dict[str, set[str]] = defaultdict(set)
    for event in sink.snapshot():
        replies[event["data"]["origin"]].add(event["id"])
    assert set(replies) == set(accepted)
    twice = {origin: ids for origin, ids in replies.items() if len(ids) != 1}
    assert not twice, f"answered more than once: {twice}"
    assert code == 0  # SIGTERM stops it cleanly
    assert read_state(state_dir) is None  # a clean stop removes the state file
