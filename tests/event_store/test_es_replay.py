"""Replay over real HTTP to a real receiver on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from aiservice_functions import contract
from aiservice_functions.event_store.records import EventFilter
from aiservice_functions.event_store.replay import Pace, ReplayOptions
from aiservice_functions.event_store.service import EventStore

from tests.support.event_store import AUTH, NS, SVC, Receiver, post_dead_letter


def _replay(client: httpx.Client, server: str, **body: object) -> dict[str, object]:
    response = client.post(f"{server}/v1/replay", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_failed_replays_stay_pending_until_a_second_run(
    server: str, client: httpx.Client, receiver: Receiver, store: EventStore
) -> None:
    ids = [f"ev-{i}" for i in range(6)]
    for event_id in ids:
        post_dead_letter(client, server, event_id, data={"n": event_id})
    post_dead_letter(client, server, "elsewhere", name="fraud")
    receiver.fail_ids = {"ev-1", "ev-4"}
    selection = {"filter": {"namespace": NS, "name": SVC}, "target": receiver.url}

    first = _replay(client, server, **selection)
    assert (first["selected"], first["replayed"], first["failed"]) == (6, 4, 2)
    failed = {r["id"] for r in first["results"] if not r["ok"]}  # type: ignore[attr-defined]
    assert failed == {"ev-1", "ev-4"}
    pending = client.get(
        f"{server}/v1/events", params={"replayed": "false", "name": SVC}, headers=AUTH
    ).json()["items"]
    assert {p["id"] for p in pending} == {"ev-1", "ev-4"}
    assert all(p["lastReplayStatus"] == 500 for p in pending)

    # what the receiver got: original id/source/data, no knativeerror*, aisvcreplay=1
    sent = receiver.received("ev-0")[0]
    assert sent["headers"]["ce-source"] == "/shop/reviews"
    assert sent["headers"][f"ce-{contract.EXT_REPLAY}"] == "1"
    assert sent["headers"]["ce-traceparent"].startswith("00-0af7")
    assert not any(h.startswith("ce-knativeerror") for h in sent["headers"])
    assert sent["body"] == b'{"n":"ev-0"}'
    assert sent["headers"]["content-type"] == "application/json"

    second = _replay(client, server, **selection)
    assert (second["selected"], second["replayed"], second["failed"]) == (2, 2, 0)
    assert receiver.received("ev-1")[-1]["headers"][f"ce-{contract.EXT_REPLAY}"] == "1"
    assert store.events.count(EventFilter(name=SVC, replayed=False)) == 0

    third = _replay(client, server, **selection)
    assert third["selected"] == 0
    assert len(receiver.requests) == 8  # 6 + 2, nothing more

    forced = _replay(client, server, force=True, **selection)
    assert (forced["selected"], forced["replayed"]) == (6, 6)
    assert receiver.received("ev-0")[-1]["headers"][f"ce-{contract.EXT_REPLAY}"] == "2"
    # the other AIService's dead letter was never part of the selection
    assert receiver.received("elsewhere") == []


def test_default_target_is_the_namespace_broker(
    make_server_url: Callable[..., str], client: httpx.Client, receiver: Receiver
) -> None:
    server = make_server_url(replay_defaults=ReplayOptions(broker_url=receiver.url + "/"))
    post_dead_letter(client, server, "one")
    post_dead_letter(client, server, "two", namespace="other")
    summary = _replay(client, server, all=True, broker="events")
    assert summary["replayed"] == 2
    assert sorted(r["path"] for r in receiver.requests) == ["/other/events", f"/{NS}/events"]


def test_replay_by_seq_and_concurrency_bound(
    server: str, client: httpx.Client, receiver: Receiver
) -> None:
    seqs = [post_dead_letter(client, server, f"c-{i}").json()["seq"] for i in range(8)]
    receiver.hold = 0.05
    summary = _replay(client, server, seqs=seqs[:6], target=receiver.url, concurrency=2, rate=0)
    assert summary["replayed"] == 6
    assert 1 <= receiver.max_in_flight <= 2
    assert {r["headers"]["ce-id"] for r in receiver.requests} == {f"c-{i}" for i in range(6)}


def test_unreachable_target_marks_nothing(
    server: str, client: httpx.Client, store: EventStore
) -> None:
    post_dead_letter(client, server, "lost")
    summary = _replay(client, server, all=True, target="http://127.0.0.1:9/")
    assert (summary["selected"], summary["failed"]) == (1, 1)
    assert "request failed" in summary["results"][0]["error"]  # type: ignore[index]
    assert store.events.count(EventFilter(replayed=False)) == 1


def test_replayed_event_that_fails_again_is_pending_again(
    server: str, client: httpx.Client, receiver: Receiver, store: EventStore
) -> None:
    post_dead_letter(client, server, "again")
    assert _replay(client, server, all=True, target=receiver.url)["replayed"] == 1
    assert store.events.count(EventFilter(replayed=True)) == 1
    # Knative dead-letters the replayed event again: it carries aisvcreplay=1
    response = post_dead_letter(
        client, server, "again", code=503, extra={f"ce-{contract.EXT_REPLAY}": "1"}
    )
    assert response.status_code == 200 and response.json()["created"] is False
    pending = store.events.page(EventFilter(replayed=False)).items
    assert [(p.event_id, p.error_code, p.replay_count) for p in pending] == [("again", 503, 1)]
    # a plain redelivery of the original dead letter does not reopen a replayed record
    assert _replay(client, server, all=True, target=receiver.url)["replayed"] == 1
    assert receiver.requests[-1]["headers"][f"ce-{contract.EXT_REPLAY}"] == "2"
    post_dead_letter(client, server, "again")
    assert store.events.count(EventFilter(replayed=False)) == 0


def test_replay_request_validation(server: str, client: httpx.Client) -> None:
    for body, word in [
        ({}, "select"),
        ({"seqs": ["x"]}, "seqs"),
        ({"all": True, "target": "ftp://x"}, "target"),
        ({"all": True, "rate": "fast"}, "rate"),
    ]:
        response = client.post(f"{server}/v1/replay", json=body, headers=AUTH)
        assert response.status_code == 400, body
        assert word in response.json()["error"]


def test_first_dead_letter_already_carrying_a_replay_count(
    server: str, client: httpx.Client, receiver: Receiver, store: EventStore
) -> None:
    """An event replayed by some earlier store and dead-lettered here for the first time."""
    post_dead_letter(client, server, "foreign", extra={f"ce-{contract.EXT_REPLAY}": "3"})
    assert _replay(client, server, all=True, target=receiver.url)["replayed"] == 1
    assert store.events.count(EventFilter(replayed=True)) == 1


def test_pace_spaces_sends_by_the_rate() -> None:
    """The rate bound, on a simulated clock: each send waits for its slot."""
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    pace = Pace(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        pace.wait()  # all at the same instant: slots at +0, +0.25, +0.5, +0.75
    assert slept == [0.25, 0.5, 0.75]
    now[0] += 10  # idle for a while: no burst credit is saved up beyond one slot
    pace.wait()
    pace.wait()
    assert slept[3:] == [0.25]
    unbounded = Pace(0, clock=lambda: now[0], sleep=sleep)
    unbounded.wait()
    assert len(slept) == 4
