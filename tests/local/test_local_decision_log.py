"""The decision log end to end on the local executor: the shipped pipeline (sentiment ->
topic, real MiniLM functions, the real event store on SQLite) with the log on; then
`aisvc trace`, `aisvc reprocess` and `aisvc export` as a user runs them."""

from __future__ import annotations

import base64
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
from aiservice_operator.local.runner import LocalRun, UpOptions
from aiservice_operator.local.state_files import read_state
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


def send_reviews(bg: Background, prefix: str = "review") -> list[str]:
    state = read_state(bg.run.state_dir)
    assert state is not None
    ids = []
    for n, text in enumerate(REVIEWS):
        event_id = f"{prefix}-{n}"
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
    rows = [r for r in rows if r["id"] in ids]  # another test may have sent more
    assert [r["id"] for r in rows] == ids
    assert [r["input"] for r in rows] == [{"text": t} for t in REVIEWS]
    assert all(r["outcome"] == "answered" and r["modelVersion"] == "v1" for r in rows)
    assert [r["output"]["label"] for r in rows] == old
    assert "@example.com" not in out.read_text()


def feedback(bg: Background, event_id: str, aiservice: str, decision: str, label: str) -> None:
    """A label for one decision, as a labelling tool sends it: to the Broker, naming the
    AIService it is for in the ``aiservice`` extension."""
    state = read_state(bg.run.state_dir)
    assert state is not None
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/labelling/ui",
               "ce-type": "dev.aiservice.feedback", "ce-aiservice": aiservice}  # fmt: skip
    body = {"decisionId": decision, "label": label}
    response = httpx.post(state["brokers"]["shop/default"], headers=headers, json=body)
    assert response.status_code in (200, 202), response.text


def test_feedback_parquet_and_published_corrections(
    pipeline: Background, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the parquet extra) missing")
    monkeypatch.chdir(pipeline.run.state_dir.parent)
    ids = send_reviews(pipeline, prefix="labelled")

    def scored_of(event_id: str) -> dict[str, Any] | None:
        body = json.loads(cli(pipeline, "trace", event_id, "-o", "json"))
        if len(body["records"]) < 4:
            return None
        (root,) = body["tree"]
        (scored,) = root["children"]
        return dict(scored)

    decisions = [wait_for(lambda e=e: scored_of(e)) for e in ids[:2]]
    # One label for this AIService, one sent for the next stage about the other decision:
    # only the first may label sentiment-stage's rows.
    feedback(pipeline, "label-0", "sentiment-stage", decisions[0]["id"], "negative")
    feedback(pipeline, "label-1", "topic-stage", decisions[1]["id"], "positive")

    def export(*extra: str) -> list[dict[str, Any]]:
        out = tmp_path / "rows.jsonl"
        cli(pipeline, "export", "sentiment-stage", "-n", "shop", "--out", str(out), *extra)
        return [json.loads(line) for line in out.read_text().splitlines()]

    def labelled() -> list[dict[str, Any]] | None:
        rows = export("--with-feedback")
        return rows if any(r["feedbackLabel"] for r in rows) else None

    def topic_feedback() -> list[Any]:
        state = read_state(pipeline.run.state_dir) or {}
        url = f"{state['eventStoreUrl']}/v1/namespaces/shop/aiservices/topic-stage/decisions"
        return list(httpx.get(url, params={"role": "feedback"}).json()["items"])

    # Both labels are stored before the export is judged.
    assert wait_for(topic_feedback)[0]["id"] == "label-1"
    rows = wait_for(labelled)
    labels = {r["decisionId"]: r["feedbackLabel"] for r in rows}
    assert labels[decisions[0]["id"]] == "negative"
    assert labels[decisions[1]["id"]] is None
    assert sum(1 for v in labels.values() if v) == 1

    # Parquet holds the same rows as JSON lines; nested values as JSON text.
    parquet = tmp_path / "rows.parquet"
    cli(pipeline, "export", "sentiment-stage", "-n", "shop", "--format", "parquet",
        "--out", str(parquet))  # fmt: skip
    table = pq.read_table(parquet).to_pylist()
    plain = export()
    assert [r["id"] for r in table] == [r["id"] for r in plain]
    for got, want in zip(table, plain, strict=True):
        assert json.loads(got["input"]) == want["input"]
        assert json.loads(got["output"]) == want["output"]
        assert got["modelVersion"] == want["modelVersion"] and got["outcome"] == want["outcome"]

    # --publish: each changed reply goes back to the Broker naming the one it replaces,
    # and the next stage answers it, so the correction shows in the chain.
    publish = ["reprocess", "sentiment-stage", "-n", "shop", "--model", "v2", "--publish"]
    report = json.loads(cli(pipeline, *publish, "-o", "json"))
    assert report["published"] == report["changed"] > 0, report
    changed = [key.split("#", 1)[1] for key in report["changedInputs"]]

    def corrections(event_id: str) -> list[dict[str, Any]]:
        body = json.loads(cli(pipeline, "trace", event_id, "-o", "json"))
        return [r for r in body["records"] if r.get("corrects")]

    def corrected() -> dict[str, list[dict[str, Any]]] | None:
        found = {e: corrections(e) for e in changed}
        return found if all(found.values()) else None

    for records in wait_for(corrected).values():
        for record in records:
            assert record["modelVersion"] == "v2"
            assert record["corrects"].startswith("/aiservices/shop/sentiment-stage/")


def test_redaction_holds_for_every_encoding_and_poison_is_logged(
    pipeline: Background, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the Broker as a sender could encode it: text/plain, no content type,
    data_base64, data as a JSON string; the pipeline redacts ``$.customer``. A lone
    surrogate is a 422 from the function (dead-lettered as such) and still logged; a
    latency of ``inf`` never reaches ``aisvc trace -o json``."""
    monkeypatch.chdir(pipeline.run.state_dir.parent)
    state = read_state(pipeline.run.state_dir)
    assert state is not None
    broker, store = state["brokers"]["shop/default"], state["eventStoreUrl"]
    review = json.dumps({"text": "Great product", "customer": {"email": "leak@example.com"}})
    attrs = {"specversion": "1.0", "source": "/shop/web", "type": "com.example.review.submitted"}
    binary = {f"ce-{k}": v for k, v in attrs.items()}
    structured = {"content-type": "application/cloudevents+json"}
    sends = {
        "enc-plain": ({**binary, "ce-id": "enc-plain", "content-type": "text/plain"}, review),
        "enc-none": ({**binary, "ce-id": "enc-none", "ce-aisvclatencyms": "inf"}, review),
        "enc-b64": (structured, json.dumps({**attrs, "id": "enc-b64",
                    "data_base64": base64.b64encode(review.encode()).decode()})),
        "enc-str": (structured, json.dumps({**attrs, "id": "enc-str", "data": review})),
    }  # fmt: skip
    # The lone surrogate goes to the second stage, so no other test's export meets it.
    poison = {**binary, "ce-id": "enc-surrogate", "ce-type": "com.example.review.scored",
              "ce-source": "/shop/imports/poison", "content-type": "application/json"}  # fmt: skip
    for headers, body in [*sends.values(), (poison, '{"text": "\\ud83d"}')]:
        response = httpx.post(broker, headers=headers, content=body.encode())
        assert response.status_code in (200, 202), response.text

    def logged(name: str, ids: set[str]) -> list[dict[str, Any]] | None:
        url = f"{store}/v1/namespaces/shop/aiservices/{name}/decisions"
        items = httpx.get(url, params={"role": "input", "limit": 5000}).json()["items"]
        found = [i for i in items if i["id"] in ids]
        return found if len(found) == len(ids) else None

    records = {r["id"]: r for r in wait_for(lambda: logged("sentiment-stage", set(sends)))}
    assert "leak@example.com" not in json.dumps(records)
    for event_id in ("enc-plain", "enc-none", "enc-b64", "enc-str"):
        assert records[event_id]["data"] == {"text": "Great product"}, event_id
    assert records["enc-none"]["latencyMs"] is None
    (surrogate,) = wait_for(lambda: logged("topic-stage", {"enc-surrogate"}))
    assert surrogate["data"] == {"text": "\ud83d"}

    def dead_letter() -> list[dict[str, Any]]:
        items = httpx.get(f"{store}/v1/events", params={"kind": "dead-letter"}).json()["items"]
        return [i for i in items if i["id"] == "enc-surrogate"]

    assert wait_for(dead_letter)[0]["errorCode"] == 422
    trace = cli(pipeline, "trace", "enc-none", "-o", "json")
    json.loads(trace, parse_constant=lambda name: pytest.fail(f"invalid JSON: {name}"))
    out = tmp_path / "export.jsonl"
    cli(pipeline, "export", "sentiment-stage", "-n", "shop", "--out", str(out))
    assert "leak@example.com" not in out.read_text()
