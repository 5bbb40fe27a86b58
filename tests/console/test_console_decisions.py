"""The console's decision pages over real HTTP against a real event store: a chain found
by any of its ids drawn as a timeline, an AIService's records and runs, a reprocessing run
side by side, and hostile record data shown only as text."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.console.test_console_http import TOKEN, serving, signed_in
from tests.event_store.test_es_decisions import SINK, TRACE, pipeline, post

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def reprocess(base: str, label: str) -> None:
    headers = {
        "ce-specversion": "1.0", "ce-id": "n-1", "ce-type": "com.example.review.scored",
        "ce-source": "/aiservices/shop/sentiment/reprocess", "ce-causationid": "/shop/web#r-1",
        "ce-modelversion": "v2", "content-type": "application/json",
        "Authorization": f"Bearer {TOKEN}",
    }  # fmt: skip
    url = base + SINK.format(name="sentiment", role="reprocessed") + "?data=true&run=run-7"
    response = httpx.post(url, headers=headers, content=json.dumps({"label": label}).encode())
    assert response.status_code == 201, response.text


def test_a_chain_is_found_by_any_id_and_drawn_through_its_stages(tmp_path: Path) -> None:
    with serving(tmp_path / "d.db", token=TOKEN) as base, httpx.Client() as raw:
        pipeline(raw, base)
        client, _ = signed_in(base)
        with closing(client):
            listing = client.get("/console/decisions")
            assert listing.status_code == 200
            assert 'href="/console/decisions/shop/sentiment"' in listing.text
            assert 'href="/console/decisions/shop/topic"' in listing.text
            for query in ("t-1", "/shop/web#r-1", TRACE):
                page = client.get("/console/decisions", params={"q": query})
                assert page.status_code == 200
                assert page.text.count('class="card chain"') == 1
                # four records, in time order, each with its model version where it has one
                roles = [part.split('"')[0] for part in page.text.split('data-role="')[1:]]
                assert roles == ["input", "reply", "input", "reply"]
                assert page.text.count("<rect ") == 4
                assert "reply · v1" in page.text and "reply · v2" in page.text
                assert "12.5" in page.text  # the first stage's model latency
            none = client.get("/console/decisions", params={"q": "no-such-id"})
            assert none.status_code == 200 and 'id="no-chain"' in none.text
            too_long = client.get("/console/decisions", params={"q": "x" * 600})
            assert too_long.status_code == 400 and "at most 512" in too_long.text


def test_a_reprocessing_run_is_shown_beside_the_answers_it_re_made(tmp_path: Path) -> None:
    with serving(tmp_path / "d.db", token=TOKEN) as base, httpx.Client() as raw:
        pipeline(raw, base)
        reprocess(base, "negative")
        client, _ = signed_in(base)
        with closing(client):
            service = client.get("/console/decisions/shop/sentiment")
            assert service.status_code == 200
            assert 'href="/console/decisions/shop/sentiment/runs/run-7"' in service.text
            assert service.text.count("<tr data-seq=") == 3  # input, reply, reprocessed
            run = client.get("/console/decisions/shop/sentiment/runs/run-7")
            assert run.status_code == 200
            assert "1 answer re-made, 1 different from the original" in run.text
            cells = run.text.split('class="changed"')[1]
            assert cells.index("positive") < cells.index("negative")  # old, then new
            empty = client.get("/console/decisions/shop/sentiment/runs/run-0")
            assert "0 answers re-made" in empty.text


def test_hostile_record_data_is_rendered_as_text(tmp_path: Path) -> None:
    with serving(tmp_path / "d.db", token=TOKEN) as base, httpx.Client() as raw:
        evil = {"text": HOSTILE, HOSTILE: 1}
        assert post(raw, base, "sentiment", "inputs", evil, id=HOSTILE).status_code == 201
        client, _ = signed_in(base)
        with closing(client):
            for path in (
                "/console/decisions?q=" + quote(HOSTILE),
                "/console/decisions/shop/sentiment",
            ):
                page = client.get(path)
                assert page.status_code == 200
                assert "<script>alert" not in page.text and "<img src=x" not in page.text
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_an_input_sent_by_reference_shows_its_reference(tmp_path: Path) -> None:
    """Claim-check: the store has the reference and digest, never the photo; the chain shows
    them where the data would be."""
    digest = "ab" * 32
    with serving(tmp_path / "d.db", token=TOKEN) as base, httpx.Client() as raw:
        url = f"{base}{SINK.format(name='digits', role='inputs')}?data=true"
        headers = {
            "ce-specversion": "1.0", "ce-type": "com.example.digit.photographed",
            "ce-source": "/shop/app", "ce-id": "photo-1", "content-type": "image/png",
            "ce-dataref": "s3://photos/uploads/photo-1", "ce-datasha256": digest,
        }  # fmt: skip
        assert raw.post(url, headers=headers).status_code == 201
        client, _ = signed_in(base)
        with closing(client):
            page = client.get("/console/decisions", params={"q": "photo-1"})
    assert page.status_code == 200
    assert "dataref: s3://photos/uploads/photo-1" in page.text
    assert f"datasha256: {digest}" in page.text


def test_the_decision_pages_need_a_signed_in_session(tmp_path: Path) -> None:
    with serving(tmp_path / "d.db", token=TOKEN) as base, httpx.Client(base_url=base) as client:
        for path in ("/console/decisions", "/console/decisions/shop/sentiment/runs/r"):
            page = client.get(path)
            assert page.status_code == 302 and page.headers["location"].startswith("/console/login")
