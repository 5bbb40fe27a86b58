"""The console's security rules over real HTTP, without a browser (fast, always run):
sign-in, scopes, CSRF and origin checks, headers, and the API's read-only token."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiservice_functions import contract
from aiservice_functions.event_store import create_app, open_store
from aiservice_functions.event_store.console.session import COOKIE
from aiservice_functions.event_store.replay import ReplayOptions
from werkzeug.serving import make_server

TOKEN = "http-test-token"
READ = "http-read-token"


@contextmanager
def serving(db: Path, **options: Any) -> Iterator[str]:
    store = open_store(f"sqlite:///{db}")
    server = make_server("127.0.0.1", 0, create_app(store, **options), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        store.close()


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    with serving(tmp_path / "events.db", token=TOKEN, read_token=READ) as url:
        yield url


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def signed_in(base: str, token: str = TOKEN) -> tuple[httpx.Client, str]:
    """A client signed in with ``token``, and the CSRF token of its session."""
    client = httpx.Client(base_url=base, timeout=10)
    csrf = csrf_of(client.get("/console/login").text)
    response = client.post("/console/login", data={"csrf": csrf, "token": token})
    assert response.status_code == 302, response.text
    page = client.get("/console/dead-letters")
    assert page.status_code == 200
    return client, csrf_of(page.text)


def finished_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The console's view of a replay job once it has left ``running`` (bounded wait)."""
    deadline = time.monotonic() + 20
    while True:
        job: dict[str, Any] = client.get(f"/console/api/replays/{job_id}").json()
        if job["state"] != "running" or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_every_console_response_carries_the_security_headers(base: str) -> None:
    with httpx.Client(base_url=base) as client:
        for path in ("/console/login", "/console/", "/console/static/console.js"):
            headers = client.get(path).headers
            csp = headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "frame-ancestors 'none'" in csp
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
            assert headers["cache-control"] == "no-store"


def test_pages_need_a_signed_in_session(base: str) -> None:
    with httpx.Client(base_url=base) as client:
        page = client.get("/console/dead-letters?namespace=shop")
        assert page.status_code == 302
        assert page.headers["location"].startswith("/console/login?next=")
        assert client.get("/console/api/counts").status_code == 401
        # A forged cookie is no session.
        client.cookies.set(COOKIE, '{"s":"replay","c":"x"}', path="/console")
        assert client.get("/console/api/counts").status_code == 401


def test_a_wrong_token_is_refused_and_sign_in_goes_only_to_console_pages(base: str) -> None:
    with httpx.Client(base_url=base) as client:
        csrf = csrf_of(client.get("/console/login").text)
        wrong = client.post("/console/login", data={"csrf": csrf, "token": "guess"})
        assert wrong.status_code == 401 and "not accepted" in wrong.text
        for target, expected in (
            ("https://evil.example/", "/console/"),
            ("//evil.example/console", "/console/"),
            ("/console/dead-letters?state=pending", "/console/dead-letters?state=pending"),
        ):
            data = {"csrf": csrf, "token": TOKEN, "next": target}
            response = client.post("/console/login", data=data)
            assert response.headers["location"] == expected
            csrf = csrf_of(client.get("/console/").text)  # signing in renewed the CSRF token


def test_posts_need_the_csrf_token_and_the_same_origin(base: str) -> None:
    client, csrf = signed_in(base)
    try:
        data = {"csrf": csrf, "seq": "1"}
        assert client.post("/console/replay", data={"seq": "1"}).status_code == 403
        assert client.post("/console/replay", data={**data, "csrf": "forged"}).status_code == 403
        cross = {"Sec-Fetch-Site": "cross-site"}
        assert client.post("/console/replay", data=data, headers=cross).status_code == 403
        evil = {"Origin": "https://evil.example"}
        assert client.post("/console/replay", data=data, headers=evil).status_code == 403
        # The same request from the console's own origin passes the checks and starts a job
        # (seq 1 does not exist, so it selects nothing).
        same = {"Origin": base, "Accept": "application/json"}
        ok = client.post("/console/replay", data=data, headers=same)
        assert (
            ok.status_code == 202
            and ok.headers["location"] == f"/console/replays/{ok.json()['id']}"
        )
        assert finished_job(client, ok.json()["id"])["selected"] == 0
    finally:
        client.close()


def test_the_read_token_reads_but_never_replays(base: str) -> None:
    client, csrf = signed_in(base, READ)
    try:
        refused = client.post(
            "/console/replay",
            data={"csrf": csrf, "seq": "1"},
            headers={"Accept": "application/json"},
        )
        assert refused.status_code == 403 and "reading only" in refused.json()["error"]
    finally:
        client.close()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {READ}"}) as api:
        assert api.get("/v1/events").status_code == 200
        replay = api.post("/v1/replay", json={"seqs": [1]})
        assert replay.status_code == 403 and "reading only" in replay.json()["error"]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        assert api.post("/v1/replay", json={"seqs": [1]}).status_code == 200


def test_changing_the_token_signs_everyone_out(tmp_path: Path) -> None:
    with serving(tmp_path / "a.db", token="first") as first:
        client, _ = signed_in(first, "first")
        cookie = client.cookies[COOKIE]
        client.close()
    with serving(tmp_path / "b.db", token="second") as second, httpx.Client(base_url=second) as c:
        c.cookies.set(COOKIE, cookie, path="/console")
        assert c.get("/console/api/counts").status_code == 401


def test_without_a_token_the_console_is_closed_unless_the_store_is_open(tmp_path: Path) -> None:
    with serving(tmp_path / "a.db") as closed, httpx.Client(base_url=closed) as client:
        page = client.get("/console/")
        assert page.status_code == 403 and "no token configured" in page.text
    with (
        serving(tmp_path / "b.db", allow_unauthenticated=True) as open_,
        httpx.Client(base_url=open_) as client,
    ):
        page = client.get("/console/dead-letters")
        assert page.status_code == 200 and "can replay" in page.text
        assert client.get("/console/login").headers["location"] == "/console/"


def test_without_script_a_replay_answers_with_a_page_of_outcomes(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: the replay is refused
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    defaults = ReplayOptions(broker_url=closed)
    with serving(tmp_path / "a.db", token=TOKEN, replay_defaults=defaults) as base:
        dead = httpx.post(
            base + contract.dead_letter_path("shop", "sentiment"),
            headers={"ce-specversion": "1.0", "ce-id": "e1", "ce-source": "/s", "ce-type": "t",
                     "ce-knativeerrorcode": "500", "content-type": "application/json"},
            content=b"{}",
        )  # fmt: skip
        seq = dead.json()["seq"]
        client, csrf = signed_in(base)
        try:
            started = client.post(
                "/console/replay",
                data={"csrf": csrf, "seq": str(seq), "back": "https://evil.example/"},
            )
            # A form post is answered by a redirect to the job's page, which refreshes
            # itself while the job runs (no script needed).
            assert started.status_code == 303
            where = started.headers["location"]
            assert where.startswith("/console/replays/") and "back=%2Fconsole%2F" in where
            job_id = where.split("/")[-1].split("?")[0]
            assert finished_job(client, job_id)["state"] == "succeeded"
            page = client.get(where)
            running = client.get("/console/replays/no-such-job")
        finally:
            client.close()
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'http-equiv="refresh"' not in page.text  # finished: no more refreshing
    assert "0 of 1 replayed, 1 failed" in page.text
    assert "request failed: ConnectError" in page.text
    assert 'href="/console/"' in page.text  # the off-site "back" was not kept
    assert running.status_code == 404 and "No replay job" in running.text


HUGE = "9" * 23


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        (f"/console/dead-letters?code={HUGE}", 400, "HTTP code must be a whole number from 0"),
        ("/console/dead-letters?code=%C2%B2", 400, "HTTP code must be a whole number"),
        (f"/console/dead-letters?cursor={HUGE}", 400, "cursor must be a whole number"),
        ("/console/dead-letters?since=0001-01-01T00:00:00%2B14:00", 400, "since must be"),
        ("/console/dead-letters?until=9999-12-31T23:59:59-14:00", 400, "until must be"),
        (f"/console/dead-letters/{HUGE}", 404, "No dead letter"),
        ("/console/decisions/shop/sentiment?before=%C2%B2", 400, "before must be a whole"),
        (f"/console/decisions/shop/sentiment?before={HUGE}", 400, "before must be a whole"),
    ],
)
def test_odd_numbers_and_times_are_a_4xx_naming_the_parameter(
    base: str, path: str, status: int, reason: str
) -> None:
    client, _ = signed_in(base)
    response = client.get(path)
    client.close()
    assert response.status_code == status, response.text[:300]
    assert reason in response.text


@pytest.mark.parametrize("seq", ["-5", HUGE, "²", "1.5"])
def test_the_replay_form_refuses_a_seq_that_is_not_a_positive_whole_number(
    base: str, seq: str
) -> None:
    client, csrf = signed_in(base)
    response = client.post("/console/replay", data={"csrf": csrf, "seq": seq})
    client.close()
    assert response.status_code == 400
    assert "seq must be a whole number from 1" in response.text


def test_sign_in_with_a_next_holding_cr_lf_goes_to_the_console(base: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        csrf = csrf_of(client.get("/console/login").text)
        response = client.post(
            "/console/login",
            data={"csrf": csrf, "token": TOKEN, "next": "/console/\r\nSet-Cookie: x=1"},
        )
        assert response.status_code == 302
        assert response.headers["location"] == "/console/"
        assert "x=1" not in response.headers.get("set-cookie", "")


def test_signing_out_revokes_the_cookie_in_every_worker_and_after_a_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shared.db"
    with serving(db, token=TOKEN) as first, serving(db, token=TOKEN) as second:
        client, csrf = signed_in(first)
        stolen = client.cookies[COOKIE]
        assert client.post("/console/logout", data={"csrf": csrf}).status_code == 302
        client.close()
        for base in (first, second):  # the other worker shares the database
            with httpx.Client(base_url=base, cookies={COOKIE: stolen}) as copy:
                assert copy.get("/console/dead-letters").status_code == 302
                assert copy.get("/console/api/counts").status_code == 401
        kept, _ = signed_in(second)  # another session is not affected
        assert kept.get("/console/api/counts").status_code == 200
        kept_cookie = kept.cookies[COOKIE]
        kept.close()
    with serving(db, token=TOKEN) as restarted:
        with httpx.Client(base_url=restarted, cookies={COOKIE: stolen}) as copy:
            assert copy.get("/console/api/counts").status_code == 401
        with httpx.Client(base_url=restarted, cookies={COOKIE: kept_cookie}) as other:
            assert other.get("/console/api/counts").status_code == 200


def test_pages_show_data_holding_a_lone_surrogate(base: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "s-1", "ce-source": "/s", "ce-type": "t",
               "content-type": "application/json", "ce-knativeerrorcode": "500"}  # fmt: skip
    body = b'{"text": "\\ud83d"}'
    decisions = "/v1/namespaces/shop/aiservices/sentiment/decisions/inputs?data=true"
    assert httpx.post(base + decisions, headers=headers, content=body).status_code == 201
    dead = httpx.post(base + contract.dead_letter_path("shop", "sentiment"), headers=headers,
                      content=body)  # fmt: skip
    assert dead.status_code == 201
    client, _ = signed_in(base)
    for path in (
        "/console/decisions/shop/sentiment",
        f"/console/dead-letters/{dead.json()['seq']}",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "\\ud83d" in page.text
    client.close()
