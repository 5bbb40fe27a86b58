"""Fixtures of the rollout tests; they live in rollout_support (a unique module name, so
test modules can import its helpers whatever other conftest modules are loaded)."""

from rollout_support import event_store, prometheus, standin

__all__ = ["event_store", "prometheus", "standin"]
