"""How a rollout decision is told to the world: an audit CloudEvent and a Kubernetes Event.

Both carry the decision's reason and the metric values behind it, so every traffic change
can be explained afterwards from the event store's audit log (`aisvc` can list it) or from
`kubectl describe aiservice`. The audit event's id is derived from the decision, so
sending it again after an operator restart stores it once (the store deduplicates on
source + id).

Pure: builds values, sends nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from aiservice_functions import contract

from aiservice_operator.core.rollout import Decision, RolloutState
from aiservice_operator.core.spec import API_GROUP, API_VERSION, PLURAL

AUDIT_TYPE: Final = contract.ROLLOUT_DECISION_TYPE

REASONS: Final[dict[str, str]] = {
    "start": "RolloutStarted",
    "wait": "RolloutWaiting",
    "advance": "RolloutAdvanced",
    "hold": "RolloutHeld",
    "check-failed": "RolloutCheckFailed",
    "rollback": "RolloutRolledBack",
    "promote": "RolloutPromoting",
    "succeed": "RolloutSucceeded",
    "pause": "RolloutPaused",
    "resume": "RolloutResumed",
    "abort": "RolloutAborted",
    "ignore": "RolloutCommandIgnored",
}
WARNINGS: Final = frozenset({"check-failed", "rollback", "abort", "pause", "ignore"})


def source(namespace: str, name: str) -> str:
    """The AIService's API path: the `source` of its audit events."""
    return f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def decision_event(
    namespace: str, name: str, state: RolloutState, decision: Decision
) -> dict[str, Any]:
    """The decision as a structured-mode CloudEvent 1.0 (JSON-safe dict)."""
    src = source(namespace, name)
    key = f"{src}|{state.spec_hash}|{decision.at}|{decision.action}|{decision.repeats}"
    return {
        "specversion": "1.0",
        "id": hashlib.sha256(key.encode()).hexdigest()[:32],
        "source": src,
        "type": AUDIT_TYPE,
        "subject": f"rollout/{state.canary}",
        "time": decision.at,
        "datacontenttype": "application/json",
        "data": {
            **decision.to_dict(),
            "canary": state.canary,
            "stable": state.stable,
            "shadow": state.shadow,
            "failures": state.failures,
            "specHash": state.spec_hash,
        },
    }


@dataclass(frozen=True)
class KubeEvent:
    type: str
    """`Normal` or `Warning`."""
    reason: str
    message: str


def kube_event(decision: Decision) -> KubeEvent:
    """The decision as a Kubernetes Event (message bounded to what the API keeps)."""
    metrics = decision.metrics
    numbers = ""
    if metrics.get("events") is not None and decision.action not in ("start", "wait"):
        numbers = (
            f" [events={metrics.get('events')} errorRate={metrics.get('errorRate')} "
            f"p99Ms={metrics.get('p99LatencyMs')} deadLetterRate={metrics.get('deadLetterRate')}]"
        )
    message = f"{decision.phase} step {decision.step} weight {decision.weight}%: {decision.reason}"
    return KubeEvent(
        type="Warning" if decision.action in WARNINGS else "Normal",
        reason=REASONS[decision.action],
        message=(message + numbers)[:1024],
    )
