"""What the operator keeps in memory between handler calls, as one typed object.

Kopf hands every handler a `memo`: the object given to `kopf.run(memo=...)`, shallow-copied
per watched object. Its fields are set at start-up, before any object is seen, so every
copy shares the same client, observer, locks and counters.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiservice_operator.cluster import operator_metrics
from aiservice_operator.cluster.config import Config
from aiservice_operator.cluster.kube import Kube
from aiservice_operator.core.analysis import Observer

Key = tuple[str, str]
"""(namespace, name) of an AIService."""


@dataclass
class OperatorMemo:
    config: Config
    observer: Observer | None = None
    """The canary observer; `None` until start-up builds it from `config` (a test may set
    its own before starting)."""
    kube: Kube | None = None
    metrics_endpoint: operator_metrics.Endpoint | None = None
    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    """One lock per AIService: its reconciles and rollout ticks never overlap."""
    waiting: dict[Key, int] = field(default_factory=dict)
    """Reconciles queued behind each lock (a child event then needs no reconcile of its own)."""

    @property
    def client(self) -> Kube:
        """The API client; start-up creates it before any handler that needs it runs."""
        if self.kube is None:
            raise RuntimeError("the operator has not started: no Kubernetes client yet")
        return self.kube

    def lock(self, key: Key) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())
