"""The decision log in the event store, through real HTTP, on SQLite and PostgreSQL:
ingest from the compiled sink URLs (sampling, redaction, hashing, idempotence), chains
by event id / correlation id / traceparent, export, reprocessing records, expiry."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from aiservice_functions.cloudevents_http import InvalidEvent
from aiservice_functions.event_store.decision_data import data_hash, redact
from aiservice_functions.event_store.decision_records import LogSettings, chain_sampled
from aiservice_functions.event_store.records import now_us
from aiservice_functions.event_store.service import EventStore

from tests.support.event_store import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SINK = "/v1/namespaces/shop/aiservices/{name}/decisions/{role}"


def post(
    client: httpx.Client,
    server: str,
    name: str,
    role: str,
    data: Any,
    query: str = "data=true",
    **attrs: str,
) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-type": attrs.pop("type", "com.example.review.submitted"),
        "ce-source": attrs.pop("source", "/shop/web"),
        "ce-id": attrs.pop("id", "r-1"),
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in attrs.items()},
    }
    url = f"{server}{SINK.format(name=name, role=role)}?{query}"
    return client.post(url, headers=headers, content=json.dumps(data).encode())


def pipeline(client: httpx.Client, server: str, query: str = "data=true") -> None:
    """A review through two stages, each logging its inputs and replies."""
    review = {"text": "great", "customer": {"email": "a@b.c"}}
    assert (
        post(client, server, "sentiment", "inputs", review, query, traceparent=TRACE).status_code
        == 201
    )
    scored = {"label": "positive", "score": 0.9}
    stage1 = dict(source="/aiservices/shop/sentiment/sentiment-v1-abc", id="s-1",
                  type="com.example.review.scored", causationid="/shop/web#r-1",
                  correlationid="/shop/web#r-1", modelversion="v1", aisvclatencyms="12.5",
                  traceparent=TRACE)  # fmt: skip
    assert post(client, server, "sentiment", "replies", scored, query, **stage1).status_code == 201
    assert post(client, server, "topic", "inputs", scored, query, **stage1).status_code == 201
    routed = dict(source="/aiservices/shop/topic/topic-v2-def", id="t-1",
                  type="com.example.review.routed", causationid=stage1["source"] + "#s-1",
                  correlationid="/shop/web#r-1", modelversion="v2", traceparent=TRACE)  # fmt: skip
    assert (
        post(client, server, "topic", "replies", {"topic": "shipping"}, query, **routed).status_code
        == 201
    )


@pytest.mark.parametrize("query", ["r-1", "/shop/web#r-1", "t-1", TRACE, TRACE.split("-")[1]])
def test_trace_returns_the_whole_chain_from_any_of_its_ids(
    server: str, client: httpx.Client, query: str
) -> None:
    pipeline(client, server)
    body = client.get(f"{server}/v1/decisions/trace", params={"id": query}, headers=AUTH).json()
    assert body["correlationIds"] == ["/shop/web#r-1"]
    got = [(r["name"], r["role"], r["id"]) for r in body["records"]]
    assert got == [
        ("sentiment", "input", "r-1"), ("sentiment", "reply", "s-1"),
        ("topic", "input", "s-1"), ("topic", "reply", "t-1"),
    ]  # fmt: skip
    reply = body["records"][1]
    assert reply["causationId"] == "/shop/web#r-1" and reply["modelVersion"] == "v1"
    assert reply["latencyMs"] == 12.5 and reply["revision"] == "sentiment-v1-abc"
    # Redaction applies only where asked (none here): the data is kept whole.
    assert body["records"][0]["data"]["customer"] == {"email": "a@b.c"}


def test_redelivery_is_stored_once_and_unknown_chains_are_empty(
    server: str, client: httpx.Client
) -> None:
    first = post(client, server, "sentiment", "inputs", {"text": "x"})
    again = post(client, server, "sentiment", "inputs", {"text": "x"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.content == again.content == b""  # Knative wants no body or an event
    seq = first.headers["aisvc-decision-seq"]
    assert seq == again.headers["aisvc-decision-seq"]
    trace = client.get(f"{server}/v1/decisions/trace", params={"id": "nope"}, headers=AUTH)
    assert trace.json() == {"query": "nope", "correlationIds": [], "records": [], "deadLetters": []}


def test_without_data_only_a_hash_is_kept_and_redacted_paths_never_reach_the_store(
    server: str, client: httpx.Client, store: EventStore
) -> None:
    review = {"text": "t", "customer": {"email": "a@b.c", "id": 7}}
    post(client, server, "sentiment", "inputs", review, "data=false", id="h-1")
    post(client, server, "sentiment", "inputs", review,
         "data=true&redact=%24.customer.email", id="h-2")  # fmt: skip
    items = client.get(
        f"{server}/v1/namespaces/shop/aiservices/sentiment/decisions", headers=AUTH
    ).json()["items"]
    hashed, redacted = items
    assert hashed["data"] is None and hashed["dataHash"] == data_hash(review)
    assert redacted["data"] == {"text": "t", "customer": {"id": 7}}
    # Not in any column of the database either.
    with store.db.transaction(write=False) as conn:
        rows = store.db.execute(conn, "SELECT * FROM aisvc_decisions").fetchall()
    assert "a@b.c" not in json.dumps([list(map(str, r)) for r in rows])


STAGES = (("sentiment", "inputs"), ("sentiment", "replies"), ("topic", "inputs"))


def test_sampling_is_decided_per_chain(server: str, client: httpx.Client) -> None:
    """At 30 %, every event of a chain gets the same verdict in every service."""
    kept = 0
    for n in range(40):
        corr = f"/shop/web#c-{n}"
        answers = {
            post(client, server, svc, role, {"n": n}, "sample=0.3&data=true",
                 id=f"{role}-{n}", correlationid=corr).status_code
            for svc, role in STAGES
        }  # fmt: skip
        assert len(answers) == 1, answers
        kept += answers == {201}
        assert (answers == {201}) == chain_sampled(corr, 0.3)
    assert 0 < kept < 40


def test_feedback_is_kept_whatever_the_sample_rate(server: str, client: httpx.Client) -> None:
    """Feedback labels a decision whose chain the store cannot see at ingest: all of it
    is kept, so a sampled decision never loses its label."""
    answers = {
        post(client, server, "sentiment", "feedback", {"decisionId": f"s-{n}", "label": "x"},
             "sample=0.01", id=f"f-{n}", type="dev.aiservice.feedback",
             source="/crm").status_code
        for n in range(20)
    }  # fmt: skip
    assert answers == {201}


@pytest.mark.parametrize(
    ("query", "reason"),
    [("sample=0", "sample"), ("sample=x", "sample"), ("data=maybe", "data"),
     ("retention=-1", "retention"), ("redact=customer", "redact")],
)  # fmt: skip
def test_bad_sink_settings_are_a_400_naming_them(
    server: str, client: httpx.Client, query: str, reason: str
) -> None:
    response = post(client, server, "sentiment", "inputs", {}, query)
    assert response.status_code == 400 and reason in response.json()["error"]


def test_not_a_cloudevent_is_a_400_and_unknown_parts_a_404(
    server: str, client: httpx.Client
) -> None:
    url = f"{server}{SINK.format(name='sentiment', role='inputs')}"
    response = client.post(url, content=b"{}", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]
    assert client.post(url.replace("inputs", "outputs"), content=b"").status_code == 404


def test_export_streams_one_row_per_input_with_its_decision_and_feedback(
    server: str, client: httpx.Client
) -> None:
    pipeline(client, server, "data=true&redact=%24.customer")
    post(client, server, "sentiment", "inputs", {"text": "unanswered"}, "data=true", id="r-2")
    post(client, server, "sentiment", "feedback", {"decisionId": "s-1", "label": "negative"},
         id="f-1", type="dev.aiservice.feedback", source="/crm")  # fmt: skip
    response = client.get(
        f"{server}/v1/namespaces/shop/aiservices/sentiment/decisions/export",
        params={"feedback": "true"},
        headers=AUTH,
    )
    assert response.headers["content-type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [(r["id"], r["outcome"]) for r in rows] == [("r-1", "answered"), ("r-2", "pending")]
    first = rows[0]
    assert first["input"] == {"text": "great"}  # redacted path absent
    assert first["output"] == {"label": "positive", "score": 0.9}
    assert (first["modelVersion"], first["decisionId"], first["feedbackLabel"]) == (
        "v1",
        "s-1",
        "negative",
    )


def test_reprocessed_records_need_the_token_and_pair_with_the_old_decision(
    server: str, client: httpx.Client
) -> None:
    pipeline(client, server)
    new = dict(
        source="/aiservices/shop/sentiment/reprocess",
        id="n-1",
        type="com.example.review.scored",
        causationid="/shop/web#r-1",
        modelversion="v2",
    )
    refused = post(client, server, "sentiment", "reprocessed", {"label": "negative"},
                   "data=true&run=run-1", **new)  # fmt: skip
    assert refused.status_code in (401, 403)
    url = f"{server}{SINK.format(name='sentiment', role='reprocessed')}?data=true&run=run-1"
    headers = {"ce-specversion": "1.0", "content-type": "application/json",
               **{f"ce-{k}": v for k, v in new.items()}, **AUTH}  # fmt: skip
    assert client.post(url, headers=headers, content=b'{"label":"negative"}').status_code == 201
    pairs = client.get(
        f"{server}/v1/namespaces/shop/aiservices/sentiment/decisions/compare",
        params={"run": "run-1"}, headers=AUTH,
    ).json()["pairs"]  # fmt: skip
    assert len(pairs) == 1
    assert pairs[0]["old"]["data"]["label"] == "positive"
    assert pairs[0]["new"]["data"]["label"] == "negative"
    assert pairs[0]["input"]["data"]["text"] == "great"


def test_ingest_is_counted_in_the_store_metrics(server: str, client: httpx.Client) -> None:
    post(client, server, "sentiment", "inputs", {"n": 1}, id="m-1", time="2026-01-01T00:00:00Z")
    post(client, server, "sentiment", "inputs", {"n": 1}, id="m-1", time="2026-01-01T00:00:00Z")
    text = client.get(f"{server}/metrics").text
    assert 'aisvc_event_store_ingested_total{kind="decision-input",outcome="stored"} 1.0' in text
    assert 'aisvc_event_store_ingested_total{kind="decision-input",outcome="duplicate"} 1.0' in text
    assert "aisvc_event_store_decision_lag_seconds_count 2.0" in text


def test_queries_need_the_token(server: str, client: httpx.Client) -> None:
    assert client.get(f"{server}/v1/decisions/trace", params={"id": "x"}).status_code == 401


def test_expiry_removes_only_records_past_their_retention(store: EventStore) -> None:
    from aiservice_functions.cloudevents_http import make_event
    from aiservice_functions.event_store.decision_records import to_decision

    log = store.decisions
    now = now_us()
    for n, (age_s, retention) in enumerate([(7200, 3600), (60, 3600), (7200, 86400)]):
        event = make_event({"type": "t", "source": "/s", "id": f"e-{n}"}, {"n": n})
        record = to_decision(event, namespace="shop", name="a", role="input",
                             settings=LogSettings(retention_s=retention),
                             received_at=now - age_s * 1_000_000)  # fmt: skip
        assert record is not None
        log.add(record)
    assert log.expire(now) == 1
    assert [r.event_id for r in log.page("shop", "a")] == ["e-1", "e-2"]


# --- pure parts ----------------------------------------------------------------------


def test_redact_paths() -> None:
    data = {"a": {"b": 1, "c": 2}, "xs": [{"t": 1, "u": 2}, {"t": 3}], "ys": [1, 2, 3]}
    assert redact(data, ["$.a.b", "$.xs[*].t", "$.ys[1]", "$.missing.x"]) == {
        "a": {"c": 2}, "xs": [{"u": 2}, {}], "ys": [1, 3]
    }  # fmt: skip
    assert data["a"] == {"b": 1, "c": 2}  # the input is not changed


def test_settings_from_query() -> None:
    settings = LogSettings.from_query({"sample": ["0.5"], "data": ["true"], "redact": ["$.a"]})
    assert settings == LogSettings(0.5, True, 30 * 86400, ("$.a",))
    with pytest.raises(InvalidEvent, match="sample"):
        LogSettings.from_query({"sample": ["1.5"]})


def test_the_log_size_per_aiservice_and_role_is_a_gauge(server: str, client: httpx.Client) -> None:
    pipeline(client, server)
    post(client, server, "sentiment", "inputs", {"n": 2}, id="r-2")
    text = client.get(f"{server}/metrics").text
    stored = "aisvc_event_store_decisions_stored"
    assert f'{stored}{{aiservice="sentiment",namespace="shop",role="input"}} 2.0' in text
    assert f'{stored}{{aiservice="sentiment",namespace="shop",role="reply"}} 1.0' in text
    assert f'{stored}{{aiservice="topic",namespace="shop",role="input"}} 1.0' in text
    assert f'{stored}{{aiservice="topic",namespace="shop",role="reply"}} 1.0' in text
