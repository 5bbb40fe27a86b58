"""The decision log end to end on the local executor: the shipped pipeline (sentiment ->
topic, real MiniLM functions, the real event store on SQLite) with the log on; then
`aisvc trace`, `aisvc reprocess` and `aisvc export` as a user runs them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiservice_functions.models import uri
from aiservice_functions.sentiment.hooks import function as sentiment
from aiservice_operator.cli.main import app
from aiservice_operator.local.manifests import load
from aiservice_operator.local.runner import LocalRun, UpOptions, read_state
from typer.testing import CliRunner

from tests.support.local import Background

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REVIEWS = [
    "Absolutely love it, the battery lasts for days.",
    "The parcel arrived two weeks late and the box was crushed.",
    "It is okay I guess, nothing special but it works.",
    "Support never answered my emails, the agent was rude.",
    "Not bad at all, better than I expected for the price.",
    "Meh. The colour is fine, the fit is not.",
]
HEADS = {
    "v1": "pkg://aiservice_functions.sentiment/models/head-v1.pt",
    "v2": "pkg://aiservice_functions.sentiment/models/head-v2.pt",
}


def manifests(directory: Path) -> Path:
    """The pipeline example, its first stage serving v1 with v2 declared beside it."""
    docs = list(yaml.safe_load_all((EXAMPLES / "pipeline.yaml").read_text()))
    stage1 = docs[0]["spec"]
    stage1["models"] = [{"name": "v1", "uri": HEADS["v1"]}, {"name": "v2", "uri": HEADS["v2"]}]
    stage1["traffic"] = {"stable": "v1"}
    path = directory / "pipeline.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    work = tmp_path_factory.mktemp("decision-log")
    options = UpOptions(state_dir=work / ".aisvc", ready_timeout=240)
    bg = Background(LocalRun(load([manifests(work)]), options))
    try:
        bg.call(bg.run.start(), timeout=300)
    except Exception:
        bg.close()
        raise
    yield bg
    bg.close()


def cli(bg: Background, *args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def send_reviews(bg: Background) -> list[str]:
    state = read_state(bg.run.state_dir)
    assert state is not None
    ids = []
    for n, text in enumerate(REVIEWS):
        event_id = f"review-{n}"
        headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/shop/web",
                   "ce-type": "com.example.review.submitted"}  # fmt: skip
        body = {"text": text, "customer": {"email": f"c{n}@example.com"}}
        response = httpx.post(state["brokers"]["shop/default"], headers=headers, json=body)
        assert response.status_code in (200, 202), response.text
        ids.append(event_id)
    return ids


def wait_for(predicate: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("the decision log did not fill in time")
        time.sleep(0.5)


def test_trace_reprocess_export_on_the_pipeline(
    pipeline: Background, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a user runs them: in the directory of `aisvc up`, whose state names the URLs.
    monkeypatch.chdir(pipeline.run.state_dir.parent)
    ids = send_reviews(pipeline)

    def chain(event_id: str) -> dict[str, Any] | None:
        body = json.loads(cli(pipeline, "trace", event_id, "-o", "json"))
        return body if len(body["records"]) == 4 else None

    for event_id in ids:
        body = wait_for(lambda e=event_id: chain(e))
        # input -> sentiment reply (= topic input, one node) -> topic reply.
        (root,) = body["tree"]
        assert root["id"] == event_id and root["seenBy"] == [
            {"aiservice": "shop/sentiment-stage", "role": "input"}
        ]
        (scored,) = root["children"]
        assert scored["modelVersion"] == "v1" and scored["latencyMs"] is not None
        assert {s["aiservice"] for s in scored["seenBy"]} == {
            "shop/sentiment-stage", "shop/topic-stage"
        }  # fmt: skip
        (routed,) = scored["children"]
        assert routed["type"] == "com.example.review.routed" and routed["children"] == []
    tree = cli(pipeline, "trace", ids[0])
    assert "com.example.review.routed" in tree and "model v1" in tree

    # Reprocess with v2: the count of changed labels is what the two heads give directly.
    report = json.loads(
        cli(pipeline, "reprocess", "sentiment-stage", "-n", "shop", "--model", "v2", "-o", "json")
    )
    heads = {v: sentiment.load(uri.resolve(u).path, v) for v, u in HEADS.items()}
    old = [p["label"] for p in heads["v1"].predict(REVIEWS)]
    new = [p["label"] for p in heads["v2"].predict(REVIEWS)]
    assert report["compared"] == len(REVIEWS) and report["errors"] == 0, report
    assert report["changed"] == sum(a != b for a, b in zip(old, new, strict=True))
    confusion = {(c["old"], c["new"]): c["count"] for c in report["confusion"]}
    expected: dict[tuple[str, str], int] = {}
    for a, b in zip(old, new, strict=True):
        expected[(a, b)] = expected.get((a, b), 0) + 1
    assert confusion == expected

    # Export: exactly the sent rows, the redacted path absent.
    out = tmp_path / "sentiment.jsonl"
    cli(pipeline, "export", "sentiment-stage", "-n", "shop", "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ids
    assert [r["input"] for r in rows] == [{"text": t} for t in REVIEWS]
    assert all(r["outcome"] == "answered" and r["modelVersion"] == "v1" for r in rows)
    assert [r["output"]["label"] for r in rows] == old
    assert "@example.com" not in out.read_text()
