"""The ``topic`` function: a scored review → its topic, sentiment and route.

Reply data: ``{"topic", "confidence", "sentiment", "text", "route"}`` (plus
``"sentiment_score"`` when the input had a ``score``). Events are micro-batched like
sentiment's: one padded MiniLM forward pass serves up to 32 concurrent events (128 on a GPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiservice_functions.cloudevents_http import CloudEvent, data_json
from aiservice_functions.models.device import CPU_FP32, Placement
from aiservice_functions.models.minilm import shared_encoder
from aiservice_functions.models.text_input import InputError
from aiservice_functions.runtime.function import BatchDefaults, Function, Rejected
from aiservice_functions.topic.model import TopicModel
from aiservice_functions.topic.routing import ScoredReview, review_from, route

DEFAULT_MODEL_URI = "pkg://aiservice_functions.topic/models/topic-v2.pt"


def load(path: Path, version: str) -> TopicModel:
    """Build the predictor from a head file; MiniLM is shared with sentiment in one process."""
    return load_on_device(path, version, CPU_FP32)


def load_on_device(path: Path, version: str, placement: Placement) -> TopicModel:
    """:func:`load` with the encoder and head on ``placement``'s device and precision."""
    return TopicModel.from_file(path, encoder=shared_encoder(placement))


def decode(event: CloudEvent) -> ScoredReview:
    """The review of one event; a payload without a usable ``text`` is 422."""
    try:
        return review_from(data_json(event))
    except InputError as err:
        raise Rejected(err.reason, status=422, field=err.field) from None


def infer(model: TopicModel, reviews: Sequence[ScoredReview]) -> list[dict[str, Any]]:
    """One forward pass for the whole batch; routing is per review."""
    replies: list[dict[str, Any]] = []
    predictions = model.predict([r.text for r in reviews])
    for review, (topic, confidence) in zip(reviews, predictions, strict=True):
        reply: dict[str, Any] = {
            "topic": topic,
            "confidence": round(confidence, 6),
            "sentiment": review.sentiment,
            "text": review.text,
            "route": route(topic, confidence, review.sentiment),
        }
        if review.sentiment_score is not None:
            reply["sentiment_score"] = review.sentiment_score
        replies.append(reply)
    return replies


function = Function(
    name="topic",
    load=load,
    load_on_device=load_on_device,
    decode=decode,
    infer=infer,
    default_model_uri=DEFAULT_MODEL_URI,
    batching=BatchDefaults(enabled=True, max_size=32, max_wait_ms=5.0, cuda_max_size=128),
)
