"""Every object the compiler emits, for every example and every stage of a rollout, is one
Knative 1.22 accepts: its CRD schema (unknown fields refused) and its webhook rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from aiservice_operator.core.compile import (
    CompileOptions,
    compile_aiservice,
    intended_weights,
    revision_name,
)
from aiservice_operator.core.spec import AIService, parse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.compiled import compiled_stages, example_services
from tests.support.schemas import KNATIVE_SCHEMAS, REPO_ROOT, knative_violations

pytestmark = pytest.mark.skipif(
    not (KNATIVE_SCHEMAS / "service.yaml").is_file(),
    reason=f"Knative CRD schemas not found at {KNATIVE_SCHEMAS} (needs shared/ beside the repo)",
)

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


CASES = [
    pytest.param(ais, id=f"{path.stem}-{ais.name}")
    for path in EXAMPLES
    for ais in example_services(path)
]


def test_there_are_examples_with_every_feature() -> None:
    services = [ais for path in EXAMPLES for ais in example_services(path)]
    assert any(ais.spec.rollout for ais in services)
    assert any(ais.spec.traffic.split for ais in services)
    assert any(c.filters for ais in services for c in ais.spec.consumes)
    assert any(not ais.spec.dead_letter.is_default for ais in services)


@pytest.mark.parametrize("ais", CASES)
def test_every_emitted_object_is_valid_knative(ais: AIService) -> None:
    problems = [
        f"{label} {obj['kind']}/{obj['metadata']['name']}: {p}"
        for label, obj in compiled_stages(ais)
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
    (ais,) = example_services(REPO_ROOT / "examples" / "canary.yaml")
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


@st.composite
def _situations(draw: st.DrawFn) -> tuple[AIService, dict[str, int] | None, list[str]]:
    """Any AIService shape, any weights the rollout may ask for, any set of ready revisions."""
    count = draw(st.integers(1, 4))
    models = [{"name": f"m{i}", "uri": f"file:///models/m{i}.pt"} for i in range(count)]
    stable = draw(st.integers(0, count - 1))
    spec: dict[str, Any] = {
        "consumes": [{"type": "com.example.in"}],
        "function": {"image": "img:1", "entrypoint": "pkg.fn"},
        "models": models,
        "traffic": {"stable": f"m{stable}"},
    }
    canary_weight = None
    others = [i for i in range(count) if i != stable]
    mode = draw(st.sampled_from(["plain", "split", "rollout"] if others else ["plain"]))
    if mode == "split":
        cut = draw(st.integers(0, 100))
        spec["traffic"]["split"] = [
            {"model": f"m{stable}", "percent": cut},
            {"model": f"m{draw(st.sampled_from(others))}", "percent": 100 - cut},
        ]
    elif mode == "rollout":
        spec["rollout"] = {"canary": f"m{draw(st.sampled_from(others))}",
                           "shadow": draw(st.booleans())}  # fmt: skip
        canary_weight = draw(st.integers(0, 100))
    ais = parse(
        {
            "apiVersion": "aiservice.dev/v1alpha1",
            "kind": "AIService",
            "metadata": {"name": "prop", "namespace": "ns", "uid": "u-1"},
            "spec": spec,
        }
    )
    names = [revision_name(ais, m["name"]) for m in models]
    ready = draw(st.lists(st.sampled_from(names), unique=True))
    weights = None if canary_weight is None else intended_weights(ais, canary_weight)
    return ais, weights, ready


@settings(max_examples=60, deadline=None)
@given(_situations())
def test_any_situation_compiles_to_valid_knative_routing_only_ready_revisions(
    situation: tuple[AIService, dict[str, int] | None, list[str]],
) -> None:
    ais, weights, ready = situation
    desired = compile_aiservice(ais, weights=weights, ready_revisions=ready)
    traffic = desired.service["spec"]["traffic"]
    assert sum(t["percent"] for t in traffic) == 100
    assert sum(desired.weights.values()) == 100
    assert all(t.get("latestRevision") or t["revisionName"] in ready for t in traffic)
    template_name = desired.service["spec"]["template"]["metadata"]["name"]
    assert (template_name in ready) == (not desired.pending_models)
    for obj in desired.objects():
        assert knative_violations(obj) == []
