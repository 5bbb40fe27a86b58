"""The AIServices the scale benchmark creates: a fixed mix, the same for every run.

Of every five: two single-model services, one fixed 90/10 split between two model versions,
and a two-stage pipeline (the first stage's reply type is what the second consumes, with a
filter). `changed` is the spec edit of the update phase: it touches the revision template
(a new revision per model) and the Trigger delivery, so every child is rewritten.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]

IMAGE = "ghcr.io/aiservice-dev/aiservice-functions:0.1.0"
SHAPES = ("single", "single", "split", "stage-a", "stage-b")


def namespace_for(index: int, namespaces: int) -> str:
    return f"bench-{index % namespaces}"


def name_for(index: int) -> str:
    return f"ais-{index:05d}"


def shape_of(index: int) -> str:
    return SHAPES[index % len(SHAPES)]


def manifest(index: int, namespaces: int) -> Obj:
    """The AIService number `index` of the workload."""
    shape = shape_of(index)
    spec: Obj = {
        "broker": "default",
        "consumes": [{"type": f"com.example.bench.{index}.submitted"}],
        "produces": f"com.example.bench.{index}.scored",
        "function": {
            "image": IMAGE,
            "entrypoint": "aiservice_functions.sentiment",
            "concurrency": 16,
        },
        "models": [{"name": "v1", "uri": f"pkg://aiservice_functions.sentiment/models/{index}.pt"}],
        "traffic": {"stable": "v1"},
        "autoscaling": {"minScale": 0, "maxScale": 5, "metric": "concurrency", "target": 8},
        "delivery": {"retry": 3, "backoffPolicy": "exponential", "backoffDelay": "PT0.2S"},
    }
    if shape == "split":
        spec["function"]["entrypoint"] = "aiservice_functions.fraud"
        spec["models"].append(
            {"name": "v2", "uri": f"pkg://aiservice_functions.fraud/models/{index}-v2.pt"}
        )
        spec["traffic"] = {
            "stable": "v1",
            "split": [{"model": "v1", "percent": 90}, {"model": "v2", "percent": 10}],
        }
    elif shape == "stage-b":
        previous = index - 1
        spec["consumes"] = [
            {
                "type": f"com.example.bench.{previous}.scored",
                "filters": [{"prefix": {"source": "/shop/"}}],
            },
            {"type": f"com.example.bench.{index}.retried"},
        ]
        spec["deadLetter"] = {"sink": {"uri": "http://dead-letters.bench.svc.cluster.local/x"}}
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": name_for(index), "namespace": namespace_for(index, namespaces)},
        "spec": spec,
    }


def changed(obj: Obj) -> Obj:
    """The update phase's edit of a spec (returned as a merge patch)."""
    spec = copy.deepcopy(obj["spec"])
    return {
        "spec": {
            "autoscaling": {**spec["autoscaling"], "maxScale": spec["autoscaling"]["maxScale"] + 1},
            "delivery": {**spec["delivery"], "retry": spec["delivery"]["retry"] + 1},
        }
    }
