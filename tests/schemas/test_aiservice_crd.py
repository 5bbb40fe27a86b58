"""The AIService CRD as the API server would apply it: a valid CRD object (strict), its
structural schema with defaults, and every CEL rule compiled and evaluated with
cel-expr-python. Each invalid manifest is refused by the CRD, by the rule whose message
names the field, and by `spec.parse` with an error on the same field."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from aiservice_operator.core.spec import SpecError, parse

from tests.support.crd_cases import INVALID, VALID, base, minimal
from tests.support.schemas import (
    AISERVICE_CRD,
    REPO_ROOT,
    apply_defaults,
    cel_violations,
    compile_rule,
    crd_schema,
    iter_rules,
    load_crd,
    schema_errors,
    to_json_schema,
)

KUBERNETES_VERSION = "1.33.0"
CRD = load_crd(AISERVICE_CRD)
SCHEMA = crd_schema(CRD, "v1alpha1")
VALIDATOR = jsonschema.Draft7Validator(to_json_schema(SCHEMA))


def crd_refusals(manifest: dict[str, Any]) -> list[str]:
    """What the API server would say about a manifest: schema errors, else CEL rules."""
    obj = apply_defaults(SCHEMA, copy.deepcopy(manifest))
    errors = schema_errors(VALIDATOR, obj)
    # The API server runs CEL rules only on objects that pass the schema, except where
    # they do not depend on the failing part; run them anyway and report both.
    return errors + cel_violations(SCHEMA, obj)


def spec_fields(manifest: dict[str, Any]) -> list[str]:
    try:
        parse(manifest)
    except SpecError as err:
        return [path for path, _ in err.errors]
    return []


def test_crd_is_a_valid_kubernetes_object() -> None:
    assert kubernetes_validate.validate(CRD, KUBERNETES_VERSION, strict=True) is not None


def test_crd_names_and_columns() -> None:
    assert CRD["spec"]["names"]["shortNames"] == ["ais"]
    assert CRD["spec"]["scope"] == "Namespaced"
    (version,) = CRD["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Ready", "Stable", "Canary", "Weight", "URL", "Age"]


def _nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, child in (schema.get("properties") or {}).items():
        found += _nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _nodes(schema[key], f"{path}[{key}]")
    return found


def test_spec_schema_is_structural_and_bounded() -> None:
    """No unknown fields kept under spec; every string, list and map under spec is bounded,
    which keeps the API server's CEL cost estimate low."""
    problems = []
    for path, node in _nodes(SCHEMA["properties"]["spec"], ".spec"):
        if node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path} keeps unknown fields")
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path} has no type")
        kind = node.get("type")
        if kind == "string" and "maxLength" not in node and "enum" not in node:
            problems.append(f"{path} has no maxLength")
        if kind == "array" and "maxItems" not in node:
            problems.append(f"{path} has no maxItems")
        if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            problems.append(f"{path} has no maxProperties")
    assert problems == []


def test_every_rule_compiles_and_names_its_field() -> None:
    rules = list(iter_rules(SCHEMA))
    assert len(rules) >= 20
    for path, rule in rules:
        compile_rule(rule["rule"])
        assert rule["message"].startswith(("spec.", "metadata.")), (path, rule["message"])


def test_every_rule_refuses_some_invalid_case() -> None:
    """No rule is dead: each one's message shows up for at least one invalid manifest."""
    seen: set[str] = set()
    for _, mutate, _, _ in INVALID:
        manifest = base()
        mutate(manifest)
        seen.update(crd_refusals(manifest))
    messages = {rule["message"] for _, rule in iter_rules(SCHEMA)}
    untested = sorted(m for m in messages if not any(m in s for s in seen))
    assert untested == []


@pytest.mark.parametrize(("mutate"), [v[1] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_manifests_pass_the_crd_and_the_parser(mutate: Any) -> None:
    manifest = base()
    mutate(manifest)
    assert crd_refusals(manifest) == []
    assert spec_fields(manifest) == []


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(doc, id=f"{path.stem}-{doc['metadata']['name']}")
        for path in sorted((REPO_ROOT / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ],
)
def test_examples_pass_the_crd_and_the_parser(document: dict[str, Any]) -> None:
    assert crd_refusals(document) == []
    assert spec_fields(document) == []


@pytest.mark.parametrize(
    ("mutate", "crd_words", "spec_field"),
    [v[1:] for v in INVALID],
    ids=[v[0] for v in INVALID],
)
def test_invalid_manifests_are_refused_by_both(
    mutate: Any, crd_words: str, spec_field: str
) -> None:
    manifest = base()
    mutate(manifest)
    refusals = crd_refusals(manifest)
    assert any(crd_words in r for r in refusals), refusals
    fields = spec_fields(manifest)
    assert any(f.startswith(spec_field) for f in fields), fields


def test_crd_defaults_mean_what_the_parser_assumes() -> None:
    """A minimal manifest parsed as written and as the API server stores it (defaults
    filled in) is the same AIService: the CRD and the parser agree on every default."""
    for manifest in (minimal(), base()):
        defaulted = apply_defaults(SCHEMA, copy.deepcopy(manifest))
        assert defaulted != manifest
        assert parse(defaulted) == parse(manifest)


def test_the_status_the_operator_writes_survives_the_status_schema() -> None:
    """The API server prunes status fields its schema does not declare: every field the
    operator and the rollout write must be declared, or state is lost on the next read."""
    from datetime import UTC, datetime, timedelta

    from aiservice_operator.core import analysis, rollout
    from aiservice_operator.core.compile import compile_aiservice, revision_name
    from aiservice_operator.core.conditions import summarize_status

    manifest = base()
    manifest["metadata"]["uid"] = "u-1"
    ais = parse(manifest)
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    state, weight, _ = rollout.step(ais.spec, None, None, now)
    observation = analysis.Observation(
        events=100, errors=1, p99_latency_ms=120.0, window_seconds=60
    )
    for minute in range(1, 4):
        state, weight, _ = rollout.step(
            ais.spec, state, observation, now + timedelta(minutes=minute)
        )
    names = [revision_name(ais, m.name) for m in ais.spec.models]
    desired = compile_aiservice(ais, ready_revisions=names)
    knative = {
        "conditions": [{"type": "Ready", "status": "True"}],
        "url": "http://sentiment.default.example.com",
        "traffic": [{"revisionName": names[0], "percent": 100 - weight, "tag": "stable",
                     "url": "http://stable-sentiment.default.example.com"},
                    {"revisionName": names[1], "percent": weight, "tag": "canary"}],
    }  # fmt: skip
    status: dict[str, Any] = {"rollout": state.to_status()}
    status.update(summarize_status(ais, desired, knative, now, status))
    status["deadLetters"] = {"count": 3, "lastAt": "2026-05-01T12:00:00Z"}
    assert state.history, "the rollout recorded no decision"
    status_validator = jsonschema.Draft7Validator(
        to_json_schema(SCHEMA["properties"]["status"], root=False)
    )
    assert schema_errors(status_validator, status) == []
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "RolloutProgressing"}


def _rule_cardinalities(
    schema: dict[str, Any], path: str = "", count: int = 1
) -> list[tuple[str, int, dict[str, Any], dict[str, Any]]]:
    """(path, how many instances of the node an object can hold, node, rule) per rule."""
    found = [(path, count, schema, rule) for rule in schema.get("x-kubernetes-validations") or ()]
    for name, child in (schema.get("properties") or {}).items():
        found += _rule_cardinalities(child, f"{path}.{name}", count)
    if isinstance(schema.get("items"), dict):
        found += _rule_cardinalities(
            schema["items"], f"{path}[]", count * schema.get("maxItems", 10**9)
        )
    if isinstance(schema.get("additionalProperties"), dict):
        extra = schema["additionalProperties"]
        found += _rule_cardinalities(
            extra, f"{path}{{}}", count * schema.get("maxProperties", 10**9)
        )
    return found


def test_rules_stay_well_inside_the_cel_cost_budget() -> None:
    """The API server multiplies a rule's cost by how often it can run (the maxItems above
    it) and refuses the CRD past 10M: keep deep rules cheap and their strings short."""
    for path, count, node, rule in _rule_cardinalities(SCHEMA):
        assert count <= 10_000, (path, count)
        if "matches(" in rule["rule"] and node.get("type") == "string":
            assert node["maxLength"] * count <= 1_000_000, (path, count, node["maxLength"])
        assert "self.all(k" not in rule["rule"], f"{path}: a rule on map keys costs too much"
