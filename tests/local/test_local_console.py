"""The console's whole story on `aisvc up`, in a real browser: an event fails, the user
opens the console URL the run prints, finds the dead letter, reads why it failed, fixes the
function, replays it and sees it answered.

Everything is real: the local broker, the function process (`flaky_fn`, failing until its
"fix" file exists), the event store process `aisvc up` starts, and headless Chromium.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiservice_operator.local.manifests import load
from aiservice_operator.local.runner import LocalRun, UpOptions
from aiservice_operator.local.state_files import read_state

from tests.support.browser import Tab
from tests.support.local import (
    Background,
    aiservice,
    model_file,
    sink_trigger,
    start_sink,
    write_manifests,
)

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or, in CI, fails) with the reason
    expect = None


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll until `condition` holds; the bound only stops a broken run from hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def run(tmp_path: Path, function_path: None, browser: Any) -> Iterator[dict[str, Any]]:
    uri, fixed = model_file(tmp_path)
    sink = start_sink()
    manifests = write_manifests(
        tmp_path / "reviews.yaml",
        [
            aiservice("reviews", "test.review", "test.scored", {"v1": uri}),
            sink_trigger("answers", "test.scored", sink.url),
        ],
    )
    options = UpOptions(state_dir=tmp_path / ".aisvc", ready_timeout=60)
    bg = Background(LocalRun(load([manifests]), options))
    bg.call(bg.run.start())
    try:
        yield {"run": bg.run, "sink": sink, "fixed": fixed, "state": read_state(options.state_dir)}
    finally:
        bg.close()
        sink.server.shutdown()


def test_find_a_failed_event_read_why_replay_it_and_see_it_answered(
    run: dict[str, Any], tab: Tab
) -> None:
    state, sink = run["state"], run["sink"]
    console_url = state["consoleUrl"]
    assert console_url == state["eventStoreUrl"] + "/console/"
    event_id = str(uuid.uuid4())
    with httpx.Client(timeout=30) as http:
        sent = http.post(
            state["brokers"]["t/default"],
            headers={"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/shop/reviews",
                     "ce-type": "test.review", "content-type": "application/json"},
            content=json.dumps({"text": "The parcel never came.", "fail": True}),
        )  # fmt: skip
        assert sent.status_code == 202
        stats = state["eventStoreUrl"] + "/v1/stats"
        wait_for(
            lambda: sum(s["deadLetters"] for s in http.get(stats).json()["services"]) == 1,
            "the event's dead letter in the store",
        )

    page = tab.page
    page.goto(console_url)  # a local run needs no token: the store runs unauthenticated
    pending = page.locator("[data-count='t/reviews/unreplayed']")
    assert pending.inner_text() == "1"
    pending.click()
    page.wait_for_url("**/console/dead-letters?**")
    (row,) = page.locator("#dead-letters tbody tr").all()
    row.locator("a").first.click()
    page.wait_for_url("**/console/dead-letters/*")
    assert page.inner_text("#error-code") == "500"
    why = json.loads(page.inner_text("#error-data"))
    assert why["error"] == "model failed: RuntimeError"
    assert event_id in page.inner_text("#attributes")
    if os.environ.get("AISVC_CONSOLE_SCREENSHOTS"):
        page.screenshot(
            path=str(
                Path(os.environ["AISVC_CONSOLE_SCREENSHOTS"]) / "console-local-dead-letter.png"
            ),
            full_page=True,
        )

    run["fixed"].touch()  # the fix: the function stops failing
    page.click("#replay-one")
    expect(page.locator("#job [data-job=state]")).to_have_text("done")
    assert page.inner_text("#job [data-job=summary]") == "1 replayed, 0 failed"
    assert "HTTP 202" in page.inner_text("#job [data-job=results]")  # the broker took it
    expect(page.locator("h1 [data-state]")).to_have_text("replayed")
    # ... and the function answered it: the reply of the replayed event reached the sink.
    wait_for(lambda: any(e["data"]["origin"] == event_id for e in sink.snapshot()), "the answer")
    (answer,) = [e for e in sink.snapshot() if e["data"]["origin"] == event_id]
    assert answer["type"] == "test.scored"
    page.reload()
    assert "replayed (1x)" in page.inner_text("#history")
    page.goto(console_url)
    assert page.locator("[data-count='t/reviews/unreplayed']").inner_text() == "0"
    assert tab.csp_violations() == [] and tab.errors == []
