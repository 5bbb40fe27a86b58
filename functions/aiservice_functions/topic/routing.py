"""What the topic function reads from a scored review, and where it sends the review.

Input is the sentiment function's reply (``{"text", "label", "score"}``) or any object
with a ``text``; ``label`` and ``score`` are optional. The route is a fixed rule over
topic, confidence and sentiment, so the same answer always lands in the same queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiservice_functions.models.text_input import InputError, text_from

LOW_CONFIDENCE = 0.4
"""Below this topic probability a review goes to ``triage`` (a person decides)."""

NEGATIVE_ROUTES = {
    "service": "support-urgent",
    "shipping": "logistics",
    "quality": "quality-assurance",
    "pricing": "billing",
    "usability": "product-feedback",
}
"""Complaints go to the team that can fix their cause."""

POSITIVE_ROUTE = "testimonials"


@dataclass(frozen=True)
class ScoredReview:
    """One event's input: the text and, when an earlier stage scored it, its sentiment."""

    text: str
    sentiment: str | None = None
    sentiment_score: float | None = None


def review_from(data: Any) -> ScoredReview:
    """The review in one event's JSON data, or :class:`InputError` naming the bad field."""
    text = text_from(data)  # also checks that data is an object
    label = data.get("label")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise InputError('"label" must be a non-empty string (the sentiment) or absent', "label")
    score = data.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise InputError('"score" must be a number between 0 and 1 or absent', "score")
        if not 0.0 <= score <= 1.0:
            raise InputError(f'"score" must be between 0 and 1, got {score}', "score")
        score = float(score)
    return ScoredReview(text, label, score)


def route(topic: str, confidence: float, sentiment: str | None) -> str:
    """The queue for a review: triage when unsure, else by sentiment and topic."""
    if confidence < LOW_CONFIDENCE:
        return "triage"
    if sentiment == "negative":
        return NEGATIVE_ROUTES.get(topic, "triage")
    if sentiment == "positive":
        return POSITIVE_ROUTE
    return f"{topic}-inbox"
