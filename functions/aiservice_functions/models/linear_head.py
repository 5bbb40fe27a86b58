"""A classification head: one ``Linear`` layer on frozen sentence embeddings.

A head file is a plain ``torch.save`` dict of tensors, strings and numbers, loaded with
``weights_only=True`` so a model file cannot run code. It records which encoder it was
trained on, its class order, and how it was trained and scored, so a version can be
explained without the training run. Each function (sentiment, topic) subclasses
:class:`LinearHead` to name its file format and classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import torch


class HeadFileError(ValueError):
    """The file is not a head of the expected kind that this code can serve."""


class LinearHead(torch.nn.Module):
    """Softmax regression over :attr:`CLASSES`, in that order."""

    KIND: ClassVar[str]
    """What the head classifies, as error messages name it ("sentiment", "topic")."""
    FORMAT: ClassVar[str]
    """The ``format`` value a file of this kind carries."""
    ENCODER_NAME: ClassVar[str]
    """The sentence encoder the head was trained on; a file for another one is refused."""
    EMBEDDING_DIM: ClassVar[int]
    CLASSES: ClassVar[tuple[str, ...]]
    CLASSES_KEY: ClassVar[str]
    """File key holding the class order ("labels", "topics")."""
    CLASS_WORD: ClassVar[str]
    """How error messages name one class ("label", "topic")."""

    def __init__(self, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(self.EMBEDDING_DIM, len(self.CLASSES))
        self.info: dict[str, Any] = dict(info or {})

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Class probabilities, ``[n, len(CLASSES)]``."""
        return torch.softmax(self.linear(embeddings), dim=-1)

    def save(self, path: Path) -> None:
        """Write the head and its metadata to ``path``."""
        torch.save(
            {
                "format": self.FORMAT,
                "encoder": self.ENCODER_NAME,
                self.CLASSES_KEY: list(self.CLASSES),
                "state_dict": {k: v.detach().clone() for k, v in self.state_dict().items()},
                "info": self.info,
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a head written by :meth:`save`; reject anything else with a reason."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise HeadFileError(f"{path}: not a loadable torch file: {exc}") from exc
        if not isinstance(blob, dict) or blob.get("format") != cls.FORMAT:
            raise HeadFileError(f"{path}: not a {cls.KIND} head (expected format {cls.FORMAT!r})")
        if blob.get("encoder") != cls.ENCODER_NAME:
            raise HeadFileError(f"{path}: trained on encoder {blob.get('encoder')!r}")
        classes, expected = blob.get(cls.CLASSES_KEY), list(cls.CLASSES)
        if list(classes or []) != expected:
            raise HeadFileError(f"{path}: {cls.CLASS_WORD} order {classes!r} != {expected}")
        head = cls(info=blob.get("info") or {})
        try:
            head.load_state_dict(blob["state_dict"])
        except (KeyError, RuntimeError) as exc:
            raise HeadFileError(f"{path}: bad weights: {exc}") from exc
        return head.eval()
