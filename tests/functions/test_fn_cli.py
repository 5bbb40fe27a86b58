"""`aisvc fn serve`: the documented way to run one function locally, as its container does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from aiservice_functions import fraud

from tests.support.runtime import post_binary, wait_ready

AISVC = [sys.executable, "-m", "aiservice_operator.cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fn_serve_answers_events_and_stops_on_ctrl_c() -> None:
    port = free_port()
    command = [
        *AISVC,
        "fn",
        "serve",
        "aiservice_functions.fraud",
        "--model",
        fraud.MODEL_V1,
        "--model-version",
        "v1",
        "--reply-type",
        "com.example.fraud.scored",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        tx = {"amount": 12.5, "merchant_category": "grocery", "hour": 14, "country_mismatch": False}
        response = post_binary(base, tx)
        assert response.status_code == 200, response.text
        assert response.headers["ce-type"] == "com.example.fraud.scored"
        assert response.headers["ce-modelversion"] == "v1"
        assert 0.0 <= response.json()["risk"] <= 1.0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_fn_serve_refuses_an_unknown_model_scheme() -> None:
    result = subprocess.run(
        [*AISVC, "fn", "serve", "aiservice_functions.fraud", "--model", "ftp://models/x.pt"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PORT": str(free_port())},
    )
    assert result.returncode == 2
    assert "ftp" in result.stderr
