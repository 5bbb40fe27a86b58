"""The console in a real browser (headless Debian Chromium) against a real event store.

Dead letters are posted over HTTP as Knative's dispatcher posts them; replays go to a real
HTTP endpoint standing in for the Broker. Each test uses namespaces of its own, so the one
store of the module serves them all.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.browser import Tab
from tests.support.console_store import READ_TOKEN, TOKEN, Store

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or, in CI, fails) with the reason
    expect = None

HOSTILE = '"><img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2</script>'


def sign_in(tab: Tab, store: Store, token: str = TOKEN, path: str = "/console/") -> None:
    page = tab.page
    page.goto(store.url + path)
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/console/login" not in url)


def rows(tab: Tab) -> list[str]:
    return list(tab.page.locator("#dead-letters tbody tr").evaluate_all(
        "rs => rs.map(r => r.dataset.seq)"))  # fmt: skip


def test_the_token_is_required_and_never_in_a_url(tab: Tab, store: Store) -> None:
    page = tab.page
    page.goto(store.url + "/console/dead-letters?namespace=auth")
    assert "/console/login" in page.url  # sent to sign in, the wanted page remembered
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    page.wait_for_selector(".error")
    assert "not accepted" in page.inner_text(".error")
    assert page.evaluate("fetch('/console/api/counts').then(r => r.status)") == 401

    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/dead-letters?namespace=auth")
    assert page.inner_text(".scope") == "can replay"
    assert page.evaluate("fetch('/console/api/counts').then(r => r.status)") == 200
    # The token went out once, in a POST body; no URL and no script-readable cookie has it.
    assert not [u for u in tab.requests if TOKEN in u]
    assert TOKEN not in page.evaluate("document.cookie")
    cookies = page.context.cookies()
    assert [c["httpOnly"] for c in cookies] == [True] and TOKEN not in cookies[0]["value"]
    assert cookies[0]["sameSite"] == "Strict"

    page.click("text=Sign out")
    page.wait_for_url("**/console/login")
    page.goto(store.url + "/console/")
    assert "/console/login" in page.url


def test_list_filter_and_open_a_dead_letter(tab: Tab, store: Store) -> None:
    s500, id500 = store.dead_letter("shop", "sentiment", code=500, extra={
        "ce-aisvcrevision": "sentiment-v2"})  # fmt: skip
    s422, _ = store.dead_letter("shop", "sentiment", code=422, error_body=b"text is required")
    sother, _ = store.dead_letter("shop", "fraud", code=503, type_="com.example.payment")
    sign_in(tab, store, path="/console/dead-letters?namespace=shop")
    page = tab.page
    assert set(rows(tab)) >= {str(s500), str(s422), str(sother)}

    page.fill("input[name=name]", "sentiment")
    page.fill("input[name=code]", "500")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**code=500**")
    assert rows(tab) == [str(s500)]
    page.fill("input[name=code]", "")
    page.fill("input[name=revision]", "sentiment-v2")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**revision=sentiment-v2**")
    assert rows(tab) == [str(s500)]
    page.fill("input[name=code]", "abc")
    page.click("#filters button[type=submit]")
    page.wait_for_selector(".error")
    assert "HTTP code must be a whole number" in page.inner_text(".error")

    page.goto(store.url + "/console/dead-letters?namespace=shop&name=sentiment")
    page.click(f"#dead-letters tr[data-seq='{s500}'] td >> nth=1 >> a")
    page.wait_for_url(f"**/console/dead-letters/{s500}")
    assert page.inner_text("#error-code") == "500"
    assert page.inner_text("#error-dest") == "http://sentiment.shop.svc.cluster.local"
    assert json.loads(page.inner_text("#error-data")) == {
        "error": "model failed: CUDA out of memory"
    }
    assert json.loads(page.inner_text("#event-data")) == {"text": "The parcel never came."}
    attributes = page.inner_text("#attributes")
    assert id500 in attributes and "sentiment-v2" in attributes
    assert "dead-lettered" in page.inner_text("#history")
    assert tab.csp_violations() == [] and tab.errors == []


def test_replay_selected_and_watch_the_job_finish(tab: Tab, store: Store) -> None:
    first, id1 = store.dead_letter("replay", "sentiment")
    second, id2 = store.dead_letter("replay", "sentiment")
    kept, id3 = store.dead_letter("replay", "sentiment")
    sign_in(tab, store, path="/console/dead-letters?namespace=replay&state=pending")
    page = tab.page
    assert set(rows(tab)) == {str(first), str(second), str(kept)}
    pill = page.locator("nav [data-total=unreplayed]")
    expect(pill).to_have_text(re.compile(r"^\d+$"))  # the first live count arrived
    pending_before = int(pill.inner_text())

    page.check(f"tr[data-seq='{first}'] input[name=seq]")
    page.check(f"tr[data-seq='{second}'] input[name=seq]")
    page.click("#replay-selected")
    page.wait_for_selector("#job [data-job=state][data-state=done]")
    assert page.inner_text("#job [data-job=summary]") == "2 replayed, 0 failed"
    assert page.locator("#job [data-job=results] tbody tr").count() == 2
    assert page.inner_text(f"tr[data-seq='{first}'] [data-state]") == "replayed"
    assert page.inner_text(f"tr[data-seq='{kept}'] [data-state]") == "pending"
    # The Broker got each selected event once, with its id and the replay count.
    for event_id in (id1, id2):
        (got,) = store.broker.received(event_id)
        assert got["ce-aisvcreplay"] == "1" and got["path"] == "/replay/default"
        assert "ce-knativeerrorcode" not in got
    assert store.broker.received(id3) == []
    assert store.get(first)["replayed"] and not store.get(kept)["replayed"]
    # The live count follows without a reload.
    expect(pill).to_have_text(str(pending_before - 2))

    # Replaying a replayed one again is skipped unless forced.
    page.goto(f"{store.url}/console/dead-letters/{first}")
    assert page.inner_text("h1 [data-state]") == "replayed"
    page.click("#replay-one")
    page.wait_for_selector("#job [data-job=state][data-state=done]")
    assert len(store.broker.received(id1)) == 2
    page.reload()
    assert "replayed (2x)" in page.inner_text("#history")
    assert tab.csp_violations() == [] and tab.errors == []


def test_a_hostile_payload_is_rendered_inert(tab: Tab, store: Store) -> None:
    seq, _ = store.dead_letter(
        "evil",
        "sentiment",  # names are refused at ingest unless valid Kubernetes names
        event_id="id" + HOSTILE,
        type_="type" + HOSTILE,
        source="/src" + HOSTILE,
        error_body=HOSTILE.encode(),
        data={"text": HOSTILE, "<b>key</b>": "javascript:alert(1)"},
        extra={"ce-revisionx": HOSTILE},
    )
    sign_in(tab, store, path="/console/dead-letters?namespace=evil")
    page = tab.page
    assert rows(tab) == [str(seq)]
    assert HOSTILE in page.inner_text(f"tr[data-seq='{seq}']")  # shown as text
    page.goto(f"{store.url}/console/dead-letters/{seq}")
    assert page.inner_text("#error-data") == HOSTILE
    assert json.loads(page.inner_text("#event-data"))["text"] == HOSTILE
    assert HOSTILE in page.inner_text("#attributes")
    page.goto(store.url + "/console/")
    # Nothing ran: no script of the payload, no dialog, no element it smuggled in.
    assert page.evaluate("window.__pwned") is None
    assert tab.dialogs == []
    for path in (f"/console/dead-letters/{seq}", "/console/dead-letters?namespace=evil"):
        page.goto(store.url + path)
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img").count() == 0
        assert page.evaluate("[...document.scripts].map(s => s.src)") == [
            store.url + "/console/static/console.js"
        ]
        # CSP blocked nothing either: the payload never became markup to block.
        assert tab.csp_violations() == []
    assert tab.dialogs == [] and tab.errors == []


def test_a_read_token_gives_a_read_only_console(tab: Tab, store: Store) -> None:
    seq, event_id = store.dead_letter("readonly", "sentiment")
    sign_in(tab, store, token=READ_TOKEN, path="/console/dead-letters?namespace=readonly")
    page = tab.page
    assert page.inner_text(".scope") == "read-only"
    assert rows(tab) == [str(seq)]
    assert page.locator("input[name=seq]").count() == 0
    assert page.locator("#replay-selected").count() == 0
    page.goto(f"{store.url}/console/dead-letters/{seq}")
    assert page.locator("#replay-one").count() == 0
    # Even a hand-made request with a valid CSRF token is refused.
    status = page.evaluate(
        """async (seq) => {
            const body = new FormData();
            body.append('seq', String(seq));
            body.append('csrf', document.querySelector('main').dataset.csrf);
            const r = await fetch('/console/replay', {method: 'POST', body,
                                  headers: {Accept: 'application/json'}});
            return r.status;
        }""",
        seq,
    )
    assert status == 403
    assert store.broker.received(event_id) == []


def test_actions_need_the_csrf_token(tab: Tab, store: Store) -> None:
    seq, event_id = store.dead_letter("csrf", "sentiment")
    sign_in(tab, store, path="/console/dead-letters?namespace=csrf")
    page = tab.page
    statuses: list[Any] = page.evaluate(
        """async (seq) => {
            const out = [];
            for (const csrf of [null, 'forged']) {
                const body = new FormData();
                body.append('seq', String(seq));
                if (csrf) body.append('csrf', csrf);
                const r = await fetch('/console/replay', {method: 'POST', body});
                out.push(r.status);
            }
            return out;
        }""",
        seq,
    )
    assert statuses == [403, 403]
    assert store.broker.received(event_id) == []


def test_rollout_decisions_and_the_weight_chart(tab: Tab, store: Store) -> None:
    steps = [
        ("2026-12-04T01:00:00Z", "start", "Progressing", 0, 5, "canary ready", {}),
        ("2026-12-04T01:05:00Z", "advance", "Progressing", 1, 25, "analysis passed",
         {"successRate": 0.998, "p95LatencyMs": 41.2, "deadLetters": 0}),
        ("2026-12-04T01:10:00Z", "advance", "Progressing", 2, 50, "analysis passed",
         {"successRate": 0.997, "p95LatencyMs": 44.0, "deadLetters": 1}),
        ("2026-12-04T01:15:00Z", "rollback", "RolledBack", 2, 0,
         "successRate 0.912 < 0.99", {"successRate": 0.912, "p95LatencyMs": 130.5,
                                      "deadLetters": 37}),
    ]  # fmt: skip
    for i, (at, action, phase, step, weight, reason, metrics) in enumerate(steps):
        store.audit("ro", "sentiment", {
            "specversion": "1.0", "id": f"decision-{i}",
            "source": "/apis/aiservice.dev/v1alpha1/namespaces/ro/aiservices/sentiment",
            "type": "dev.aiservice.rollout.decision", "time": at,
            "datacontenttype": "application/json",
            "data": {"at": at, "action": action, "phase": phase, "step": step,
                     "weight": weight, "reason": reason, "metrics": metrics,
                     "canary": "v2", "stable": "v1"},
        })  # fmt: skip
    store.audit("ro", "sentiment", {
        "specversion": "1.0", "id": "reply-1", "source": "/x", "type": "com.example.reply",
        "data": {"label": "negative"}})  # fmt: skip
    sign_in(tab, store, path="/console/rollouts")
    page = tab.page
    page.click("a[href='/console/rollouts/ro/sentiment']")
    page.wait_for_url("**/console/rollouts/ro/sentiment")
    table = page.locator("#decisions tbody tr")
    assert table.count() == 4  # only rollout decisions, newest first
    assert table.nth(0).inner_text().split("\t")[1] == "rollback"
    assert "successRate 0.912" in table.nth(0).inner_text()
    assert "deadLetters 37" in table.nth(0).inner_text()
    assert page.locator("#weight-chart circle").count() == 4
    assert page.locator("#weight-chart circle.bad").count() == 1
    assert tab.csp_violations() == [] and tab.errors == []


def test_overview_counts_per_aiservice(tab: Tab, store: Store) -> None:
    store.dead_letter("overview", "sentiment")
    sign_in(tab, store)
    page = tab.page
    cell = page.locator("[data-count='overview/sentiment/unreplayed']")
    assert cell.inner_text() == "1"
    store.dead_letter("overview", "sentiment")
    expect(cell).to_have_text("2")  # live: no reload
