"""The sentiment classification head: one ``Linear(384, 2)`` on MiniLM embeddings.

A head file is a plain ``torch.save`` dict of tensors, strings and numbers, loaded with
``weights_only=True`` so a model file cannot run code. It records which encoder it was
trained on, its label order, and how it was trained and scored, so a version can be
explained without the training run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aiservice_functions.sentiment.data import LABELS
from aiservice_functions.sentiment.encoder import EMBEDDING_DIM

FORMAT = "aiservice.sentiment-head/1"
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class HeadFileError(ValueError):
    """The file is not a sentiment head this code can serve."""


class SentimentHead(torch.nn.Module):
    """Logistic regression over the two labels in :data:`LABELS` order."""

    def __init__(self, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(EMBEDDING_DIM, len(LABELS))
        self.info: dict[str, Any] = dict(info or {})

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Class probabilities, ``[n, 2]``."""
        return torch.softmax(self.linear(embeddings), dim=-1)

    def save(self, path: Path) -> None:
        """Write the head and its metadata to ``path``."""
        torch.save(
            {
                "format": FORMAT,
                "encoder": ENCODER_NAME,
                "labels": list(LABELS),
                "state_dict": {k: v.detach().clone() for k, v in self.state_dict().items()},
                "info": self.info,
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> SentimentHead:
        """Read a head written by :meth:`save`; reject anything else with a reason."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise HeadFileError(f"{path}: not a loadable torch file: {exc}") from exc
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise HeadFileError(f"{path}: not a sentiment head (expected format {FORMAT!r})")
        if blob.get("encoder") != ENCODER_NAME:
            raise HeadFileError(f"{path}: trained on encoder {blob.get('encoder')!r}")
        if list(blob.get("labels", [])) != list(LABELS):
            raise HeadFileError(f"{path}: label order {blob.get('labels')!r} != {list(LABELS)}")
        head = cls(info=blob.get("info") or {})
        try:
            head.load_state_dict(blob["state_dict"])
        except (KeyError, RuntimeError) as exc:
            raise HeadFileError(f"{path}: bad weights: {exc}") from exc
        return head.eval()
