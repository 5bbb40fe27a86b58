"""Every object the compiler emits, for every example and every stage of a rollout, is one
Knative 1.22 accepts: its CRD schema (unknown fields refused) and its webhook rules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiservice_operator.compile import (
    CompileOptions,
    compile_aiservice,
    intended_weights,
    revision_name,
)
from aiservice_operator.spec import AIService, parse
from schema_tools import KNATIVE_SCHEMAS, REPO_ROOT, knative_violations

pytestmark = pytest.mark.skipif(
    not (KNATIVE_SCHEMAS / "service.yaml").is_file(),
    reason=f"Knative CRD schemas not found at {KNATIVE_SCHEMAS} (needs shared/ beside the repo)",
)

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


def _services(path: Path) -> list[AIService]:
    services = []
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc:
            doc = copy.deepcopy(doc)
            doc["metadata"]["uid"] = "6f1c7f7e-0000-4000-8000-000000000001"
            services.append(parse(doc))
    return services


def _stages(ais: AIService) -> list[tuple[str, dict[str, Any]]]:
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


CASES = [
    pytest.param(ais, id=f"{path.stem}-{ais.name}") for path in EXAMPLES for ais in _services(path)
]


def test_there_are_examples_with_every_feature() -> None:
    services = [ais for path in EXAMPLES for ais in _services(path)]
    assert any(ais.spec.rollout for ais in services)
    assert any(ais.spec.traffic.split for ais in services)
    assert any(c.filters for ais in services for c in ais.spec.consumes)
    assert any(not ais.spec.dead_letter.is_default for ais in services)


@pytest.mark.parametrize("ais", CASES)
def test_every_emitted_object_is_valid_knative(ais: AIService) -> None:
    problems = [
        f"{label} {obj['kind']}/{obj['metadata']['name']}: {p}"
        for label, obj in _stages(ais)
        for p in knative_violations(obj)
    ]
    assert problems == []


def test_shadow_and_reference_sinks_are_valid_knative() -> None:
    manifest = yaml.safe_load((REPO_ROOT / "examples" / "canary.yaml").read_text())
    manifest["metadata"]["uid"] = "6f1c7f7e-0000-4000-8000-000000000002"
    manifest["spec"]["rollout"]["shadow"] = True
    manifest["spec"]["deadLetter"] = {
        "sink": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "dlq", "namespace": "ops"}}
    }
    manifest["spec"]["consumes"][0]["filters"] = [
        {"exact": {"source": "/a", "subject": "b"}},
        {"not": {"any": [{"suffix": {"subject": ".tmp"}}, {"cesql": "subject LIKE '%x'"}]}},
    ]
    ais = parse(manifest)
    names = [revision_name(ais, m.name) for m in ais.spec.models]
    desired = compile_aiservice(
        ais,
        weights=intended_weights(ais, 25),
        ready_revisions=names,
        options=CompileOptions(cluster_domain="example.internal"),
    )
    assert len(desired.triggers) == 2
    problems = [p for obj in desired.objects() for p in knative_violations(obj)]
    assert problems == []


# The checks themselves must refuse what Knative refuses, or the tests above prove nothing.


def _steady_objects() -> list[dict[str, Any]]:
    (ais,) = _services(REPO_ROOT / "examples" / "canary.yaml")
    names = [revision_name(ais, m.name) for m in ais.spec.models]
    return compile_aiservice(ais, ready_revisions=names).objects()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda s, t: s["spec"]["template"]["spec"].update(containerConcurency=1),
            "containerConcurency",
        ),
        (lambda s, t: s["spec"]["traffic"][0].update(percent=99), "sum to 100"),
        (lambda s, t: s["spec"]["traffic"][1].update(tag="stable"), "tags repeat"),
        (lambda s, t: s["spec"]["traffic"][0].update(latestRevision=True), "xor"),
        (lambda s, t: s["spec"]["template"]["metadata"].update(name="other-v1-0"), "<service>-"),
        (lambda s, t: t["spec"]["delivery"].update(backoffPolicy="cubic"), "backoffPolicy"),
        (lambda s, t: t["spec"]["delivery"].update(backoffDelay="200ms"), "ISO-8601"),
        (lambda s, t: t["spec"].pop("broker"), "broker"),
        (lambda s, t: t["spec"].pop("subscriber"), "subscriber"),
        (lambda s, t: t["spec"]["filters"][0]["exact"].update(source="x"), "exactly one"),
        (lambda s, t: t["spec"].update(filterz=[]), "filterz"),
    ],
)
def test_the_checks_refuse_what_knative_refuses(mutate: Any, expected: str) -> None:
    service, trigger = copy.deepcopy(_steady_objects())
    assert knative_violations(service) == [] and knative_violations(trigger) == []
    mutate(service, trigger)
    problems = knative_violations(service) + knative_violations(trigger)
    assert any(expected in p for p in problems), problems
