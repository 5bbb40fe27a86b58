"""`aisvc up` end to end on loopback: real broker, real function processes, real event store.

One local run serves the whole module (starting function servers is the expensive part):
a two-stage pipeline ``stage-one`` (v1) -> ``stage-two`` (a 70 % / b 30 %), a Trigger to a
recording sink for the final replies, and a service whose replies loop back to itself.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import typer
from aiservice_functions import contract
from aiservice_operator.cli.local import register
from aiservice_operator.local.manifests import load
from aiservice_operator.local.runner import LocalRun, UpOptions
from aiservice_operator.local.state_files import read_state
from aiservice_operator.local.view import render
from rich.console import Console
from typer.testing import CliRunner

from tests.support.local import (
    Background,
    Sink,
    aiservice,
    model_file,
    sink_trigger,
    start_sink,
    write_manifests,
)

N_PIPELINE = 40
N_SPLIT = 400
HOP_LIMIT = 5
WAIT_S = 60.0
LOOP = [{"type": "test.loop", "filters": [{"prefix": {"source": "/"}}]}]
"""Replies of type test.loop come from /aiservices/..., so they match their own Trigger."""


class Env:
    def __init__(self, bg: Background, sink: Sink, fixed: Path, state_dir: Path) -> None:
        self.bg = bg
        self.run: LocalRun = bg.run
        self.sink = sink
        self.fixed = fixed
        self.state_dir = state_dir
        state = read_state(state_dir)
        assert state is not None
        self.state = state
        self.broker = state["brokers"]["t/default"]
        self.http = httpx.Client(timeout=30)

    def send(
        self, event_type: str, data: Any, *, event_id: str = "", structured: bool = False
    ) -> httpx.Response:
        event_id = event_id or str(uuid.uuid4())
        if structured:
            doc = {"specversion": "1.0", "id": event_id, "source": "/tests", "type": event_type,
                   "datacontenttype": "application/json", "data": data}  # fmt: skip
            headers = {"content-type": "application/cloudevents+json"}
            return self.http.post(self.broker, headers=headers, content=json.dumps(doc))
        headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/tests",
                   "ce-type": event_type, "content-type": "application/json"}  # fmt: skip
        return self.http.post(self.broker, headers=headers, content=json.dumps(data))

    def drain(self) -> None:
        assert self.run.dispatcher is not None
        self.bg.call(self.run.dispatcher.drain())

    def answers(self, origins: set[str]) -> list[dict[str, Any]]:
        return [e for e in self.sink.snapshot() if e["data"]["origin"] in origins]

    def store(self, path: str, **params: Any) -> Any:
        response = self.http.get(self.state["eventStoreUrl"] + path, params=params)
        response.raise_for_status()
        return response.json()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll until `condition` holds; the bound only stops a broken run from hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, function_path: None) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("run")
    uri, fixed = model_file(work)
    sink = start_sink()
    manifests = write_manifests(
        work / "pipeline.yaml",
        [
            aiservice("stage-one", "test.request", "test.staged", {"v1": uri}),
            aiservice("stage-two", "test.staged", "test.done", {"a": uri, "b": uri},
                      split={"a": 70, "b": 30}),
            aiservice("looper", "test.loop", "test.loop", {"v1": uri}, extra={"consumes": LOOP}),
            sink_trigger("sink", "test.done", sink.url),
        ],
    )  # fmt: skip
    options = UpOptions(state_dir=work / ".aisvc", hop_limit=HOP_LIMIT, ready_timeout=60)
    bg = Background(LocalRun(load([manifests]), options))
    bg.call(bg.run.start())
    try:
        yield Env(bg, sink, fixed, work / ".aisvc")
    finally:
        bg.close()
        sink.server.shutdown()


def test_two_stage_pipeline_answers_every_event(env: Env) -> None:
    origins = set()
    for i in range(N_PIPELINE):
        response = env.send("test.request", {"n": i}, structured=i % 2 == 1)
        assert response.status_code == 202, response.text
    origins = {e["data"]["origin"] for e in env.sink.snapshot()}
    wait_for(lambda: len(env.sink.snapshot()) >= N_PIPELINE, f"{N_PIPELINE} answers at the sink")
    env.drain()
    answers = env.sink.snapshot()
    origins = Counter(e["data"]["origin"] for e in answers)
    assert len(origins) == N_PIPELINE and set(origins.values()) == {1}
    for answer in answers:
        assert answer["type"] == "test.done"
        assert answer["data"]["stages"][0] == "v1" and answer["data"]["stages"][1] in ("a", "b")
        assert answer[contract.EXT_HOPS] == "2"  # request -> staged -> done


def test_failing_events_are_dead_lettered_then_replayed_after_a_fix(env: Env) -> None:
    failing = [f"fail-{uuid.uuid4()}" for _ in range(3)]
    rejected = f"reject-{uuid.uuid4()}"
    for event_id in failing:
        assert env.send("test.request", {"fail": True}, event_id=event_id).status_code == 202
    assert env.send("test.request", {"reject": True}, event_id=rejected).status_code == 202
    env.drain()

    listed = env.store(contract.dead_letter_path("t", "stage-one"))["items"]
    by_id = {item["id"]: item for item in listed}
    assert set(failing) | {rejected} <= set(by_id)
    for event_id in [*failing, rejected]:
        detail = env.store(f"/v1/events/{by_id[event_id]['seq']}")
        ext = detail["event"]
        assert ext[contract.EXT_ERROR_DEST] == "http://stage-one.t.svc.cluster.local"
        assert ext[contract.EXT_REVISION].startswith("stage-one-v1-")
        body = base64.b64decode(ext[contract.EXT_ERROR_DATA])
        assert len(ext[contract.EXT_ERROR_DATA]) <= 1024 and body
        code = ext[contract.EXT_ERROR_CODE]
        assert code == ("422" if event_id == rejected else "500")

    # Attempts per the broker log: retry 2 -> 3 attempts for a 500, 1 for a 422.
    with sqlite3.connect(env.state_dir / "broker.db") as db:
        attempts = dict(
            db.execute(
                "SELECT e.id, d.attempts FROM deliveries d JOIN events e ON e.seq = d.seq "
                "WHERE d.outcome = 'dead-lettered'"
            ).fetchall()
        )
    assert all(attempts[i] == 3 for i in failing) and attempts[rejected] == 1
    assert not env.answers(set(failing))

    env.fixed.touch()  # the "fix": the function stops failing
    seqs = [by_id[i]["seq"] for i in failing]
    response = env.http.post(env.state["eventStoreUrl"] + "/v1/replay", json={"seqs": seqs})
    assert response.status_code == 200, response.text
    wait_for(lambda: len(env.answers(set(failing))) == len(failing), "the replayed events' answers")
    env.drain()
    answered = env.answers(set(failing))
    assert sorted(a["data"]["origin"] for a in answered) == sorted(failing)
    with sqlite3.connect(env.state_dir / "broker.db") as db:
        replayed = db.execute(
            f"SELECT id FROM events WHERE replay = '1' AND id IN ({','.join('?' * len(failing))})",
            failing,
        ).fetchall()
    assert sorted(r[0] for r in replayed) == sorted(failing)


def test_traffic_split_converges_to_the_configured_percentages(env: Env) -> None:
    url = f"{env.state['servingUrl']}/t/stage-two"
    counts: Counter[str] = Counter()
    headers = {"ce-specversion": "1.0", "ce-source": "/tests", "ce-type": "test.staged",
               "content-type": "application/json"}  # fmt: skip
    for i in range(N_SPLIT):
        response = env.http.post(url, headers={**headers, "ce-id": f"split-{i}"}, content=b"{}")
        assert response.status_code == 200, response.text
        counts[response.headers["x-aisvc-revision"].split("-")[2]] += 1
    # Binomial: 4 standard deviations around n*p for a at 70 %.
    n, p = N_SPLIT, 0.70
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(counts["a"] - n * p) <= 4 * sigma, counts
    assert counts["a"] + counts["b"] == N_SPLIT

    for tag, model in (("a", "a"), ("b", "b"), ("stable", "a")):
        response = env.http.post(
            f"{url}/tags/{tag}", headers={**headers, "ce-id": "t"}, content=b"{}"
        )
        assert response.status_code == 200
        assert response.headers["x-aisvc-revision"].split("-")[2] == model
        assert response.headers["ce-modelversion"] == model
    assert env.http.post(f"{url}/tags/nope", headers=headers, content=b"{}").status_code == 404


def test_the_same_event_twice_is_logged_and_answered_once(env: Env) -> None:
    event_id = f"dup-{uuid.uuid4()}"
    first = env.send("test.request", {"n": 1}, event_id=event_id)
    second = env.send("test.request", {"n": 1}, event_id=event_id)
    assert first.status_code == second.status_code == 202
    assert second.headers.get("x-aisvc-duplicate") == "true"
    wait_for(lambda: len(env.answers({event_id})) == 1, "the answer")
    env.drain()
    assert len(env.answers({event_id})) == 1


def test_reply_loops_are_cut_and_dead_lettered(env: Env) -> None:
    event_id = f"loop-{uuid.uuid4()}"
    assert env.send("test.loop", {"n": 0}, event_id=event_id).status_code == 202
    wait_for(
        lambda: any(
            i["errorCode"] == 508
            for i in env.store(contract.dead_letter_path("t", "looper"))["items"]
        ),
        "the looping reply in the dead letters",
    )
    env.drain()
    assert env.run.dispatcher is not None
    trigger = next(t.name for t in env.run.dispatcher.triggers if t.owner == "looper")
    assert env.run.dispatcher.stats.answered[trigger] == HOP_LIMIT  # hops 1..limit pass


def test_bad_requests_are_refused_with_a_reason(env: Env) -> None:
    response = env.http.post(
        env.broker, headers={"content-type": "application/json"}, content=b"{}"
    )
    assert response.status_code == 400 and "not a CloudEvent" in response.json()["error"]
    response = env.http.post(
        env.broker.replace("/t/default", "/t/nosuch"),
        headers={"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/s", "ce-type": "t"},
    )
    assert response.status_code == 404 and "no broker t/nosuch" in response.json()["error"]
    status = env.http.get(env.state["statusUrl"]).json()
    assert {s["name"] for s in status["services"]} == {"stage-one", "stage-two", "looper"}


def test_a_crashed_function_process_is_restarted(env: Env) -> None:
    assert env.run.services is not None
    pool = next(p for name, p in env.run.services.pools.items() if name.startswith("stage-one-"))
    victim = next(p for p in pool.processes if p.ready)
    assert victim.proc is not None
    os.kill(victim.proc.pid, signal.SIGKILL)
    wait_for(lambda: victim.proc is not None and victim.proc.returncode is not None, "the kill")
    origins = set()
    for i in range(5):
        event_id = f"after-crash-{uuid.uuid4()}"
        origins.add(event_id)
        assert env.send("test.request", {"n": i}, event_id=event_id).status_code == 202
    wait_for(lambda: len(env.answers(origins)) == len(origins), "answers after the restart")
    assert pool.restarts >= 1
    assert any(p.ready and p.alive for p in pool.processes)


def test_aisvc_send_posts_to_the_local_broker_and_the_view_shows_the_run(env: Env) -> None:
    event_id = f"cli-{uuid.uuid4()}"
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app,
        ["send", "--type", "test.request", "--data", '{"n": 7}', "--id", event_id,
         "--state-dir", str(env.state_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.startswith("202 ")
    wait_for(lambda: len(env.answers({event_id})) == 1, "the answer to the CLI's event")
    bad = CliRunner().invoke(app, ["send", "--type", "x", "--data", "{", "--state-dir", "."])
    assert bad.exit_code == 2 and "--data is not JSON" in bad.output

    console = Console(record=True, width=200)
    console.print(render(env.run.snapshot()))
    text = console.export_text()
    for expected in ("t/default", "stage-one", "stage-two", "70%", "30%", "dead-lettered", "sink"):
        assert expected in text


def test_a_revision_scales_to_zero_when_idle_and_back_on_the_next_event(env: Env) -> None:
    assert env.run.services is not None
    pool = next(p for name, p in env.run.services.pools.items() if name.startswith("stage-one-"))
    settings = pool.settings
    pool.settings = dataclasses.replace(settings, idle_seconds=0.2)
    try:
        wait_for(lambda: not pool.processes, "scale to zero")
        event_id = f"cold-{uuid.uuid4()}"
        assert env.send("test.request", {"n": 1}, event_id=event_id).status_code == 202
        wait_for(lambda: len(env.answers({event_id})) == 1, "the answer after a cold start")
    finally:
        pool.settings = settings
    assert pool.processes


def test_the_local_store_takes_dead_letters_only_on_the_credentialed_sink(env: Env) -> None:
    base = env.state["eventStoreUrl"]
    headers = {"ce-specversion": "1.0", "ce-id": "forged", "ce-source": "/x", "ce-type": "t",
               f"ce-{contract.EXT_REVISION}": "canary"}  # fmt: skip
    forged = env.http.post(base + contract.dead_letter_path("t", "stage-one"), headers=headers)
    assert forged.status_code == 401
    triggers = env.run.dispatcher.triggers if env.run.dispatcher else []
    sinks = {t.dead_letter for t in triggers if t.owner == "stage-one"}
    key = (env.state_dir / "sink.key").read_bytes().strip()
    assert sinks == {base + contract.dead_letter_path("t", "stage-one", key)}


REBIND = "rebind.attacker.example"
"""A name a web page rebinds to 127.0.0.1: the browser still sends it as the Host."""


def test_every_listener_answers_only_a_host_naming_its_loopback_address(env: Env) -> None:
    store = env.state["eventStoreUrl"]
    service_url = env.http.get(env.state["statusUrl"]).json()["services"][0]["url"]
    event = {"ce-specversion": "1.0", "ce-id": "rebind", "ce-source": "/r", "ce-type": "t.rebind",
             "content-type": "application/json"}  # fmt: skip
    calls: list[tuple[str, str, dict[str, str], bytes]] = [
        ("POST", env.broker, event, b"{}"),
        ("GET", env.state["statusUrl"], {}, b""),
        ("POST", env.state["commandsUrl"] + "/t/stage-one/pause", {"X-Aisvc-Command": "1"}, b""),
        ("POST", service_url, event, b"{}"),
        ("POST", store + "/v1/replays", {"content-type": "application/json"}, b"{}"),
        ("GET", store + "/v1/decisions/trace?id=rebind", {}, b""),
        ("GET", store + "/console/", {}, b""),
    ]
    for method, url, headers, body in calls:
        port = urlsplit(url).port
        forged = {**headers, "Host": f"{REBIND}:{port}", "Origin": f"http://{REBIND}:{port}"}
        refused = env.http.request(method, url, headers=forged, content=body)
        assert refused.status_code == 421, (url, refused.status_code, refused.text)
        assert REBIND in refused.json()["error"]
        for name in ("localhost", "127.0.0.1", "[::1]"):
            named = {**headers, "Host": f"{name}:{port}"}
            answered = env.http.request(method, url, headers=named, content=body)
            assert answered.status_code != 421, (url, name, answered.text)


def test_a_command_from_a_rebound_page_is_refused_whatever_its_host(env: Env) -> None:
    url = env.state["commandsUrl"] + "/t/stage-one/pause"
    port = urlsplit(url).port
    page = {"X-Aisvc-Command": "1", "Origin": f"http://{REBIND}:{port}"}
    refused = env.http.post(url, headers={**page, "Host": f"127.0.0.1:{port}"})
    assert refused.status_code == 403 and "cross-origin" in refused.json()["error"]
    own = {"X-Aisvc-Command": "1", "Origin": f"http://localhost:{port}"}
    answered = env.http.post(url, headers=own)  # the run's own page: on to the command
    assert answered.status_code == 400 and "no spec.rollout" in answered.json()["error"]


def test_the_state_directory_and_its_files_are_private(env: Env) -> None:
    """The broker log, the store's database and the logs hold event data: owner only."""
    assert env.state_dir.stat().st_mode & 0o777 == 0o700
    files = [p for p in env.state_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"broker.db", "event-store.db", "local.json", "sink.key"} <= names
    assert any(p.parent.name == "logs" and p.suffix == ".log" for p in files)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {
        p.name: oct(0o600) for p in files
    }
    assert (env.state_dir / "logs").stat().st_mode & 0o777 == 0o700
