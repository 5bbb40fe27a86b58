"""Encoder + head as one batched predictor, independent of any HTTP server.

Kept free of the runtime so the serving benchmark can put the very same predictor
behind another server (KServe) and compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import torch

from aiservice_functions.models.minilm import MiniLMEncoder
from aiservice_functions.sentiment.data import LABELS
from aiservice_functions.sentiment.head import SentimentHead

MODELS_DIR = Path(__file__).resolve().parent / "models"
"""Where the shipped heads live (``pkg://aiservice_functions.sentiment/models/...``)."""


class Prediction(TypedDict):
    """The reply payload of one event."""

    label: str
    score: float


class SentimentModel:
    """Scores a batch of texts in one padded forward pass."""

    def __init__(self, head: SentimentHead, encoder: MiniLMEncoder | None = None) -> None:
        self.encoder = encoder or MiniLMEncoder()
        # The head is tiny: it joins the encoder's device and stays in fp32.
        self.head = head.to(str(self.encoder.placement.device))

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
        probs = self.probabilities(texts).cpu()  # one copy back per batch
        best = probs.argmax(dim=1)
        return [
            Prediction(label=LABELS[int(i)], score=float(p[int(i)]))
            for i, p in zip(best, probs, strict=True)
        ]
