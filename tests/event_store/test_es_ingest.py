"""Ingest over real HTTP, on SQLite and PostgreSQL: whole events kept, redeliveries stored
once, bad input refused with a 4xx and nothing stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
from aiservice_functions import contract
from aiservice_functions.event_store.records import EventFilter
from aiservice_functions.event_store.service import EventStore

from tests.support.event_store import AUTH, NS, SVC, dead_letter_headers, post_dead_letter


def test_binary_dead_letter_is_kept_whole(server: str, client: httpx.Client) -> None:
    response = post_dead_letter(
        client,
        server,
        "ev-1",
        data={"text": "great product", "stars": 5},
        dest=f"http://canary-{SVC}.{NS}.svc.cluster.local",
        extra={"ce-partitionkey": "a%20b"},
    )
    assert response.status_code == 201, response.text
    seq = response.json()["seq"]

    detail = client.get(f"{server}/v1/events/{seq}", headers=AUTH).json()
    assert detail["kind"] == "dead-letter"
    assert (detail["namespace"], detail["name"]) == (NS, SVC)
    assert detail["errorCode"] == 500
    assert detail["errorDest"] == f"http://canary-{SVC}.{NS}.svc.cluster.local"
    assert detail["errorData"] == {"error": "model failed"}  # base64 decoded for display
    assert detail["revision"] == "canary"  # the tag route it was addressed to
    event = detail["event"]
    assert event["id"] == "ev-1"
    assert event["data"] == {"text": "great product", "stars": 5}
    assert event["partitionkey"] == "a b"
    assert event["traceparent"].startswith("00-0af7")
    # the original Knative extensions stay on the stored event
    assert base64.b64decode(event[contract.EXT_ERROR_DATA]) == b'{"error":"model failed"}'


def test_structured_dead_letter_with_binary_data(server: str, client: httpx.Client) -> None:
    document = {
        "specversion": "1.0",
        "id": "ev-s",
        "source": "/shop/images",
        "type": "com.example.image.uploaded",
        "datacontenttype": "application/octet-stream",
        "data_base64": base64.b64encode(b"\x00\xffpng").decode(),
        contract.EXT_ERROR_CODE: "400",
        contract.EXT_ERROR_DATA: base64.b64encode(b"\xfe\xfd").decode(),
        contract.EXT_REVISION: "sentiment-v2-abcde",
    }
    response = client.post(
        server + contract.dead_letter_path(NS, SVC),
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(document),
    )
    assert response.status_code == 201, response.text
    detail = client.get(f"{server}/v1/events/{response.json()['seq']}", headers=AUTH).json()
    assert detail["event"]["data_base64"] == document["data_base64"]
    assert detail["errorCode"] == 400
    assert detail["errorData"] == {"base64": base64.b64encode(b"\xfe\xfd").decode()}
    assert detail["revision"] == "sentiment-v2-abcde"


def test_redelivery_is_stored_once(server: str, client: httpx.Client, store: EventStore) -> None:
    first = post_dead_letter(client, server, "dup")
    again = post_dead_letter(client, server, "dup")
    other_source = post_dead_letter(client, server, "dup", source="/other")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == {"seq": first.json()["seq"], "created": False}
    assert other_source.status_code == 201  # same id, other source: another event
    assert store.events.count(EventFilter()) == 2
    record = store.events.get(first.json()["seq"])
    assert record is not None and record.receipts == 2


def test_audit_path_takes_decision_events(server: str, client: httpx.Client) -> None:
    response = client.post(
        server + contract.audit_path(NS, SVC),
        headers={
            "ce-specversion": "1.0",
            "ce-id": "decision-1",
            "ce-source": f"/aiservices/{NS}/{SVC}",
            "ce-type": "dev.aiservice.rollout.decision",
            "content-type": "application/json",
        },
        content=b'{"phase":"Progressing","weight":25,"errorRate":0.001}',
    )
    assert response.status_code == 201, response.text
    listed = client.get(server + contract.audit_path(NS, SVC), headers=AUTH).json()
    assert [i["id"] for i in listed["items"]] == ["decision-1"]
    assert listed["items"][0]["kind"] == "audit"
    dead = client.get(server + contract.dead_letter_path(NS, SVC), headers=AUTH).json()
    assert dead["items"] == []


def test_bad_input_is_refused_and_nothing_stored(
    make_server_url: Callable[..., str], client: httpx.Client, store: EventStore
) -> None:
    server = make_server_url(max_body_bytes=4096)
    path = server + contract.dead_letter_path(NS, SVC)
    cases = {
        "not a CloudEvent": client.post(
            path, headers={"content-type": "application/json"}, content=b'{"hello": 1}'
        ),
        "missing id": client.post(
            path,
            headers={k: v for k, v in dead_letter_headers("x").items() if k != "ce-id"},
            content=b"{}",
        ),
        "oversized": client.post(
            path, headers=dead_letter_headers("big"), content=b'{"x":"' + b"a" * 8192 + b'"}'
        ),
        "oversized, chunked": client.post(
            path,
            headers=dead_letter_headers("big2", extra={"content-type": "application/octet-stream"}),
            content=iter([b"a" * 3000, b"b" * 3000]),  # no Content-Length: chunked
        ),
        "invalid UTF-8 structured": client.post(
            path,
            headers={"content-type": "application/cloudevents+json"},
            content=b'{"specversion":"1.0","id":"\xff","source":"/s","type":"t"}',
        ),
        "invalid UTF-8 header": client.post(
            path, headers=dead_letter_headers("bad", extra={"ce-note": "%FF%FE"}), content=b"{}"
        ),
        "invalid JSON data": client.post(path, headers=dead_letter_headers("j"), content=b"{"),
        "bad namespace": client.post(
            server + contract.dead_letter_path("Not_A_Name", SVC),
            headers=dead_letter_headers("n"),
            content=b"{}",
        ),
    }
    statuses = {case: r.status_code for case, r in cases.items()}
    assert statuses["oversized"] == 413
    assert statuses["oversized, chunked"] == 413
    for case, response in cases.items():
        assert 400 <= response.status_code < 500, (case, response.status_code)
        assert response.json()["error"], case  # a reason, always
    assert "not a CloudEvent" in cases["not a CloudEvent"].json()["error"]
    assert "'id'" in cases["missing id"].json()["error"]
    assert "UTF-8" in cases["invalid UTF-8 structured"].json()["error"]
    assert store.events.count(EventFilter()) == 0


def test_connections_do_not_pile_up(
    server: str, client: httpx.Client, store: EventStore, receiver: object
) -> None:
    """A server that starts a thread per request must not leave a connection per thread."""
    for i in range(30):
        assert post_dead_letter(client, server, f"c-{i}").status_code == 201
    replayed = client.post(
        f"{server}/v1/replay",
        json={"all": True, "target": receiver.url, "concurrency": 8},  # type: ignore[attr-defined]
        headers=AUTH,
    ).json()
    assert replayed["replayed"] == 30
    assert client.get(f"{server}/v1/events", headers=AUTH).status_code == 200
    assert store.db.open_connections <= 4


def test_body_at_the_limit_is_taken_whole(
    make_server_url: Callable[..., str], client: httpx.Client
) -> None:
    server = make_server_url(max_body_bytes=4096)
    path = server + contract.dead_letter_path(NS, SVC)
    headers = dead_letter_headers("edge", extra={"content-type": "application/octet-stream"})
    chunked = client.post(path, headers=headers, content=iter([b"x" * 2048, b"y" * 2048]))
    assert chunked.status_code == 201, chunked.text
    detail = client.get(f"{server}/v1/events/{chunked.json()['seq']}", headers=AUTH).json()
    assert base64.b64decode(detail["event"]["data_base64"]) == b"x" * 2048 + b"y" * 2048
