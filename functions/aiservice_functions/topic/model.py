"""Encoder + topic head as one batched predictor, independent of any HTTP server."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from aiservice_functions.models.minilm import MiniLMEncoder
from aiservice_functions.topic.data import TOPICS
from aiservice_functions.topic.head import TopicHead

MODELS_DIR = Path(__file__).resolve().parent / "models"
"""Where the shipped heads live (``pkg://aiservice_functions.topic/models/...``)."""


class TopicModel:
    """Assigns each text of a batch its most likely topic in one padded forward pass."""

    def __init__(self, head: TopicHead, encoder: MiniLMEncoder | None = None) -> None:
        self.encoder = encoder or MiniLMEncoder()
        # The head is tiny: it joins the encoder's device and stays in fp32.
        self.head = head.to(str(self.encoder.placement.device))

    @classmethod
    def from_file(cls, path: Path, encoder: MiniLMEncoder | None = None) -> TopicModel:
        """Load the head at ``path``; reuse ``encoder`` if given (it is ~90 MB)."""
        return cls(TopicHead.load(path), encoder)

    @torch.inference_mode()
    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        """``[n, len(TOPICS)]`` probabilities in :data:`TOPICS` order."""
        return self.head(self.encoder.encode(texts))

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(topic, probability of that topic) per text, in order."""
        probs = self.probabilities(texts).cpu()  # one copy back per batch
        best = probs.argmax(dim=1)
        return [(TOPICS[int(i)], float(p[int(i)])) for i, p in zip(best, probs, strict=True)]
