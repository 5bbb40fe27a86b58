"""Forged dead letters: with a sink key, ingest takes only records posted to the AIService's
own credentialed sink URL (the one the operator compiles), and attributes them to that
path. The operator's compiler, `aisvc render` and the store derive the same credential."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import yaml
from aiservice_functions import contract
from aiservice_operator.cli.main import app
from aiservice_operator.cluster.config import Config
from aiservice_operator.core.compile import steady_state
from aiservice_operator.core.spec import parse
from typer.testing import CliRunner

from tests.support.event_store import AUTH, NS, SVC, dead_letter_headers

KEY = b"0123456789abcdef-sink-key-for-tests"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sentiment.yaml"


def test_dead_letter_without_the_credential_is_refused(
    make_server_url: Callable[..., str], client: httpx.Client
) -> None:
    base = make_server_url(sink_key=KEY)
    open_path = contract.dead_letter_path(NS, SVC)
    response = client.post(base + open_path, content=b"{}", headers=dead_letter_headers("a"))
    assert response.status_code == 401
    assert "credential" in response.json()["error"]


def test_another_aiservices_credential_cannot_file_for_this_one(
    make_server_url: Callable[..., str], client: httpx.Client
) -> None:
    base = make_server_url(sink_key=KEY)
    other = contract.sink_credential(KEY, NS, "other")
    forged = f"{contract.dead_letter_path(NS, SVC)}/{other}"
    headers = dead_letter_headers("forged", extra={f"ce-{contract.EXT_REVISION}": "canary"})
    assert client.post(base + forged, content=b"{}", headers=headers).status_code == 403
    wrong_key = contract.dead_letter_path(NS, SVC, b"not-the-key-at-all-0000")
    assert client.post(base + wrong_key, content=b"{}", headers=headers).status_code == 403
    assert client.get(base + "/v1/events", headers=AUTH).json()["items"] == []


def test_the_credentialed_sink_stores_and_attributes_to_its_path(
    make_server_url: Callable[..., str], client: httpx.Client
) -> None:
    base = make_server_url(sink_key=KEY)
    for path in (contract.dead_letter_path(NS, SVC, KEY), contract.audit_path(NS, SVC, KEY)):
        response = client.post(base + path, content=b"{}", headers=dead_letter_headers(path))
        assert response.status_code == 201, response.text
    items = client.get(base + "/v1/events", headers=AUTH).json()["items"]
    assert sorted(i["kind"] for i in items) == ["audit", "dead-letter"]
    assert {(i["namespace"], i["name"]) for i in items} == {(NS, SVC)}


def test_render_with_the_key_prints_the_sink_urls_the_operator_applies(tmp_path: Path) -> None:
    key_file = tmp_path / "sink-key"
    key_file.write_text(KEY.decode() + "\n")
    result = CliRunner().invoke(
        app, ["render", "-f", str(EXAMPLE), "--sink-key-file", str(key_file)]
    )
    assert result.exit_code == 0, result.stderr
    rendered = [o for o in yaml.safe_load_all(result.stdout) if o["kind"] == "Trigger"]
    config = Config.from_env({contract.ENV_EVENT_STORE_SINK_KEY_FILE: str(key_file)})
    document = yaml.safe_load(EXAMPLE.read_text())
    applied = [
        t
        for t in steady_state(parse(document), config.compile_options).objects()
        if t["kind"] == "Trigger"
    ]
    sinks = [t["spec"]["delivery"]["deadLetterSink"]["uri"] for t in rendered]
    assert sinks == [t["spec"]["delivery"]["deadLetterSink"]["uri"] for t in applied]
    ns, name = document["metadata"]["namespace"], document["metadata"]["name"]
    assert all(s.endswith("/" + contract.sink_credential(KEY, ns, name)) for s in sinks)
    # The same from the environment, as the operator's pod has it.
    by_env = CliRunner().invoke(
        app, ["render", "-f", str(EXAMPLE)], env={contract.ENV_EVENT_STORE_SINK_KEY: KEY.decode()}
    )
    assert by_env.stdout == result.stdout


def test_a_too_short_key_is_refused_naming_it(tmp_path: Path) -> None:
    key_file = tmp_path / "sink-key"
    key_file.write_text("short\n")
    result = CliRunner().invoke(
        app, ["render", "-f", str(EXAMPLE), "--sink-key-file", str(key_file)]
    )
    assert result.exit_code == 2
    assert "at least 16 bytes" in result.stderr


def _decision_headers(event_id: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/shop/reviews",
        "ce-type": "com.example.review.submitted",
        "content-type": "application/json",
    }


def test_decision_ingest_needs_the_aiservices_credential(
    make_server_url: Callable[..., str], client: httpx.Client
) -> None:
    """Forged decision records would pollute the log that `trace`, `reprocess` and
    `export` read: with a key, the decision sinks take the same credential as dead
    letters; `reprocessed` records still take the bearer token, never the credential."""
    base = make_server_url(sink_key=KEY)
    body = b'{"text": "great"}'
    for role in ("inputs", "replies", "feedback"):
        open_path = contract.decisions_path(NS, SVC, role)
        assert (
            client.post(base + open_path, content=body, headers=_decision_headers(role)).status_code
            == 401
        )
        forged = f"{open_path}/{contract.sink_credential(KEY, NS, 'other')}"
        assert (
            client.post(base + forged, content=body, headers=_decision_headers(role)).status_code
            == 403
        )
    listed = client.get(
        base + contract.decisions_path(NS, SVC, "inputs")[: -len("/inputs")], headers=AUTH
    )
    assert listed.status_code == 200 and listed.json()["items"] == []
    for role in ("inputs", "replies", "feedback"):
        path = contract.decisions_path(NS, SVC, role, KEY)
        assert path.endswith("/" + contract.sink_credential(KEY, NS, SVC))
        response = client.post(
            base + path + "?data=true", content=body, headers=_decision_headers(role)
        )
        assert response.status_code == 201, response.text
    items = client.get(
        base + contract.decisions_path(NS, SVC, "inputs")[: -len("/inputs")], headers=AUTH
    ).json()["items"]
    assert sorted(i["role"] for i in items) == ["feedback", "input", "reply"]
    assert {(i["namespace"], i["name"]) for i in items} == {(NS, SVC)}
    assert contract.decisions_path(NS, SVC, "reprocessed", KEY) == contract.decisions_path(
        NS, SVC, "reprocessed"
    )
