"""The sentiment function on the real MiniLM encoder and the shipped v1/v2 heads.

Model-level tests call the function's hooks; the HTTP tests serve it with the real
runtime on 127.0.0.1. MiniLM is loaded once per process (``shared_encoder``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch
from aiservice_functions.cloudevents_http import CloudEvent, make_event
from aiservice_functions.models import uri
from aiservice_functions.models.text_input import MAX_TEXT_CHARS
from aiservice_functions.runtime.app import create_app
from aiservice_functions.runtime.function import Rejected, load_entrypoint
from aiservice_functions.sentiment import data
from aiservice_functions.sentiment.head import HeadFileError, SentimentHead
from aiservice_functions.sentiment.hooks import DEFAULT_MODEL_URI, decode, function
from aiservice_functions.sentiment.model import SentimentModel

from tests.support.runtime import config_for, post_binary, post_structured, serving, wait_ready

HEAD_URIS = {
    "v1": "pkg://aiservice_functions.sentiment/models/head-v1.pt",
    "v2": "pkg://aiservice_functions.sentiment/models/head-v2.pt",
}

OBVIOUS = [
    ("I absolutely love this, best thing I ever bought!", "positive"),
    ("Great value for the price, my kids adore it.", "positive"),
    ("Terrible quality, it broke after two days and support ignored me.", "negative"),
    ("The hotel was dirty and the staff were rude.", "negative"),
]


@pytest.fixture(scope="module")
def models() -> dict[str, SentimentModel]:
    """Both shipped versions, resolved by URI and loaded as the runtime does (one MiniLM)."""
    loaded = {}
    for version, model_uri in HEAD_URIS.items():
        resolved = uri.resolve(model_uri)
        loaded[version] = function.load(resolved.path, version)
    return loaded


def event(payload: object) -> CloudEvent:
    return make_event(
        {"id": "1", "source": "/test", "type": "com.example.review", "specversion": "1.0"},
        payload,
    )


def test_the_entrypoint_is_the_sentiment_function_with_batching_on() -> None:
    loaded = load_entrypoint("aiservice_functions.sentiment")
    assert loaded is function
    assert loaded.batching.enabled and loaded.batching.max_size >= 8
    assert loaded.default_model_uri == DEFAULT_MODEL_URI
    assert uri.resolve(DEFAULT_MODEL_URI).path.name == "head-v2.pt"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_obvious_reviews_get_the_obvious_label(
    models: dict[str, SentimentModel], version: str
) -> None:
    replies = function.infer(models[version], [text for text, _ in OBVIOUS])
    assert [r["label"] for r in replies] == [label for _, label in OBVIOUS]
    for reply, (text, _) in zip(replies, OBVIOUS, strict=True):
        assert set(reply) == {"label", "score", "text"}
        assert reply["text"] == text  # carried on for the next stage of a pipeline
        assert isinstance(reply["score"], float)
        assert 0.5 <= reply["score"] <= 1.0


def test_hand_written_reviews_are_mostly_right(models: dict[str, SentimentModel]) -> None:
    """Natural sentences, unlike the generated training data; v2 must do at least as well."""
    examples = data.hand_written_set()
    correct = {}
    for version, model in models.items():
        replies = function.infer(model, [e.text for e in examples])
        correct[version] = sum(
            r["label"] == e.label for r, e in zip(replies, examples, strict=True)
        )
    assert correct["v2"] >= 0.8 * len(examples), correct
    assert correct["v2"] >= correct["v1"], correct


def test_v2_is_measurably_better_than_v1_on_held_out_reviews(
    models: dict[str, SentimentModel],
) -> None:
    examples = data.held_out_set(400)
    texts = [e.text for e in examples]
    expected = torch.tensor([data.LABELS.index(e.label) for e in examples])
    # Both versions share the encoder: embed once, score with each head.
    encoder = models["v1"].encoder
    assert models["v2"].encoder is encoder
    embeddings = torch.cat([encoder.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    accuracy = {}
    for version, model in models.items():
        with torch.inference_mode():
            predicted = model.head(embeddings).argmax(dim=1)
        accuracy[version] = float((predicted == expected).float().mean())
        # The score written into the head file by the training script is the real one.
        assert accuracy[version] == pytest.approx(
            model.head.info["held_out_accuracy"], abs=2 / len(examples)
        )
        assert model.head.info["version"] == version
    assert accuracy["v2"] >= accuracy["v1"] + 0.05, accuracy
    assert models["v1"].head.info["train_size"] < models["v2"].head.info["train_size"]


def test_a_batch_gives_the_same_answers_as_one_by_one(
    models: dict[str, SentimentModel],
) -> None:
    texts = [e.text for e in data.hand_written_set()[::3]] + ["ok", "Love it! 😍🎉", "A" * 3000]
    batched = function.infer(models["v2"], texts)
    single = [function.infer(models["v2"], [t])[0] for t in texts]
    assert [b["label"] for b in batched] == [s["label"] for s in single]
    for b, s in zip(batched, single, strict=True):
        assert b["score"] == pytest.approx(s["score"], abs=1e-4)


def test_unicode_and_emoji_are_scored_not_refused(models: dict[str, SentimentModel]) -> None:
    texts = [
        "Love it! 😍🎉",
        "😡😡 worst purchase ever",
        "Ужасно, не покупайте",
        "素晴らしい",
        "🙂",
    ]
    for text in texts:
        assert decode(event({"text": text})) == text
    replies = function.infer(models["v2"], texts)
    assert [r["label"] for r in replies[:2]] == ["positive", "negative"]
    assert all(r["label"] in ("positive", "negative") and 0.5 <= r["score"] <= 1 for r in replies)


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        ({"text": ""}, "text", "empty"),
        ({"text": "   \n\t"}, "text", "empty"),
        ({}, "text", 'no "text"'),
        ({"text": 42}, "text", "must be a string, got number"),
        ({"text": None}, "text", "must be a string, got null"),
        ({"text": ["a"]}, "text", "must be a string, got array"),
        ("just a string", "data", "got string"),
        (None, "data", "got null"),
        ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "text", "at most"),
        ({"text": "ok \ud83d"}, "text", "lone surrogate (U+D83D at character 3)"),
    ],
)
def test_bad_payloads_are_rejected_with_a_4xx_naming_the_field(
    payload: object, field: str, reason: str
) -> None:
    with pytest.raises(Rejected) as caught:
        decode(event(payload))
    assert caught.value.status == 422
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_a_file_that_is_not_a_sentiment_head_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(HeadFileError, match="not a sentiment head"):
        SentimentHead.load(other)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(HeadFileError, match="not a loadable torch file"):
        SentimentHead.load(garbage)


def test_training_data_is_deterministic_and_held_out_vocabulary_is_unseen() -> None:
    assert data.train_set(200) == data.train_set(200)
    train_text = " ".join(e.text.lower() for e in data.train_set(1600))
    unseen = [
        w
        for w in data.vocabulary(held_out=True)
        if re.search(rf"\b{re.escape(w.lower())}\b", train_text)
    ]
    assert unseen == []
    held = data.held_out_set(400)
    assert sum(e.label == "positive" for e in held) == 200


# --- served by the runtime over real HTTP -----------------------------------------------


@pytest.fixture(scope="module")
def served_v1(models: dict[str, SentimentModel]) -> Iterator[str]:
    """v1 behind the runtime, batching on (the function's defaults), on a free port."""
    config = config_for(
        function,
        env={"AISVC_MODEL_URI": HEAD_URIS["v1"], "AISVC_MODEL_VERSION": "v1"},
    )
    with serving(create_app(function, config)) as base:
        wait_ready(base)
        yield base


def test_served_reply_carries_the_label_and_the_model_version(served_v1: str) -> None:
    text = "I absolutely love this, best thing I ever bought!"
    response = post_binary(served_v1, {"text": text})
    assert response.status_code == 200, response.text
    assert response.headers["ce-modelversion"] == "v1"
    assert response.json()["label"] == "positive"
    structured = post_structured(served_v1, {"text": text})
    assert structured.status_code == 200, structured.text
    assert structured.json()["data"] == response.json()


def test_served_empty_text_is_422_naming_the_field(served_v1: str) -> None:
    response = post_binary(served_v1, {"text": "  "})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "text"
    assert "empty" in body["error"]
    assert post_binary(served_v1, b"not json").status_code == 400


def test_served_lone_surrogate_is_422_not_a_tokenizer_crash(served_v1: str) -> None:
    response = post_binary(served_v1, b'{"text": "\\ud83d"}')
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "text"
    assert "lone surrogate" in response.json()["error"]


def test_concurrent_events_are_answered_as_one_by_one(
    served_v1: str, models: dict[str, SentimentModel]
) -> None:
    """Concurrent events share forward passes; each still gets its own answer."""
    texts = [e.text for e in data.hand_written_set()]
    with requests.Session() as session, ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda t: post_binary(served_v1, {"text": t}, session), texts))
    assert [r.status_code for r in responses] == [200] * len(texts)
    expected = [models["v1"].predict([t])[0] for t in texts]
    got = [json.loads(r.content) for r in responses]
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["score"] == pytest.approx(e["score"], abs=1e-4)
