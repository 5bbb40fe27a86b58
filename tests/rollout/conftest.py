"""Fixtures of the rollout tests; they live in tests.support.rollout with the helpers the
test modules import."""

from tests.support.rollout import event_store, prometheus, standin

__all__ = ["event_store", "prometheus", "standin"]
