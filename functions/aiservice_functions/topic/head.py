"""The topic classification head: one ``Linear(384, 5)`` on MiniLM embeddings."""

from __future__ import annotations

from aiservice_functions.models.linear_head import HeadFileError, LinearHead
from aiservice_functions.models.minilm import EMBEDDING_DIM, ENCODER_NAME
from aiservice_functions.topic.data import TOPICS

__all__ = ["ENCODER_NAME", "FORMAT", "HeadFileError", "TopicHead"]

FORMAT = "aiservice.topic-head/1"


class TopicHead(LinearHead):
    """Multinomial logistic regression over :data:`TOPICS`, in that order."""

    KIND = "topic"
    FORMAT = FORMAT
    ENCODER_NAME = ENCODER_NAME
    EMBEDDING_DIM = EMBEDDING_DIM
    CLASSES = TOPICS
    CLASSES_KEY = "topics"
    CLASS_WORD = "topic"
