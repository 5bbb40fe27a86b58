"""The topic classification head: one ``Linear(384, 5)`` on MiniLM embeddings.

A head file is a plain ``torch.save`` dict of tensors, strings and numbers, loaded with
``weights_only=True`` so a model file cannot run code. It records the encoder it was
trained on, its topic order, and how it was trained and scored, so a version can be
explained without the training run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aiservice_functions.sentiment.encoder import EMBEDDING_DIM
from aiservice_functions.topic.data import TOPICS

FORMAT = "aiservice.topic-head/1"
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class HeadFileError(ValueError):
    """The file is not a topic head this code can serve."""


class TopicHead(torch.nn.Module):
    """Multinomial logistic regression over :data:`TOPICS`, in that order."""

    def __init__(self, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(EMBEDDING_DIM, len(TOPICS))
        self.info: dict[str, Any] = dict(info or {})

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Topic probabilities, ``[n, len(TOPICS)]``."""
        return torch.softmax(self.linear(embeddings), dim=-1)

    def save(self, path: Path) -> None:
        """Write the head and its metadata to ``path``."""
        torch.save(
            {
                "format": FORMAT,
                "encoder": ENCODER_NAME,
                "topics": list(TOPICS),
                "state_dict": {k: v.detach().clone() for k, v in self.state_dict().items()},
                "info": self.info,
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> TopicHead:
        """Read a head written by :meth:`save`; reject anything else with a reason."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise HeadFileError(f"{path}: not a loadable torch file: {exc}") from exc
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise HeadFileError(f"{path}: not a topic head (expected format {FORMAT!r})")
        if blob.get("encoder") != ENCODER_NAME:
            raise HeadFileError(f"{path}: trained on encoder {blob.get('encoder')!r}")
        if list(blob.get("topics", [])) != list(TOPICS):
            raise HeadFileError(f"{path}: topic order {blob.get('topics')!r} != {list(TOPICS)}")
        head = cls(info=blob.get("info") or {})
        try:
            head.load_state_dict(blob["state_dict"])
        except (KeyError, RuntimeError) as exc:
            raise HeadFileError(f"{path}: bad weights: {exc}") from exc
        return head.eval()
