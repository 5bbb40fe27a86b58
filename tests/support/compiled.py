"""The AIServices of a manifest file, and the Knative objects the compiler emits for one at
every stage the operator passes through (shared by the schema tests and the cluster tier)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from aiservice_operator.core.compile import compile_aiservice, intended_weights, revision_name
from aiservice_operator.core.spec import AIService, parse


def example_services(path: Path) -> list[AIService]:
    services = []
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc:
            doc = copy.deepcopy(doc)
            doc["metadata"]["uid"] = "6f1c7f7e-0000-4000-8000-000000000001"
            services.append(parse(doc))
    return services


def compiled_stages(ais: AIService) -> list[tuple[str, dict[str, Any]]]:
    """Compile at every stage the operator passes through."""
    names = [revision_name(ais, m.name) for m in ais.spec.models]
    stages: list[tuple[str, Any]] = [
        ("nothing ready", compile_aiservice(ais)),
        ("stable ready", compile_aiservice(ais, ready_revisions=names[:1])),
        ("all ready", compile_aiservice(ais, ready_revisions=names)),
    ]
    if ais.spec.rollout is not None:
        for step in (*ais.spec.rollout.steps, 0):
            stages.append(
                (
                    f"canary at {step}%",
                    compile_aiservice(
                        ais, weights=intended_weights(ais, step), ready_revisions=names
                    ),
                )
            )
    return [(label, obj) for label, desired in stages for obj in desired.objects()]
