"""The ``sentiment`` function: ``{"text": "..."}`` → ``{"label", "score", "text"}``.

``label`` is ``"positive"`` or ``"negative"``; ``score`` is the head's probability of
that label (0.5-1.0); ``text`` is the input, carried on so that a next stage (such as
the ``topic`` function) can work on the review without a lookup. Events are
micro-batched: one padded MiniLM forward pass serves up to 32 concurrent events (128 on
a GPU), which is where this model's throughput comes from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiservice_functions.cloudevents_http import CloudEvent, data_json
from aiservice_functions.models.device import CPU_FP32, Placement
from aiservice_functions.models.minilm import shared_encoder
from aiservice_functions.models.text_input import InputError, text_from
from aiservice_functions.runtime.function import BatchDefaults, Function, Rejected
from aiservice_functions.sentiment.model import SentimentModel

DEFAULT_MODEL_URI = "pkg://aiservice_functions.sentiment/models/head-v2.pt"


def load(path: Path, version: str) -> SentimentModel:
    """Build the predictor from a head file; the encoder ships with the image."""
    return load_on_device(path, version, CPU_FP32)


def load_on_device(path: Path, version: str, placement: Placement) -> SentimentModel:
    """:func:`load` with the encoder and head on ``placement``'s device and precision."""
    return SentimentModel.from_file(path, encoder=shared_encoder(placement))


def decode(event: CloudEvent) -> str:
    """The text of one event; a payload that is not ``{"text": "..."}`` is 422."""
    try:
        return text_from(data_json(event))
    except InputError as err:
        raise Rejected(err.reason, status=422, field=err.field) from None


def infer(model: SentimentModel, texts: Sequence[str]) -> list[dict[str, Any]]:
    """One forward pass for the whole batch, padded to its longest text."""
    return [{**p, "text": t} for p, t in zip(model.predict(texts), texts, strict=True)]


function = Function(
    name="sentiment",
    load=load,
    load_on_device=load_on_device,
    decode=decode,
    infer=infer,
    default_model_uri=DEFAULT_MODEL_URI,
    batching=BatchDefaults(enabled=True, max_size=32, max_wait_ms=5.0, cuda_max_size=128),
)
