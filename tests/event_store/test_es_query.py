"""Query, pagination, stats and auth over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiservice_functions import contract
from aiservice_functions.event_store.records import EventFilter, NewEvent, to_us
from aiservice_functions.event_store.service import EventStore

from tests.support.event_store import AUTH, NS, SVC, TOKEN, post_dead_letter


def _seed(client: httpx.Client, server: str) -> None:
    for i in range(7):
        post_dead_letter(client, server, f"a-{i}", code=500 if i % 2 else 400)
    for i in range(3):
        post_dead_letter(
            client,
            server,
            f"b-{i}",
            name="fraud",
            type_="com.example.payment.made",
            dest=f"http://v2-fraud.{NS}.svc.cluster.local",
        )
    post_dead_letter(client, server, "c-0", namespace="other")


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_filters(server: str, client: httpx.Client) -> None:
    _seed(client, server)
    events = f"{server}/v1/events"
    assert len(_ids(client.get(events, headers=AUTH))) == 11
    assert set(_ids(client.get(events, params={"namespace": "other"}, headers=AUTH))) == {"c-0"}
    by_name = _ids(client.get(events, params={"namespace": NS, "name": "fraud"}, headers=AUTH))
    assert by_name == ["b-2", "b-1", "b-0"]  # newest first
    by_type = _ids(client.get(events, params={"type": "com.example.payment.made"}, headers=AUTH))
    assert sorted(by_type) == ["b-0", "b-1", "b-2"]
    by_code = _ids(client.get(events, params={"namespace": NS, "code": 400}, headers=AUTH))
    assert sorted(by_code) == ["a-0", "a-2", "a-4", "a-6"]
    per_service = _ids(client.get(server + contract.dead_letter_path(NS, SVC), headers=AUTH))
    assert sorted(per_service) == [f"a-{i}" for i in range(7)]
    assert _ids(client.get(events, params={"replayed": "true"}, headers=AUTH)) == []
    assert len(_ids(client.get(events, params={"replayed": "false"}, headers=AUTH))) == 11
    bad = client.get(events, params={"since": "yesterday"}, headers=AUTH)
    assert bad.status_code == 400 and "since" in bad.json()["error"]
    bad = client.get(events, params={"kind": "nope"}, headers=AUTH)
    assert bad.status_code == 400 and "kind" in bad.json()["error"]


def test_time_range(store: EventStore, server: str, client: httpx.Client) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for hour in range(5):
        store.events.add(
            NewEvent(
                kind="dead-letter",
                namespace=NS,
                name=SVC,
                source="/s",
                event_id=f"h{hour}",
                type="t",
                document={"id": f"h{hour}"},
                received_at=to_us(base + timedelta(hours=hour)),
            )
        )
    params = {"since": "2026-01-01T01:00:00Z", "until": "2026-01-01T03:00:00+00:00"}
    assert sorted(_ids(client.get(f"{server}/v1/events", params=params, headers=AUTH))) == [
        "h1",
        "h2",
    ]


def test_cursor_pagination_visits_each_record_once(server: str, client: httpx.Client) -> None:
    _seed(client, server)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = client.get(f"{server}/v1/events", params=params, headers=AUTH).json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["nextCursor"]
        pages += 1
        if cursor is None:
            break
    assert pages == 4
    assert len(seen) == len(set(seen)) == 11
    bad = client.get(f"{server}/v1/events", params={"cursor": "zz"}, headers=AUTH)
    assert bad.status_code == 400


def test_stats_per_service_and_revision(server: str, client: httpx.Client) -> None:
    _seed(client, server)
    # explicit revision via the extension wins over the destination URL
    post_dead_letter(
        client, server, "r-1", name="fraud", extra={f"ce-{contract.EXT_REVISION}": "fraud-v2-abc"}
    )
    # the function's error body names the revision
    post_dead_letter(client, server, "r-2", name="fraud", error_body=b'{"revision":"fraud-v1-xyz"}')
    client.post(
        server + contract.audit_path(NS, "fraud"),
        headers={"ce-specversion": "1.0", "ce-id": "d", "ce-source": "/op", "ce-type": "t"},
    )
    stats = client.get(
        f"{server}{contract.EVENT_STORE_STATS_PATH}", params={"namespace": NS}, headers=AUTH
    ).json()
    services = {(s["namespace"], s["name"]): s for s in stats["services"]}
    assert set(services) == {(NS, SVC), (NS, "fraud")}
    assert services[(NS, "fraud")]["deadLetters"] == 5
    assert services[(NS, "fraud")]["unreplayed"] == 5
    assert services[(NS, "fraud")]["audit"] == 1
    assert services[(NS, SVC)]["deadLetters"] == 7
    assert services[(NS, SVC)]["lastDeadLetterAt"].endswith("Z")
    revisions = {(r["name"], r["revision"]): r["deadLetters"] for r in stats["revisions"]}
    assert revisions == {
        (SVC, None): 7,
        ("fraud", "v2"): 3,
        ("fraud", "fraud-v2-abc"): 1,
        ("fraud", "fraud-v1-xyz"): 1,
    }
    one = client.get(
        f"{server}{contract.EVENT_STORE_STATS_PATH}",
        params={"namespace": NS, "name": SVC},
        headers=AUTH,
    ).json()
    assert [s["name"] for s in one["services"]] == [SVC]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/events"),
        ("GET", "/v1/events/1"),
        ("GET", contract.EVENT_STORE_STATS_PATH),
        ("GET", contract.dead_letter_path(NS, SVC)),
        ("GET", contract.audit_path(NS, SVC)),
        ("POST", "/v1/replay"),
    ],
)
def test_query_and_replay_need_the_token(
    server: str, client: httpx.Client, store: EventStore, method: str, path: str
) -> None:
    post_dead_letter(client, server, "secret-1")  # ingest needs no token
    missing = client.request(method, server + path, json={"all": True})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.request(
        method, server + path, json={"all": True}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 403
    basic = client.request(
        method, server + path, json={"all": True}, headers={"Authorization": f"Basic {TOKEN}"}
    )
    assert basic.status_code == 401
    # nothing was replayed or changed by the refused requests
    assert store.events.count(EventFilter(replayed=False)) == 1


def test_no_token_configured_refuses_queries(
    make_server_url: Callable[..., str], client: httpx.Client
) -> None:
    server = make_server_url(token=None)
    assert post_dead_letter(client, server, "x").status_code == 201
    refused = client.get(f"{server}/v1/events", headers=AUTH)
    assert refused.status_code == 403
    assert "no token" in refused.json()["error"]
    open_server = make_server_url(token=None, allow_unauthenticated=True)
    assert client.get(f"{open_server}/v1/events").status_code == 200


def test_health(server: str, client: httpx.Client) -> None:
    assert client.get(server + contract.PATH_LIVENESS).status_code == 200
    ready = client.get(server + contract.PATH_READINESS)
    assert ready.status_code == 200
