"""AIService manifests for the operator tests, and waits on what the operator writes."""

from __future__ import annotations

import copy
from typing import Any

from tests.support.crd import check_status
from tests.support.kubeemu import AISERVICES, KSERVICES, EmulatorThread, condition, wait_for

BASE: dict[str, Any] = {
    "apiVersion": "aiservice.dev/v1alpha1",
    "kind": "AIService",
    "spec": {
        "consumes": [{"type": "com.example.review.submitted"}],
        "produces": "com.example.review.scored",
        "function": {
            "image": "registry.example/aiservice-functions:0.1",
            "entrypoint": "aiservice_functions.sentiment",
        },
        "models": [{"name": "v1", "uri": "file:///models/v1.pt"}],
        "traffic": {"stable": "v1"},
    },
}


def manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A valid AIService; keyword arguments replace top-level spec fields."""
    body = copy.deepcopy(BASE)
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"].update(copy.deepcopy(spec))
    return body


def ready(kube: EmulatorThread, ns: str, name: str, status: str = "True") -> dict[str, Any]:
    """Wait until the AIService's Ready condition has `status` for its current generation."""

    def check() -> dict[str, Any] | None:
        obj = kube.find(AISERVICES, ns, name)
        cond = condition(obj, "Ready")
        if (
            obj
            and cond.get("status") == status
            and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        ):
            check_status(obj)  # what the real API server would accept, unpruned
            return obj
        return None

    return wait_for(check, what=f"{ns}/{name} Ready={status}")


def traffic(kube: EmulatorThread, ns: str, name: str) -> list[dict[str, Any]]:
    return list((kube.get(KSERVICES, ns, name).get("spec") or {}).get("traffic") or [])
