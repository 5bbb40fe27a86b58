"""The real serve command: ``python -m aiservice_functions.runtime serve``.

Started the way the local executor and the container start a revision: a subprocess
with the contract environment variables, the fraud function and its bundled model.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from aiservice_functions import fraud

from tests.support.net import free_port
from tests.support.runtime import metric_value, post_binary, post_structured, wait_ready

SECRET_AMOUNT = 913.37


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    log_path = tmp_path_factory.mktemp("serve") / "stdout.log"
    port = free_port()
    env = {
        **os.environ,
        "K_SERVICE": "fraud-detector",
        "K_REVISION": "fraud-detector-00003",
        "AISVC_SERVICE": "fraud-detector",
        "AISVC_NAMESPACE": "payments",
        "AISVC_MODEL_VERSION": "v2",
        "AISVC_MODEL_URI": fraud.MODEL_V2,
        "AISVC_REPLY_TYPE": "com.example.fraud.scored",
        "AISVC_CONCURRENCY": "4",
        "AISVC_MAX_BODY_BYTES": "2048",
        "AISVC_HEADER_TIMEOUT_SECONDS": "2",
        "AISVC_BODY_TIMEOUT_SECONDS": "2",
        "PORT": str(port),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiservice_functions.runtime",
                "serve",
                "aiservice_functions.fraud",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        yield base, proc, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serves_binary_and_structured(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    base, _, _ = served
    tx = {
        "amount": SECRET_AMOUNT,
        "merchant_category": "crypto",
        "hour": 2,
        "country_mismatch": True,
        "card_present": False,
        "transaction_id": "tx-77",
    }
    response = post_binary(base, tx, ce_traceparent="00-aa-bb-01")
    assert response.status_code == 200, response.text
    assert response.headers["ce-type"] == "com.example.fraud.scored"
    assert (
        response.headers["ce-source"] == "/aiservices/payments/fraud-detector/fraud-detector-00003"
    )
    assert response.headers["ce-modelversion"] == "v2"
    assert response.headers["ce-traceparent"] == "00-aa-bb-01"
    body = response.json()
    assert body["transaction_id"] == "tx-77" and body["label"] == "fraud"
    structured = post_structured(base, tx)
    assert structured.status_code == 200
    assert structured.headers["content-type"] == "application/cloudevents+json"
    assert structured.json()["data"]["risk"] == body["risk"]


def test_error_contract(served: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    base, _, _ = served
    assert (
        requests.post(
            f"{base}/", data=b"{}", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert post_binary(base, {"amount": 1}).status_code == 422
    big = {"amount": 1, "merchant_category": "x" * 4000, "hour": 1, "country_mismatch": False}
    assert post_binary(base, big).status_code == 413
    # Chunked (no Content-Length): the limit holds as well.
    chunks = iter([json.dumps(big).encode()[:1500], json.dumps(big).encode()[1500:]])
    chunked = requests.post(
        f"{base}/",
        data=chunks,
        headers={
            "ce-id": "1",
            "ce-source": "/s",
            "ce-type": "t",
            "ce-specversion": "1.0",
            "content-type": "application/json",
        },
    )
    assert chunked.status_code == 413
    metrics = requests.get(f"{base}/metrics").text
    assert (
        metric_value(
            metrics, "aisvc_function_events_total", outcome="too_large", model_version="v2"
        )
        == 2
    )


def _half_sent(port: int, *, headers_done: bool) -> socket.socket:
    """A connection that sends part of a request and then nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nce-specversion: 1.0\r\nce-id: slow-1\r\n"
    if headers_done:
        head += "ce-source: /slow\r\nce-type: t\r\ncontent-type: application/json\r\n"
        head += "content-length: 200\r\n\r\n" + '{"amount": 1'
    sock.sendall(head.encode())
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_slow_clients_do_not_stall_the_server_and_are_cut_off(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    """Eight half-sent requests, more than the pod's concurrency (4): others are still
    answered, and each slow connection gets a 408 once its read time is over."""
    base, _, _ = served
    port = int(base.rsplit(":", 1)[1])
    slow_headers = [_half_sent(port, headers_done=False) for _ in range(4)]
    slow_bodies = [_half_sent(port, headers_done=True) for _ in range(4)]
    try:
        tx = {"amount": 12.5, "merchant_category": "grocery", "hour": 14, "country_mismatch": False}
        response = post_binary(base, tx)
        assert response.status_code == 200, response.text
        assert requests.get(f"{base}/health/readiness", timeout=20).status_code == 200
        for sock in slow_headers:
            assert _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        for sock in slow_bodies:
            answer = _read_until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            reason = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert reason["status"] == 408 and "AISVC_BODY_TIMEOUT_SECONDS" in reason["error"]
    finally:
        for sock in (*slow_headers, *slow_bodies):
            sock.close()
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    slow = metric_value(
        metrics, "aisvc_function_events_total", outcome="slow_client", model_version="v2"
    )
    assert slow == 4


def test_logs_are_json_without_event_data_and_sigterm_stops_cleanly(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    base, proc, log_path = served
    assert post_binary(base, {"amount": SECRET_AMOUNT}).status_code == 422  # logged refusal
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    lines = log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    assert any(e["msg"] == "model loaded" and e["model_version"] == "v2" for e in entries)
    assert any(
        e.get("outcome") == "rejected" and e.get("status") == 422 and e.get("event_id") == "req-1"
        for e in entries
    )
    assert str(SECRET_AMOUNT) not in log_path.read_text()


def test_serve_refuses_an_unknown_entrypoint() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiservice_functions.runtime", "serve", "no_such_module_here"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot import 'no_such_module_here'" in result.stderr
