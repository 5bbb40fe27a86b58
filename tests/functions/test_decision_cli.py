"""`aisvc reprocess` and `aisvc export` against a real event store and a real function
runtime on loopback (the torch-free echo function as the 'new model version')."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import echo_fn
import httpx
import pytest
from aiservice_functions.event_store import create_app as store_app
from aiservice_functions.event_store import open_store
from aiservice_functions.runtime.app import create_app
from aiservice_operator.cli.main import app
from typer.testing import CliRunner
from werkzeug.serving import make_server

from tests.support.runtime import config_for, serving, wait_ready

TOKEN = "decisions-token"
SINK = "/v1/namespaces/shop/aiservices/echo/decisions/{role}?data=true"


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    server = make_server("127.0.0.1", 0, store_app(store, token=TOKEN), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)
    store.close()


@pytest.fixture
def function_url(tmp_path: Path) -> Iterator[str]:
    model = tmp_path / "model.txt"
    model.write_text("echo-model\n")
    with serving(
        create_app(echo_fn.function, config_for(echo_fn.function, model_uri=model.as_uri()))
    ) as url:
        wait_ready(url)
        yield url


def log(store: str, role: str, event_id: str, data: object, **attrs: str) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": attrs.pop("source", "/c"),
        "ce-type": attrs.pop("type", "com.example.request"),
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in attrs.items()},
    }
    response = httpx.post(store + SINK.format(role=role), headers=headers, json=data)
    assert response.status_code == 201, response.text


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--token", TOKEN])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_reprocess_sends_logged_inputs_to_the_target_and_reports_changes(
    store_url: str, function_url: str
) -> None:
    for n, text in enumerate(["same", "differs"]):
        log(store_url, "inputs", f"in-{n}", {"text": text})
        old = {"echo": text, "length": len(text), "batch": 1, "model": "echo-model@v2"}
        if text == "differs":
            old = {**old, "model": "older"}
        log(store_url, "replies", f"out-{n}", old, source="/aiservices/shop/echo/echo-v1",
            type="com.example.echoed", causationid=f"/c#in-{n}", modelversion="v1",
            aisvclatencyms="3")  # fmt: skip
    args = ["reprocess", "echo", "-n", "shop", "--model", "v2", "--url", store_url]
    report = json.loads(invoke(*args, "--target", function_url, "-o", "json"))
    assert (report["inputs"], report["compared"], report["errors"]) == (2, 2, 0), report
    assert report["changed"] == 1 and report["changedInputs"] == ["/c#in-1"]
    dry = json.loads(invoke(*args, "--dry-run"))
    assert dry == {"inputs": 2, "withData": 2}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_writes_every_logged_input(store_url: str, tmp_path: Path, fmt: str) -> None:
    for n in range(3):
        log(store_url, "inputs", f"in-{n}", {"text": f"t{n}"})
    out = tmp_path / f"export.{fmt}"
    invoke("export", "echo", "-n", "shop", "--format", fmt, "--out", str(out), "--url", store_url)
    text = out.read_text()
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
        assert [(r["id"], r["input"], r["outcome"]) for r in rows] == [
            (f"in-{n}", {"text": f"t{n}"}, "pending") for n in range(3)
        ]
    else:
        lines = text.splitlines()
        assert lines[0].startswith("id,source,type,time,input")
        assert len(lines) == 4 and '"{""text"": ""t0""}"' in lines[1]
