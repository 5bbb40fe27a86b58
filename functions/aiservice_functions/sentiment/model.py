"""Encoder + head as one batched predictor, independent of any HTTP server.

Kept free of the runtime so the serving benchmark can put the very same predictor
behind another server (KServe) and compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import torch

from aiservice_functions.sentiment.data import LABELS
from aiservice_functions.sentiment.encoder import MiniLMEncoder
from aiservice_functions.sentiment.head import SentimentHead

MODELS_DIR = Path(__file__).resolve().parent / "models"
"""Where the shipped heads live (``pkg://aiservice_functions.sentiment/models/...``)."""

MAX_TEXT_CHARS = 20_000
"""Longer texts are refused: the encoder reads only the first 256 tokens (~1,000-1,500
characters) anyway, and tokenising megabytes would stall the batch for everyone."""


class InputError(ValueError):
    """The event data is not ``{"text": "<non-empty string>"}``; ``field`` names the culprit."""

    def __init__(self, reason: str, field: str = "text") -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def text_from(data: Any) -> str:
    """The text to score from one event's JSON data, or :class:`InputError` saying why not."""
    if not isinstance(data, dict):
        raise InputError(
            f'data must be a JSON object like {{"text": "..."}}, got {_json_type(data)}', "data"
        )
    if "text" not in data:
        raise InputError('data has no "text" field')
    text = data["text"]
    if not isinstance(text, str):
        raise InputError(f'"text" must be a string, got {_json_type(text)}')
    if not text.strip():
        raise InputError('"text" is empty')
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(
            f'"text" has {len(text)} characters; at most {MAX_TEXT_CHARS} are accepted'
        )
    return text


class Prediction(TypedDict):
    """The reply payload of one event."""

    label: str
    score: float


class SentimentModel:
    """Scores a batch of texts in one padded forward pass."""

    def __init__(self, head: SentimentHead, encoder: MiniLMEncoder | None = None) -> None:
        self.encoder = encoder or MiniLMEncoder()
        self.head = head

    @classmethod
    def from_file(cls, path: Path, encoder: MiniLMEncoder | None = None) -> SentimentModel:
        """Load the head at ``path``; reuse ``encoder`` if given (it is ~90 MB)."""
        return cls(SentimentHead.load(path), encoder)

    @torch.inference_mode()
    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        """``[n, 2]`` probabilities in :data:`LABELS` order."""
        return self.head(self.encoder.encode(texts))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label and confidence (probability of that label) per text, in order."""
        probs = self.probabilities(texts)
        best = probs.argmax(dim=1)
        return [
            Prediction(label=LABELS[int(i)], score=float(p[int(i)]))
            for i, p in zip(best, probs, strict=True)
        ]
