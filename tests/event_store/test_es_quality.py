"""The quality query over real HTTP on SQLite and PostgreSQL: per model version, the
output counts, the agreement on inputs both versions answered (shadow answers included),
feedback accuracy, and a numeric output bucketed by the stable version's deciles."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiservice_functions.event_store.service import EventStore

from tests.support.event_store import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SINK = "/v1/namespaces/shop/aiservices/{name}/decisions/{role}?data=true"
QUALITY = "/v1/namespaces/shop/aiservices/{name}/quality"


def send(
    client: httpx.Client, server: str, role: str, data: Any, name: str = "svc", **attrs: str
) -> None:
    headers = {"ce-specversion": "1.0", "content-type": "application/json",
               **{f"ce-{k}": v for k, v in attrs.items()}}  # fmt: skip
    url = server + SINK.format(name=name, role=role)
    response = client.post(url, headers=headers, content=json.dumps(data).encode())
    assert response.status_code == 201, response.text


def answer(
    client: httpx.Client,
    server: str,
    n: int,
    version: str,
    label: str,
    score: float | None = None,
    *,
    shadow: bool = False,
    name: str = "svc",
) -> str:
    """`version`'s answer to input n; returns the answer's id."""
    event_id = f"{version}-{n}"
    data: dict[str, Any] = {"label": label}
    if score is not None:
        data["score"] = score
    send(client, server, "shadow" if shadow else "replies", data, name=name,
         id=event_id, source=f"/aiservices/shop/{name}/{name}-{version}-abc",
         type="com.example.scored", causationid=f"/in#{n}", correlationid=f"/in#{n}",
         modelversion=version)  # fmt: skip
    return event_id


def feedback(client: httpx.Client, server: str, decision: str, label: str) -> None:
    send(client, server, "feedback", {"decisionId": decision, "label": label},
         id=f"fb-{decision}", source="/labels", type="dev.aiservice.feedback")  # fmt: skip


def window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "since": (now - timedelta(minutes=5)).isoformat(),
        "until": (now + timedelta(minutes=1)).isoformat(),
    }


def ask(client: httpx.Client, server: str, name: str = "svc", **params: Any) -> dict[str, Any]:
    query = {"canary": "v2", "stable": "v1", **window(), **params}
    response = client.get(server + QUALITY.format(name=name), params=query, headers=AUTH)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_counts_agreement_and_accuracy_in_one_answer(server: str, client: httpx.Client) -> None:
    stable_labels = ["positive", "negative"] * 5  # ten inputs, half and half
    canary_labels = ["positive"] * 10  # a canary that always says positive
    truth = ["positive", "negative"] * 5
    for n in range(10):
        decision = answer(client, server, n, "v1", stable_labels[n])
        answer(client, server, n, "v2", canary_labels[n], shadow=True)  # mirrored copy
        if n < 6:  # feedback for six decisions, naming the stable's (served) answer
            feedback(client, server, decision, truth[n])
    answer(client, server, 10, "v1", "positive")  # answered by the stable only
    answer(client, server, 0, "v1", "positive", name="other")  # another service: ignored

    body = ask(client, server)
    v1, v2 = body["versions"]["v1"], body["versions"]["v2"]
    assert (v1["answers"], v1["outputs"]) == (11, {"positive": 6, "negative": 5})
    assert (v2["answers"], v2["outputs"]) == (10, {"positive": 10})
    assert (body["paired"], body["agreed"]) == (10, 5)
    assert (v1["labelled"], v1["correct"]) == (6, 6)  # the stable was right each time
    assert (v2["labelled"], v2["correct"]) == (6, 3)  # feedback grades the shadow answer too

    earlier = datetime.now(UTC) - timedelta(hours=2)
    empty = ask(client, server, since=earlier.isoformat(),
                until=(earlier + timedelta(minutes=1)).isoformat())  # fmt: skip
    assert empty["paired"] == 0 and empty["versions"]["v2"] == {
        "answers": 0, "outputs": {}, "labelled": 0, "correct": 0}  # fmt: skip


def test_numeric_output_pairs_within_tolerance_and_buckets_by_stable_deciles(
    server: str, client: httpx.Client
) -> None:
    for n in range(20):
        answer(client, server, n, "v1", "x", score=n / 20)  # 0.00 .. 0.95
        answer(client, server, n, "v2", "x", score=n / 20 + (0.01 if n < 15 else 0.5))
    body = ask(client, server, compare="$.score", tolerance="0.05")
    assert (body["paired"], body["agreed"]) == (20, 15)
    v1, v2 = body["versions"]["v1"]["outputs"], body["versions"]["v2"]["outputs"]
    assert v1 == {str(tile): 2 for tile in range(1, 11)}  # deciles of its own values
    # Each canary value goes to the first decile whose top is at least it; the five
    # pushed above the stable's maximum land in the last.
    assert sum(v2.values()) == 20 and v2["10"] >= 5


def test_a_path_other_than_the_label_reads_the_logged_data(
    server: str, client: httpx.Client
) -> None:
    for n in range(4):
        answer(client, server, n, "v1", "a", score=1.0)
        answer(client, server, n, "v2", "b", score=1.0 if n else 2.0)
    by_score = ask(client, server, compare="$.score")  # categorical: compared as text
    assert (by_score["paired"], by_score["agreed"]) == (4, 3)
    by_label = ask(client, server)
    assert (by_label["paired"], by_label["agreed"]) == (4, 0)
    missing = ask(client, server, compare="$.nothing")
    assert missing["versions"]["v1"]["outputs"] == {"none": 4} and missing["agreed"] == 0


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"canary": ""}, "canary and stable are required"),
        ({"stable": "v2"}, "two different model versions"),
        ({"compare": "label"}, "compare must be a JSON path"),
        ({"compare": "$.a'; DROP TABLE x; --"}, "compare must be a JSON path"),
        ({"tolerance": "-1"}, "tolerance must be a number"),
        ({"tolerance": "nan"}, "tolerance must be a number"),
        ({"since": "yesterday"}, "since must be an RFC 3339 timestamp"),
        ({"until": "2020-01-01T00:00:00Z"}, "until must be later than since"),
    ],
)
def test_bad_queries_are_refused_with_a_reason(
    server: str, client: httpx.Client, params: dict[str, str], words: str
) -> None:
    query = {"canary": "v2", "stable": "v1", **window(), **params}
    response = client.get(server + QUALITY.format(name="svc"), params=query, headers=AUTH)
    assert response.status_code == 400 and words in response.json()["error"]


def test_the_query_needs_the_read_token(server: str, client: httpx.Client) -> None:
    query = {"canary": "v2", "stable": "v1", **window()}
    assert client.get(server + QUALITY.format(name="svc"), params=query).status_code == 401


def test_the_window_is_found_by_its_index(tmp_path: Any) -> None:
    store = EventStore(f"sqlite:///{tmp_path}/q.db")
    with store.db.transaction(write=False) as conn:
        plan = store.db.execute(
            conn,
            "EXPLAIN QUERY PLAN SELECT causation FROM aisvc_decisions WHERE namespace = ? AND "
            "name = ? AND role IN ('reply', 'shadow') AND received_at >= ? AND received_at < ?",
            ("a", "b", 0, 1),
        ).fetchall()
    store.close()
    assert "aisvc_decisions_window" in " ".join(str(tuple(row)) for row in plan)


def test_feedback_counts_in_the_window_it_arrives_in(server: str, client: httpx.Client) -> None:
    """Labels come after the decisions: the window holds the feedback, not the answers."""
    decisions = [answer(client, server, n, "v1", "negative") for n in range(3)]
    for n in range(3):
        answer(client, server, n, "v2", "positive", shadow=True)
    between = datetime.now(UTC)
    for decision in decisions:
        feedback(client, server, decision, "negative")
    later = {"since": between.isoformat(), "until": (between + timedelta(minutes=1)).isoformat()}
    body = ask(client, server, **later)
    assert body["paired"] == 0  # no answer in this window ...
    v1, v2 = body["versions"]["v1"], body["versions"]["v2"]
    assert (v1["labelled"], v1["correct"], v2["labelled"], v2["correct"]) == (3, 3, 3, 0)
    before = {"since": (between - timedelta(minutes=5)).isoformat(), "until": between.isoformat()}
    assert ask(client, server, **before)["versions"]["v2"]["labelled"] == 0  # ... nor feedback
