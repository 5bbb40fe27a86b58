"""The sentiment classification head: one ``Linear(384, 2)`` on MiniLM embeddings."""

from __future__ import annotations

from aiservice_functions.models.linear_head import HeadFileError, LinearHead
from aiservice_functions.models.minilm import EMBEDDING_DIM, ENCODER_NAME
from aiservice_functions.sentiment.data import LABELS

__all__ = ["ENCODER_NAME", "FORMAT", "HeadFileError", "SentimentHead"]

FORMAT = "aiservice.sentiment-head/1"


class SentimentHead(LinearHead):
    """Logistic regression over the two labels in :data:`LABELS` order."""

    KIND = "sentiment"
    FORMAT = FORMAT
    ENCODER_NAME = ENCODER_NAME
    EMBEDDING_DIM = EMBEDDING_DIM
    CLASSES = LABELS
    CLASSES_KEY = "labels"
    CLASS_WORD = "label"
