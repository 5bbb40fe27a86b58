"""The topic function on the real MiniLM encoder and the shipped v1/v2 heads.

MiniLM is loaded once per process and shared with the sentiment tests
(``aiservice_functions.models.minilm.shared_encoder``); the HTTP test serves the
function with the real runtime on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from aiservice_functions.cloudevents_http import CloudEvent, make_event
from aiservice_functions.models import uri
from aiservice_functions.runtime.app import create_app
from aiservice_functions.runtime.function import Rejected, load_entrypoint
from aiservice_functions.topic import data
from aiservice_functions.topic.head import HeadFileError, TopicHead
from aiservice_functions.topic.hooks import DEFAULT_MODEL_URI, decode, function
from aiservice_functions.topic.model import TopicModel
from aiservice_functions.topic.routing import ScoredReview, route

from tests.support.runtime import config_for, post_binary, post_structured, serving, wait_ready

HEAD_URIS = {
    "v1": "pkg://aiservice_functions.topic/models/topic-v1.pt",
    "v2": "pkg://aiservice_functions.topic/models/topic-v2.pt",
}

CLEAR = [
    ("My package arrived two weeks late and the box was torn open.", "shipping"),
    ("The handle snapped off after one use, really cheap materials.", "quality"),
    ("Far too expensive, I found the same thing for half the price.", "pricing"),
    ("The support agent was rude and never called me back.", "service"),
    ("The app is confusing and the setup instructions are useless.", "usability"),
]


@pytest.fixture(scope="module")
def models() -> dict[str, TopicModel]:
    """Both shipped versions, resolved by URI and loaded as the runtime does (one MiniLM)."""
    return {v: function.load(uri.resolve(u).path, v) for v, u in HEAD_URIS.items()}


def event(payload: object) -> CloudEvent:
    return make_event(
        {"id": "1", "source": "/test", "type": "com.example.review.scored", "specversion": "1.0"},
        payload,
    )


def test_the_entrypoint_is_the_topic_function_with_batching_on() -> None:
    loaded = load_entrypoint("aiservice_functions.topic")
    assert loaded is function
    assert loaded.batching.enabled and loaded.batching.max_size >= 8
    assert uri.resolve(DEFAULT_MODEL_URI).path.name == "topic-v2.pt"
    for model_uri in HEAD_URIS.values():  # shipped small, inside the package
        assert uri.resolve(model_uri).path.stat().st_size < 20_000


def test_clear_reviews_get_the_obvious_topic(models: dict[str, TopicModel]) -> None:
    reviews = [ScoredReview(text, "negative", 0.9) for text, _ in CLEAR]
    replies = function.infer(models["v2"], reviews)
    assert [r["topic"] for r in replies] == [topic for _, topic in CLEAR]
    for reply, (text, _) in zip(replies, CLEAR, strict=True):
        assert reply["text"] == text
        assert reply["sentiment"] == "negative" and reply["sentiment_score"] == 0.9
        assert isinstance(reply["confidence"], float) and 0.2 <= reply["confidence"] <= 1.0
    service = replies[3]
    assert service["route"] == "support-urgent", service


def test_hand_written_reviews_are_mostly_right(models: dict[str, TopicModel]) -> None:
    examples = data.hand_written_set()
    for version, model in models.items():
        predicted = [topic for topic, _ in model.predict([e.text for e in examples])]
        correct = sum(p == e.topic for p, e in zip(predicted, examples, strict=True))
        assert correct >= 0.85 * len(examples), (version, predicted)


def test_v2_is_measurably_better_than_v1_on_held_out_reviews(
    models: dict[str, TopicModel],
) -> None:
    examples = data.held_out_set(500)
    texts = [e.text for e in examples]
    # Both heads share the encoder: embed once, score with each head.
    encoder = models["v1"].encoder
    assert encoder is models["v2"].encoder
    x = torch.cat([encoder.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    y = torch.tensor([data.TOPICS.index(e.topic) for e in examples])
    accuracy = {}
    for version, model in models.items():
        with torch.inference_mode():
            accuracy[version] = float((model.head(x).argmax(dim=1) == y).float().mean())
        # The score the training script wrote into the head file is the real one.
        assert accuracy[version] == pytest.approx(
            model.head.info["held_out_accuracy"], abs=2 / len(examples)
        )
        assert model.head.info["version"] == version
    assert accuracy["v2"] >= accuracy["v1"] + 0.1, accuracy
    assert accuracy["v2"] >= 0.9, accuracy


def test_a_batch_gives_the_same_answers_as_one_by_one(models: dict[str, TopicModel]) -> None:
    reviews = [ScoredReview(e.text, "positive") for e in data.hand_written_set()[::3]]
    reviews += [
        ScoredReview("ok"),
        ScoredReview("Late 📦😡", "negative"),
        ScoredReview("The parcel came late. " * 12),
    ]
    batched = function.infer(models["v2"], reviews)
    single = [function.infer(models["v2"], [r])[0] for r in reviews]
    for b, s in zip(batched, single, strict=True):
        assert {k: v for k, v in b.items() if k != "confidence"} == {
            k: v for k, v in s.items() if k != "confidence"
        }
        assert b["confidence"] == pytest.approx(s["confidence"], abs=1e-4)


def test_unicode_and_emoji_are_routed_not_refused(models: dict[str, TopicModel]) -> None:
    texts = ["Die Lieferung kam zu spät 📦", "配送が遅れた", "Le prix est trop élevé 💸", "🙂"]
    reviews = [decode(event({"text": t, "label": "negative", "score": 0.8})) for t in texts]
    assert [r.text for r in reviews] == texts
    replies = function.infer(models["v2"], reviews)
    assert [r["text"] for r in replies] == texts
    assert all(r["topic"] in data.TOPICS and 0 < r["confidence"] <= 1 for r in replies)


def test_a_sentiment_reply_is_read_as_is() -> None:
    """The previous stage's reply data is this function's input, unchanged."""
    review = decode(event({"label": "negative", "score": 0.97, "text": "It broke."}))
    assert review == ScoredReview("It broke.", "negative", 0.97)
    assert decode(event({"text": "Only text"})) == ScoredReview("Only text")


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        ({"label": "negative", "score": 0.9}, "text", 'no "text"'),
        ({"text": "  "}, "text", "empty"),
        ({"text": 7}, "text", "must be a string"),
        ({"text": "ok", "label": 3}, "label", "non-empty string"),
        ({"text": "ok", "label": ""}, "label", "non-empty string"),
        ({"text": "ok", "score": "high"}, "score", "number"),
        ({"text": "ok", "score": True}, "score", "number"),
        ({"text": "ok", "score": 1.5}, "score", "between 0 and 1"),
        (["text"], "data", "got array"),
        ({"text": "\udfff"}, "text", "lone surrogate (U+DFFF at character 0)"),
    ],
)
def test_bad_payloads_are_422_naming_the_field(payload: object, field: str, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        decode(event(payload))
    assert caught.value.status == 422
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_routes_follow_topic_sentiment_and_confidence() -> None:
    assert route("service", 0.9, "negative") == "support-urgent"
    assert route("shipping", 0.9, "negative") == "logistics"
    assert route("service", 0.9, "positive") == "testimonials"
    assert route("pricing", 0.9, None) == "pricing-inbox"
    assert route("service", 0.2, "negative") == "triage"


def test_a_file_that_is_not_a_topic_head_is_refused(tmp_path: Path) -> None:
    sentiment_head = uri.resolve("pkg://aiservice_functions.sentiment/models/head-v1.pt").path
    with pytest.raises(HeadFileError, match="not a topic head"):
        TopicHead.load(sentiment_head)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(HeadFileError, match="not a loadable torch file"):
        TopicHead.load(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(HeadFileError):
        TopicHead.load(other)


def test_training_data_is_deterministic_and_held_out_vocabulary_is_unseen() -> None:
    assert data.train_set(100) == data.train_set(100)
    train = data.train_set(1500)
    train_text = " ".join(e.text.lower() for e in train)
    unseen = [
        w
        for w in data.vocabulary(held_out=True)
        if re.search(rf"\b{re.escape(w.lower())}\b", train_text)
    ]
    assert unseen == []
    for topic in data.TOPICS:  # balanced: the topic cannot be read off the sentiment
        of_topic = [e for e in train if e.topic == topic]
        assert len(of_topic) == 300
        assert sum(e.positive for e in of_topic) == 150


# --- served by the runtime over real HTTP -----------------------------------------------


@pytest.fixture(scope="module")
def served_v2(models: dict[str, TopicModel]) -> Iterator[str]:
    """v2 behind the runtime with the function's own (batching) defaults, on a free port."""
    config = config_for(
        function, env={"AISVC_MODEL_URI": HEAD_URIS["v2"], "AISVC_MODEL_VERSION": "v2"}
    )
    with serving(create_app(function, config)) as base:
        wait_ready(base)
        yield base


def test_served_reply_routes_a_scored_review(served_v2: str) -> None:
    scored = {"label": "negative", "score": 0.98, "text": "Support hung up on me twice."}
    response = post_binary(served_v2, scored)
    assert response.status_code == 200, response.text
    assert response.headers["ce-modelversion"] == "v2"
    body = response.json()
    assert body["topic"] == "service" and body["route"] == "support-urgent"
    assert body["text"] == scored["text"] and body["sentiment"] == "negative"
    structured = post_structured(served_v2, scored)
    assert structured.status_code == 200, structured.text
    assert structured.json()["data"] == body
    missing = post_binary(served_v2, {"label": "negative"})
    assert missing.status_code == 422
    assert missing.json()["field"] == "text"


def test_sentiment_replies_chain_into_topic(models: dict[str, TopicModel]) -> None:
    """Stage 1's reply data, as the broker carries it, is a valid stage 2 input."""
    from aiservice_functions.sentiment.hooks import function as sentiment

    sentiment_model = sentiment.load(
        uri.resolve("pkg://aiservice_functions.sentiment/models/head-v2.pt").path, "v2"
    )
    texts = [text for text, _ in CLEAR]
    scored = sentiment.infer(sentiment_model, texts)
    reviews = [decode(event(reply)) for reply in scored]
    routed = function.infer(models["v2"], reviews)
    assert [r["text"] for r in routed] == texts
    assert [r["sentiment"] for r in routed] == [s["label"] for s in scored]
    assert [r["topic"] for r in routed] == [topic for _, topic in CLEAR]
