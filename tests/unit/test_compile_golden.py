"""Golden files: the exact Knative objects compiled from each example, byte for byte.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/unit`, then read
the diff: every changed line is a change to what runs on users' clusters.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiservice_operator.core.compile import (
    Desired,
    compile_aiservice,
    intended_weights,
    revision_name,
    steady_state,
    to_yaml,
)
from aiservice_operator.core.spec import AIService, parse

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
UID = "3f0a3c52-7a4e-4f4c-9b7e-0a1b2c3d4e5f"


def load(name: str) -> list[AIService]:
    docs = yaml.safe_load_all((REPO_ROOT / "examples" / name).read_text(encoding="utf-8"))
    services = []
    for doc in docs:
        if doc:
            doc["metadata"]["uid"] = UID
            doc["metadata"]["generation"] = 3
            services.append(parse(doc))
    return services


def _canary_at_25_with_shadow() -> list[Desired]:
    (ais,) = load("canary.yaml")
    manifest: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "canary.yaml").read_text())
    manifest["metadata"]["uid"] = UID
    manifest["spec"]["rollout"]["shadow"] = True
    ais = parse(manifest)
    ready = [revision_name(ais, m.name) for m in ais.spec.models]
    return [compile_aiservice(ais, weights=intended_weights(ais, 25), ready_revisions=ready)]


def _canary_pending() -> list[Desired]:
    (ais,) = load("canary.yaml")
    stable = revision_name(ais, "v1")
    return [compile_aiservice(ais, weights=intended_weights(ais, 10), ready_revisions=[stable])]


CASES = {
    "sentiment": lambda: [steady_state(a) for a in load("sentiment.yaml")],
    "fraud-split": lambda: [steady_state(a) for a in load("fraud-split.yaml")],
    "pipeline": lambda: [steady_state(a) for a in load("pipeline.yaml")],
    "canary": lambda: [steady_state(a) for a in load("canary.yaml")],
    "canary-rollback": lambda: [steady_state(a) for a in load("canary-rollback.yaml")],
    "canary-quality": lambda: [
        compile_aiservice(a, weights=intended_weights(a, 10)) for a in load("canary-quality.yaml")
    ],
    "gpu-sentiment": lambda: [steady_state(a) for a in load("gpu-sentiment.yaml")],
    "s3-credentials": lambda: [steady_state(a) for a in load("s3-credentials.yaml")],
    "restricted": lambda: [steady_state(a) for a in load("restricted.yaml")],
    "long-names": lambda: [steady_state(a) for a in load("long-names.yaml")],
    "broker-kafka": lambda: [steady_state(a) for a in load("broker-kafka.yaml")],
    "broker-rabbitmq": lambda: [steady_state(a) for a in load("broker-rabbitmq.yaml")],
    "broker-channel": lambda: [steady_state(a) for a in load("broker-channel.yaml")],
    "digits-claim-check": lambda: [steady_state(a) for a in load("digits-claim-check.yaml")],
    "canary-at-25-shadow": _canary_at_25_with_shadow,
    "canary-revision-pending": _canary_pending,
}


def render(case: str) -> str:
    return to_yaml(obj for desired in CASES[case]() for obj in desired.objects())


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_objects_match_golden_file(case: str) -> None:
    path = GOLDEN / f"{case}.yaml"
    text = render(case)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8")


def test_every_example_has_a_golden_file() -> None:
    examples = {p.stem for p in (REPO_ROOT / "examples").glob("*.yaml")}
    assert examples <= set(CASES)


def test_output_is_byte_identical_whatever_the_key_order() -> None:
    manifest = yaml.safe_load((REPO_ROOT / "examples" / "fraud-split.yaml").read_text())

    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reverse(v) for v in value]
        return value

    shuffled = reverse(copy.deepcopy(manifest))
    assert list(shuffled) != list(manifest)
    first = to_yaml(steady_state(parse(manifest)).objects())
    assert to_yaml(steady_state(parse(shuffled)).objects()) == first
    assert to_yaml(steady_state(parse(manifest)).objects()) == first
