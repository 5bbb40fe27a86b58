"""A tour of the console's main pages on a store holding a realistic incident: a canary
of shop/sentiment fails, the rollout rolls back, its dead letters are replayed.

It checks that each page shows the incident (and breaks no CSP rule). With
``AISVC_CONSOLE_SCREENSHOTS=DIR`` it also saves each page as DIR/console-<page>.png: the
screenshots in docs/ come from ``AISVC_CONSOLE_SCREENSHOTS=docs pytest
tests/console/test_console_tour.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.browser import Tab
from tests.support.console_store import TOKEN, Store

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or, in CI, fails) with the reason
    expect = None

CANARY = "http://sentiment-00002.shop.svc.cluster.local"
DECISIONS = [
    ("2026-12-04T01:00:00Z", "start", "Progressing", 0, 10, "canary v2 ready", {}),
    ("2026-12-04T01:05:00Z", "advance", "Progressing", 1, 25, "analysis passed",
     {"successRate": 0.998, "p95LatencyMs": 41.2, "deadLetters": 0}),
    ("2026-12-04T01:10:00Z", "advance", "Progressing", 2, 50, "analysis passed",
     {"successRate": 0.997, "p95LatencyMs": 44.0, "deadLetters": 1}),
    ("2026-12-04T01:15:00Z", "hold", "Progressing", 2, 50, "too few requests to judge",
     {"requests": 12}),
    ("2026-12-04T01:20:00Z", "rollback", "RolledBack", 2, 0, "successRate 0.912 < 0.99",
     {"successRate": 0.912, "p95LatencyMs": 130.5, "deadLetters": 37}),
]  # fmt: skip


def shot(tab: Tab, name: str) -> None:
    where = os.environ.get("AISVC_CONSOLE_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        tab.page.screenshot(path=str(Path(where) / f"console-{name}.png"), full_page=True)


def seed(store: Store) -> list[int]:
    canary = [
        store.dead_letter(
            "shop", "sentiment", code=500, dest=CANARY,
            error_body=b'{"error":"model failed: RuntimeError","revision":"sentiment-00002"}',
            data={"text": text},
        )[0]
        for text in ("The parcel arrived a week late.", "Support never called back.",
                     "Great value, half the price.")
    ]  # fmt: skip
    store.dead_letter("shop", "fraud", code=503, type_="com.example.payment.authorized",
                      source="/payments", error_body=b"upstream connect error",
                      data={"amount": 912.5, "merchant_category": "electronics"})  # fmt: skip
    store.dead_letter("support", "topic", code=422, type_="dev.aiservice.sentiment.scored",
                      source="/aiservices/shop/sentiment",
                      error_body=b'{"error":"text is required","field":"text"}',
                      data={"label": "negative"})  # fmt: skip
    for i, (at, action, phase, step, weight, reason, metrics) in enumerate(DECISIONS):
        store.audit("shop", "sentiment", {
            "specversion": "1.0", "id": f"tour-{i}",
            "source": "/apis/aiservice.dev/v1alpha1/namespaces/shop/aiservices/sentiment",
            "type": "dev.aiservice.rollout.decision", "time": at,
            "datacontenttype": "application/json",
            "data": {"at": at, "action": action, "phase": phase, "step": step,
                     "weight": weight, "reason": reason, "metrics": metrics,
                     "canary": "v2", "stable": "v1"},
        })  # fmt: skip
    return canary


def test_a_tour_of_an_incident(tab: Tab, store: Store) -> None:
    canary = seed(store)
    page = tab.page
    page.goto(store.url + "/console/")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")
    expect(page.locator("[data-total=unreplayed]").first).to_have_text("5")
    shot(tab, "overview")

    page.goto(store.url + "/console/dead-letters?namespace=shop&name=sentiment&state=pending")
    assert page.locator("#dead-letters tbody tr").count() == 3
    page.goto(f"{store.url}/console/dead-letters/{canary[0]}")
    assert page.inner_text("#error-dest") == CANARY
    assert "sentiment-00002" in page.inner_text("#attributes")  # the revision, from the body
    shot(tab, "dead-letter")

    page.goto(store.url + "/console/dead-letters?namespace=shop&name=sentiment")
    page.check("[data-select-all]")
    page.click("#replay-selected")
    expect(page.locator("#job [data-job=state]")).to_have_text("done")
    assert page.inner_text("#job [data-job=summary]") == "3 replayed, 0 failed"
    shot(tab, "dead-letters")

    page.goto(store.url + "/console/rollouts/shop/sentiment")
    assert page.locator("#decisions tbody tr").count() == len(DECISIONS)
    shot(tab, "rollout")
    assert tab.csp_violations() == [] and tab.errors == []
