"""Replay guards: where a replay may send, bounded settings (400 naming the field),
background jobs with progress and cancellation, and targets never logged in full."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiservice_functions.event_store.guard import TargetPolicy, redact_url
from aiservice_functions.event_store.replay import ReplayOptions

from tests.support.event_store import AUTH, Receiver, post_dead_letter

STRICT = ReplayOptions()  # the store's default policy: no allow-list


def _wait_job(client: httpx.Client, server: str, job_id: str) -> dict[str, Any]:
    """Poll until the job is no longer running (the bound only stops a broken run)."""
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = client.get(f"{server}/v1/replays/{job_id}", headers=AUTH).json()
        if job["state"] != "running":
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/",
        "http://127.0.0.1:9/",
        "http://[::1]/",
        "http://10.0.0.7/",
        "http://aiservice-event-store.aiservice-system.svc.cluster.local/v1/replay",
        "http://postgres.db.svc/",
    ],
)
def test_internal_targets_are_refused_by_default(
    make_server_url: Callable[..., str], client: httpx.Client, target: str
) -> None:
    server = make_server_url(replay_defaults=STRICT)
    post_dead_letter(client, server, "e1")
    for path in ("/v1/replay", "/v1/replays"):
        response = client.post(
            f"{server}{path}", json={"all": True, "target": target}, headers=AUTH
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith("target")


def test_the_allow_list_admits_a_target_and_the_broker_is_always_admitted(
    make_server_url: Callable[..., str], client: httpx.Client, receiver: Receiver
) -> None:
    allowed = ReplayOptions(policy=TargetPolicy.parse(["127.0.0.1/32"]))
    server = make_server_url(replay_defaults=allowed)
    post_dead_letter(client, server, "e1")
    response = client.post(
        f"{server}/v1/replay", json={"all": True, "target": receiver.url}, headers=AUTH
    )
    assert response.status_code == 200 and response.json()["replayed"] == 1
    broker = make_server_url(replay_defaults=ReplayOptions(broker_url=receiver.url))
    post_dead_letter(client, broker, "e2")
    assert (
        client.post(f"{broker}/v1/replay", json={"all": True}, headers=AUTH).json()["replayed"] == 1
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate", 1e-9),
        ("rate", "nan"),
        ("rate", "inf"),
        ("rate", -1),
        ("concurrency", -5),
        ("concurrency", 0),
        ("concurrency", 65),
        ("concurrency", "9" * 30),
        ("limit", -5),
        ("limit", 10**30),
        ("broker", "../../evil"),
        ("broker", "a/b?x=1"),
    ],
)
def test_out_of_bounds_settings_are_400_naming_the_field(
    server: str, client: httpx.Client, field: str, value: object
) -> None:
    for path in ("/v1/replay", "/v1/replays"):
        response = client.post(f"{server}{path}", json={"all": True, field: value}, headers=AUTH)
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith(field)


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=-5", "limit"), ("code=" + "9" * 30, "code"), ("limit=" + "9" * 30, "limit")],
)
def test_out_of_range_query_parameters_are_400_naming_them(
    server: str, client: httpx.Client, query: str, field: str
) -> None:
    response = client.get(f"{server}/v1/events?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"].startswith(field)
    assert client.get(f"{server}/v1/events/{'9' * 30}", headers=AUTH).status_code == 404


def test_a_replay_job_runs_in_the_background_with_progress(
    server: str, client: httpx.Client, receiver: Receiver
) -> None:
    for i in range(5):
        post_dead_letter(client, server, f"j{i}")
    receiver.fail_ids = {"j3"}
    started = client.post(
        f"{server}/v1/replays", json={"all": True, "target": receiver.url}, headers=AUTH
    )
    assert started.status_code == 202
    job_id = started.json()["id"]
    assert started.headers["Location"] == f"/v1/replays/{job_id}"
    job = _wait_job(client, server, job_id)
    assert job["state"] == "succeeded"
    assert (job["selected"], job["done"], job["replayed"], job["failed"]) == (5, 5, 4, 1)
    assert sorted(r["id"] for r in job["results"] if not r["ok"]) == ["j3"]
    listed = client.get(f"{server}/v1/replays", headers=AUTH).json()["items"]
    assert [j["id"] for j in listed] == [job_id]
    assert client.get(f"{server}/v1/replays/nope", headers=AUTH).status_code == 404
    assert client.get(f"{server}/v1/replays/{job_id}").status_code == 401


def test_a_cancelled_job_stops_and_leaves_the_rest_pending(
    server: str, client: httpx.Client, receiver: Receiver
) -> None:
    for i in range(6):
        post_dead_letter(client, server, f"c{i}")
    body = {"all": True, "target": receiver.url, "rate": 0.1, "concurrency": 1}
    job_id = client.post(f"{server}/v1/replays", json=body, headers=AUTH).json()["id"]
    deadline = time.monotonic() + 30
    while not receiver.requests:  # the first send goes at once; the next waits 10 s
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelled = client.delete(f"{server}/v1/replays/{job_id}", headers=AUTH)
    assert cancelled.status_code == 202 and cancelled.json()["cancelRequested"] is True
    job = _wait_job(client, server, job_id)
    assert job["state"] == "cancelled"
    assert job["replayed"] == 1 and job["cancelled"] == 5
    # The unsent records are pending and free to replay again at once.
    again = client.post(
        f"{server}/v1/replay", json={"all": True, "target": receiver.url}, headers=AUTH
    ).json()
    assert again["replayed"] == 5


def test_targets_with_credentials_are_never_logged_in_full(
    server: str,
    client: httpx.Client,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    post_dead_letter(client, server, "r1")
    secret_target = receiver.url.replace("http://", "http://alice:pa55word@") + "/?token=t0ps3cret"
    job_id = client.post(
        f"{server}/v1/replays", json={"all": True, "target": secret_target}, headers=AUTH
    ).json()["id"]
    job = _wait_job(client, server, job_id)
    assert job["replayed"] == 1
    assert job["request"]["target"] == redact_url(secret_target)
    assert all("pa55word" not in r["target"] for r in job["results"])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("alice", "pa55word", "t0ps3cret"):
        assert secret not in logged


def test_redact_url_keeps_what_identifies_the_target() -> None:
    assert redact_url("https://u:p@broker.example:8443/ns/b?sig=abc&x=1") == (
        "https://***@broker.example:8443/ns/b?sig=***&x=***"
    )
    assert redact_url("http://broker/ns/default") == "http://broker/ns/default"


def _stand_in_resolver(host: str) -> list[str]:
    """Public names as a resolver would answer them; nothing is sent to these addresses."""
    return {"replay.example.com": ["93.184.216.34"], "other.example.net": ["151.101.1.1"]}[host]


BROKER = "http://broker-ingress.knative-eventing.svc.cluster.local"


@pytest.mark.parametrize(
    "target", ["http://replay.example.com/", "http://93.184.216.34/", "http://[2606:4700::1]/"]
)
def test_public_targets_are_refused_by_default(target: str) -> None:
    strict = TargetPolicy(resolve=_stand_in_resolver)
    with pytest.raises(ValueError, match=r"^target: .* outside the cluster.*--replay-allow-target"):
        strict.check(target, "target", BROKER)


@pytest.mark.parametrize(
    ("entry", "target"),
    [
        ("replay.example.com", "http://replay.example.com/"),
        ("*.example.com", "http://replay.example.com/"),
        ("93.184.216.0/24", "http://replay.example.com/"),
        ("93.184.216.34/32", "http://93.184.216.34/"),
        ("2606:4700::/32", "http://[2606:4700::1]/"),
    ],
)
def test_the_allow_list_opts_a_public_target_in(entry: str, target: str) -> None:
    policy = TargetPolicy(TargetPolicy.parse([entry]).allow, resolve=_stand_in_resolver)
    policy.check(target, "target", BROKER)
    with pytest.raises(ValueError, match="outside the cluster"):
        policy.check("http://1.1.1.1/", "target", BROKER)


def test_the_configured_broker_is_admitted_wherever_it_is() -> None:
    strict = TargetPolicy(resolve=_stand_in_resolver)
    strict.check("http://replay.example.com/shop/default", "target", "http://replay.example.com")
    with pytest.raises(ValueError, match="outside the cluster"):
        strict.check("http://other.example.net/", "target", "http://replay.example.com")
