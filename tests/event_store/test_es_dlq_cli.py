"""`aisvc dlq list|show|replay|stats` through typer's CliRunner against a real store server."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from aiservice_functions import contract
from aiservice_functions.event_store.records import NewEvent, now_us
from aiservice_functions.event_store.service import EventStore
from aiservice_operator.cli.common import CONTROL
from aiservice_operator.cli.dlq import app
from typer.testing import CliRunner

from tests.support.event_store import NS, SVC, TOKEN, Receiver, post_dead_letter


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _env(server: str) -> dict[str, str]:
    return {contract.ENV_EVENT_STORE_URL: server, contract.ENV_EVENT_STORE_TOKEN: TOKEN}


@pytest.fixture
def seeded(server: str, client: httpx.Client) -> str:
    for i in range(3):
        post_dead_letter(client, server, f"cli-{i}", code=503)
    post_dead_letter(client, server, "fraud-0", name="fraud", code=400)
    return server


def test_list_table_and_json(runner: CliRunner, seeded: str) -> None:
    table = runner.invoke(app, ["list", "-n", NS, "--name", SVC], env=_env(seeded))
    assert table.exit_code == 0, table.output
    assert "3 dead letters" in table.output
    for i in range(3):
        assert f"cli-{i}" in table.output
    assert "fraud-0" not in table.output

    as_json = runner.invoke(
        app, ["list", "--code", "400", "-o", "json", "--url", seeded, "--token", TOKEN]
    )
    assert as_json.exit_code == 0, as_json.output
    assert [i["id"] for i in json.loads(as_json.output)["items"]] == ["fraud-0"]


def test_list_follows_pages(runner: CliRunner, seeded: str) -> None:
    first = runner.invoke(app, ["list", "--limit", "2", "-o", "json"], env=_env(seeded))
    page = json.loads(first.output)
    assert len(page["items"]) == 2 and page["nextCursor"]
    everything = runner.invoke(
        app, ["list", "--limit", "2", "--all", "-o", "json"], env=_env(seeded)
    )
    assert len(json.loads(everything.output)["items"]) == 4


def test_show(runner: CliRunner, seeded: str, client: httpx.Client) -> None:
    seq = post_dead_letter(client, seeded, "shown", data={"text": "hello"}).json()["seq"]
    result = runner.invoke(app, ["show", str(seq)], env=_env(seeded))
    assert result.exit_code == 0, result.output
    assert "model failed" in result.output  # the decoded knativeerrordata
    assert '"hello"' in result.output  # the event's data
    as_json = json.loads(
        runner.invoke(app, ["show", str(seq), "-o", "json"], env=_env(seeded)).output
    )
    assert as_json["event"]["data"] == {"text": "hello"}
    missing = runner.invoke(app, ["show", "999999"], env=_env(seeded))
    assert missing.exit_code == 1
    assert "404" in missing.output


def test_replay_then_nothing_left(runner: CliRunner, seeded: str, receiver: Receiver) -> None:
    receiver.fail_ids = {"cli-1"}
    args = ["replay", "-n", NS, "--name", SVC, "--target", receiver.url, "-o", "json"]
    first = runner.invoke(app, args, env=_env(seeded))
    assert first.exit_code == 1  # one failed: a non-zero exit for scripts
    summary = json.loads(first.output)
    assert (summary["selected"], summary["replayed"], summary["failed"]) == (3, 2, 1)
    second = runner.invoke(app, args[:-2], env=_env(seeded))
    assert second.exit_code == 0, second.output
    assert "1 selected, 1 replayed" in second.output
    third = runner.invoke(app, args[:-2], env=_env(seeded))
    assert "nothing to replay" in third.output
    forced = json.loads(runner.invoke(app, [*args, "--force"], env=_env(seeded)).output)
    assert forced["replayed"] == 3
    pending = runner.invoke(app, ["list", "--pending", "-o", "json"], env=_env(seeded))
    assert [i["id"] for i in json.loads(pending.output)["items"]] == ["fraud-0"]


def test_replay_needs_a_selection(runner: CliRunner, seeded: str) -> None:
    result = runner.invoke(app, ["replay"], env=_env(seeded))
    assert result.exit_code == 2
    assert "--all" in result.output


def test_stats(runner: CliRunner, seeded: str) -> None:
    result = runner.invoke(app, ["stats", "-n", NS, "-o", "json"], env=_env(seeded))
    counts = {s["name"]: s["deadLetters"] for s in json.loads(result.output)["services"]}
    assert counts == {SVC: 3, "fraud": 1}
    table = runner.invoke(app, ["stats", "--since", "1h"], env=_env(seeded))
    assert table.exit_code == 0 and "per revision" in table.output


def test_auth_and_connection_errors(runner: CliRunner, seeded: str) -> None:
    no_token = runner.invoke(app, ["list", "--url", seeded])
    assert no_token.exit_code == 1
    assert "401" in no_token.output and contract.ENV_EVENT_STORE_TOKEN in no_token.output
    wrong = runner.invoke(app, ["list", "--url", seeded, "--token", "nope"])
    assert wrong.exit_code == 1 and "403" in wrong.output
    down = runner.invoke(app, ["list", "--url", "http://127.0.0.1:9", "--token", TOKEN])
    assert down.exit_code == 1 and "cannot reach" in down.output
    bad_since = runner.invoke(app, ["list", "--since", "last tuesday"], env=_env(seeded))
    assert bad_since.exit_code == 2


def test_replay_runs_as_a_job_with_a_progress_bar(
    runner: CliRunner, seeded: str, receiver: Receiver
) -> None:
    result = runner.invoke(
        app, ["replay", "-n", NS, "--name", SVC, "--target", receiver.url], env=_env(seeded)
    )
    assert result.exit_code == 0, result.output
    assert "3/3" in result.stderr  # the bar's final state
    assert "3 selected, 3 replayed, 0 failed" in result.stdout


def test_replay_detach_prints_the_job_id_then_job_and_cancel_follow_it(
    runner: CliRunner, seeded: str, receiver: Receiver
) -> None:
    started = runner.invoke(
        app, ["replay", "--all", "--target", receiver.url, "--detach"], env=_env(seeded)
    )
    assert started.exit_code == 0, started.output
    job_id = started.stdout.strip()
    assert len(job_id) == 32  # the job's id, returned without waiting for the job
    shown = runner.invoke(app, ["job", job_id, "-o", "json"], env=_env(seeded))
    assert shown.exit_code == 0 and json.loads(shown.stdout)["id"] == job_id
    cancelled = runner.invoke(app, ["cancel", job_id], env=_env(seeded))
    assert cancelled.exit_code == 0 and job_id in cancelled.stdout
    missing = runner.invoke(app, ["job", "0" * 32], env=_env(seeded))
    assert missing.exit_code == 1 and "404" in missing.stderr


def test_the_default_url_is_not_a_functions_port() -> None:
    from aiservice_operator.cli.dlq import DEFAULT_URL

    assert not DEFAULT_URL.endswith(f":{contract.DEFAULT_PORT}")


ESCAPES = "\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07\x1b[2J\r\x9b1A\u202e"
MARKUP = "[link=http://evil.example/]x[/link]"


def test_event_fields_cannot_drive_the_terminal(
    runner: CliRunner, server: str, client: httpx.Client, store: EventStore
) -> None:
    """Ids, types, sources and error bodies come from whoever posts to the Broker."""
    doc = {
        "specversion": "1.0",
        "id": "esc" + ESCAPES,
        "source": "/s" + ESCAPES,
        "type": "t" + ESCAPES + MARKUP,
        contract.EXT_ERROR_CODE: "500",
        contract.EXT_ERROR_DEST: f"http://{SVC}.{NS}.svc.cluster.local",
        contract.EXT_ERROR_DATA: base64.b64encode(ESCAPES.encode()).decode(),
        "data": {"text": ESCAPES},
    }
    posted = client.post(
        server + contract.dead_letter_path(NS, SVC),
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(doc),
    )
    # The store refuses control characters in attributes now (a CloudEvents String holds
    # none), but records kept from before may hold them: the CLI must show them safely.
    assert posted.status_code == 400, posted.text
    stored, _ = store.events.add(
        NewEvent(
            kind="dead-letter", namespace=NS, name=SVC, source=doc["source"],
            event_id=doc["id"], type=doc["type"], document=doc,
            error_dest=doc[contract.EXT_ERROR_DEST], error_code=500,
            error_data=ESCAPES.encode(), revision=None, received_at=now_us(),
        )
    )  # fmt: skip
    seq = str(stored)
    wide = {**_env(server), "COLUMNS": "1000"}
    for args in (["list"], ["show", seq], ["stats"]):
        result = runner.invoke(app, args, env=wide)
        assert result.exit_code == 0, result.output
        assert not CONTROL.search(result.output.replace("\n", "")), (args, result.output)
    listed = runner.invoke(app, ["list"], env=wide).output
    assert "esc\\x1b]8;;http://evil.example/\\x07click" in listed  # shown, escaped
    assert MARKUP in listed  # text, not a hyperlink
    shown = runner.invoke(app, ["show", seq], env=wide).output
    assert "\\x1b[2J\\r\\x9b1A\\u202e" in shown  # the error body, escaped
