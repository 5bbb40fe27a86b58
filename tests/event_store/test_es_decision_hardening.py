"""The decision log under hostile input, through real HTTP on SQLite and PostgreSQL:
redaction holds for every encoding the runtime decodes as JSON, the hash cannot confirm a
redacted value, a lone surrogate is stored (not a 500), and a latency that is not a
finite number never reaches a record."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from aiservice_functions.event_store.decision_data import data_hash
from aiservice_functions.event_store.service import EventStore

from tests.support.event_store import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SINK = "/v1/namespaces/shop/aiservices/sentiment/decisions/{role}"
REDACT = "data=true&redact=%24.customer"
REVIEW = {"text": "Great product", "customer": {"email": "x@example.com"}}
REVIEW_TEXT = json.dumps(REVIEW)
ATTRS = {"specversion": "1.0", "source": "/shop/web", "type": "com.example.review.submitted"}


def binary(event_id: str, content_type: str | None, body: bytes) -> tuple[dict[str, str], bytes]:
    headers = {f"ce-{k}": v for k, v in ATTRS.items()} | {"ce-id": event_id}
    if content_type is not None:
        headers["content-type"] = content_type
    return headers, body


def structured(event_id: str, **data: Any) -> tuple[dict[str, str], bytes]:
    document = {**ATTRS, "id": event_id, **data}
    return {"content-type": "application/cloudevents+json"}, json.dumps(document).encode()


ENCODINGS = {
    "json": binary("e-json", "application/json", REVIEW_TEXT.encode()),
    "text-plain": binary("e-plain", "text/plain", REVIEW_TEXT.encode()),
    "no-content-type": binary("e-none", None, REVIEW_TEXT.encode()),
    "octet-stream": binary("e-octet", "application/octet-stream", REVIEW_TEXT.encode()),
    "data-base64": structured("e-b64", data_base64=base64.b64encode(REVIEW_TEXT.encode()).decode()),
    "data-json-string": structured("e-str", data=REVIEW_TEXT),
    "text-data": structured("e-text", datacontenttype="text/plain", data=REVIEW_TEXT),
}


def ingest(client: httpx.Client, server: str, request: tuple[dict[str, str], bytes],
           role: str = "inputs", query: str = REDACT) -> httpx.Response:  # fmt: skip
    headers, body = request
    return client.post(f"{server}{SINK.format(role=role)}?{query}", headers=headers, content=body)


def records(client: httpx.Client, server: str) -> list[dict[str, Any]]:
    response = client.get(f"{server}/v1/namespaces/shop/aiservices/sentiment/decisions",
                          headers=AUTH)  # fmt: skip
    assert response.status_code == 200, response.text
    body: dict[str, Any] = json.loads(response.text, parse_constant=_no_constant)
    items: list[dict[str, Any]] = body["items"]
    return items


def _no_constant(name: str) -> None:
    raise AssertionError(f"the store answered invalid JSON ({name})")


def every_column(store: EventStore) -> str:
    with store.db.transaction(write=False) as conn:
        rows = store.db.execute(conn, "SELECT * FROM aisvc_decisions").fetchall()
    return json.dumps([[str(v) for v in dict(r).values()] for r in rows])


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_redaction_holds_for_every_encoding_the_runtime_decodes_as_json(
    server: str, client: httpx.Client, store: EventStore, encoding: str
) -> None:
    assert ingest(client, server, ENCODINGS[encoding]).status_code == 201
    (record,) = records(client, server)
    assert record["data"] == {"text": "Great product"}
    assert record["dataHash"] == data_hash({"text": "Great product"})
    assert "x@example.com" not in every_column(store)
    assert "eEBleGFtcGxlLmNvb" not in every_column(store)  # nor in base64


def test_with_redaction_data_that_does_not_parse_is_not_kept(
    server: str, client: httpx.Client, store: EventStore
) -> None:
    raw = b'customer x@example.com said {"text": great'
    assert ingest(client, server, binary("e-raw", "text/plain", raw)).status_code == 201
    assert ingest(client, server, binary("e-bin", None, b"\xff" + raw)).status_code == 201
    kept = records(client, server)
    assert [r["data"] for r in kept] == [None, None]
    assert [r["dataHash"] for r in kept] == [data_hash(raw), data_hash(b"\xff" + raw)]
    assert "x@example.com" not in every_column(store)


def test_without_redaction_undecoded_data_is_kept_as_sent(
    server: str, client: httpx.Client
) -> None:
    request = binary("e-plain", "text/plain", b"just words")
    assert ingest(client, server, request, query="data=true").status_code == 201
    (record,) = records(client, server)
    assert record["data"] == "just words" and record["dataHash"] == data_hash("just words")


def test_the_hash_of_redacted_data_cannot_confirm_a_guess(
    server: str, client: httpx.Client
) -> None:
    for n, email in enumerate(["x@example.com", "y@example.com"]):
        body = json.dumps({"text": "Great product", "customer": {"email": email}}).encode()
        assert ingest(client, server, binary(f"g-{n}", "application/json", body)).status_code == 201
    first, second = records(client, server)
    assert first["dataHash"] == second["dataHash"] == data_hash({"text": "Great product"})
    assert first["dataHash"] != data_hash(REVIEW)


@pytest.mark.parametrize("role", ["inputs", "replies", "feedback"])
def test_a_lone_surrogate_is_stored_not_a_500(server: str, client: httpx.Client, role: str) -> None:
    body = b'{"text": "\\ud83d", "label": "\\ud800", "decisionId": "\\udfff"}'
    for query in ("data=true", "data=false", REDACT):
        response = ingest(client, server, binary(f"s-{query}", "application/json", body),
                          role=role, query=query)  # fmt: skip
        assert response.status_code == 201, response.text
    kept = records(client, server)
    assert [r["data"] for r in kept] == [
        {"text": "\ud83d", "label": "\ud800", "decisionId": "\udfff"},
        None,
        {"text": "\ud83d", "label": "\ud800", "decisionId": "\udfff"},
    ]
    assert {r["label"] for r in kept} == {"\ufffd"}


@pytest.mark.parametrize("latency", ["inf", "-inf", "1e308", "nan", "-5", "86400001", "x"])
def test_a_latency_that_is_not_a_measurement_is_stored_as_null(
    server: str, client: httpx.Client, latency: str
) -> None:
    headers, body = binary("l-1", "application/json", b'{"label": "positive"}')
    headers["ce-aisvclatencyms"] = latency
    assert ingest(client, server, (headers, body), role="replies").status_code == 201
    (record,) = records(client, server)  # parsed strictly: no Infinity, no NaN
    assert record["latencyMs"] is None
    assert record["attributes"]["aisvclatencyms"] == latency  # the attribute, as sent
    trace = client.get(f"{server}/v1/decisions/trace", params={"id": "l-1"}, headers=AUTH)
    assert trace.status_code == 200
    json.loads(trace.text, parse_constant=_no_constant)


def test_a_measured_latency_is_kept(server: str, client: httpx.Client) -> None:
    headers, body = binary("l-2", "application/json", b"{}")
    headers["ce-aisvclatencyms"] = "12.5"
    assert ingest(client, server, (headers, body), role="replies").status_code == 201
    assert records(client, server)[0]["latencyMs"] == 12.5


def test_the_export_streams_a_lone_surrogate_escaped(server: str, client: httpx.Client) -> None:
    body = b'{"text": "\\ud83d"}'
    assert ingest(client, server, binary("s-1", "application/json", body)).status_code == 201
    export = client.get(f"{server}/v1/namespaces/shop/aiservices/sentiment/decisions/export",
                        headers=AUTH)  # fmt: skip
    assert export.status_code == 200
    (row,) = [json.loads(line) for line in export.text.splitlines()]
    assert row["input"] == {"text": "\ud83d"}
