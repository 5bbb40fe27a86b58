"""`spec.parse`: the examples read as intended, and every bad field is named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiservice_operator.core.spec import (
    Filter,
    SpecError,
    parse,
    parse_spec,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def good() -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "svc", "namespace": "ns", "uid": "u-1", "generation": 4},
        "spec": {
            "consumes": [{"type": "com.example.in"}],
            "function": {"image": "img:1", "entrypoint": "pkg.fn"},
            "models": [{"name": "v1", "uri": "file:///m/v1.pt"}],
        },
    }


def errors_of(manifest: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse(manifest)
    assert str(info.value)
    return dict(info.value.errors)


def test_examples_parse() -> None:
    services = {
        (p.stem, d["metadata"]["name"]): parse(d)
        for p in sorted((REPO_ROOT / "examples").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if d
    }
    assert {"sentiment", "fraud-split", "pipeline", "canary"} <= {stem for stem, _ in services}
    fraud = services[("fraud-split", "fraud")]
    assert [(s.model, s.percent) for s in fraud.spec.traffic.split] == [("v1", 90), ("v2", 10)]
    # canary.yaml is sentiment.yaml's next version: applying it starts the rollout.
    canary = services[("canary", "sentiment")]
    assert canary.spec.rollout is not None
    assert canary.spec.rollout.steps == (10, 25, 50, 100)
    assert canary.spec.rollout.interval_seconds == 60
    assert canary.spec.model("v1") == services[("sentiment", "sentiment")].spec.model("v1")
    first, second = services[("pipeline", "sentiment-stage")], services[("pipeline", "topic-stage")]
    assert second.spec.consumes[0].type == first.spec.produces
    assert second.spec.function.entrypoint == "aiservice_functions.topic"


def test_defaults() -> None:
    ais = parse(good())
    assert (ais.name, ais.namespace, ais.uid, ais.generation) == ("svc", "ns", "u-1", 4)
    spec = ais.spec
    assert spec.broker == "default"
    assert spec.traffic.stable == "v1"
    assert spec.rollout is None
    assert spec.delivery.retry == 3
    assert spec.delivery.backoff_delay == "PT0.2S"
    assert spec.dead_letter.is_default
    assert spec.function.concurrency == 16


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("apiVersion", "v1", "apiVersion"),
        ("kind", "Service", "kind"),
        ("metadata.name", "Bad_Name", "metadata.name"),
        ("spec.consumes", [], "spec.consumes"),
        ("spec.consumes.0.type", "bad type!", "spec.consumes[0].type"),
        ("spec.consumes.0.extra", 1, "spec.consumes[0].extra"),
        ("spec.consumes.0.filters", [{"regex": {"a": "b"}}], "spec.consumes[0].filters[0]"),
        ("spec.consumes.0.filters", [{"exact": {}}], "spec.consumes[0].filters[0].exact"),
        ("spec.consumes.0.filters", [{"any": []}], "spec.consumes[0].filters[0].any"),
        ("spec.consumes.0.filters", [{"not": {"all": [{"any": [{"exact": {"a": "b"}}]}]}}],
         "spec.consumes[0].filters[0].not.all[0].any"),
        ("spec.consumes.0.filters", [{"exact": {f"a{i}": "x" for i in range(17)}}],
         "spec.consumes[0].filters[0].exact"),
        ("spec.consumes.0.filters", [{"exact": {"source": 3}}],
         "spec.consumes[0].filters[0].exact.source"),
        ("spec.consumes.0.filters", [{"cesql": "  "}], "spec.consumes[0].filters[0].cesql"),
        ("spec.consumes.0.filters", [{"exact": {"Source": "x"}}],
         "spec.consumes[0].filters[0].exact.Source"),
        ("spec.consumes.0.filters", [{"prefix": {"1a": "x"}}],
         "spec.consumes[0].filters[0].prefix.1a"),
        ("spec.consumes.0.filters", [{"all": [{"exact": {"a": "b"}}] * 9}],
         "spec.consumes[0].filters[0].all"),
        ("spec.consumes", [{"type": f"t{i}"} for i in range(17)], "spec.consumes"),
        ("spec.function.image", 3, "spec.function.image"),
        ("spec.function.entrypoint", "not a module", "spec.function.entrypoint"),
        ("spec.function.env", [{"name": "K_SERVICE", "value": "x"}], "spec.function.env[0].name"),
        ("spec.function.env", [{"name": "1BAD"}], "spec.function.env[0].name"),
        ("spec.function.concurrency", True, "spec.function.concurrency"),
        ("spec.function.timeoutSeconds", 0, "spec.function.timeoutSeconds"),
        ("spec.function.batching", {"maxBatchSize": 5000}, "spec.function.batching.maxBatchSize"),
        ("spec.function.resources", {"gpus": {}}, "spec.function.resources.gpus"),
        ("spec.models", [], "spec.models"),
        ("spec.models.0.name", "canary", "spec.models[0].name"),
        ("spec.models.0.uri", "/models/v1.pt", "spec.models[0].uri"),
        ("spec.models.0.uri", "file://" + "x" * 2050, "spec.models[0].uri"),
        ("spec.traffic", {"stable": "v9"}, "spec.traffic.stable"),
        ("spec.rollout", {"canary": "v1"}, "spec.rollout.canary"),
        ("spec.rollout", {"canary": "v1", "steps": "10"}, "spec.rollout.steps"),
        ("spec.rollout", {"canary": "v1", "analysis": {"minEvents": 0}},
         "spec.rollout.analysis.minEvents"),
        ("spec.rollout", {"canary": "v1", "shadow": "yes"}, "spec.rollout.shadow"),
        ("spec.autoscaling", {"metric": "cpu"}, "spec.autoscaling.metric"),
        ("spec.autoscaling", {"maxScale": 0}, "spec.autoscaling.maxScale"),
        ("spec.delivery", {"retry": -1}, "spec.delivery.retry"),
        ("spec.delivery", {"timeout": "30 s"}, "spec.delivery.timeout"),
        ("spec.deadLetter", {"sink": {"uri": "ftp://x"}}, "spec.deadLetter.sink.uri"),
        ("spec.deadLetter", {"sink": {"ref": {"kind": "Service", "name": "d"}}},
         "spec.deadLetter.sink.ref.apiVersion"),
        ("spec.deadLetter", {"sink": "dlq"}, "spec.deadLetter.sink"),
        ("spec.deadLetter", {"target": {}}, "spec.deadLetter.target"),
        ("spec.decisionLog", "on", "spec.decisionLog"),
        ("spec.decisionLog", {"enabled": "yes"}, "spec.decisionLog.enabled"),
        ("spec.decisionLog", {"sampleRate": -0.1}, "spec.decisionLog.sampleRate"),
        ("spec.decisionLog", {"includeData": True, "redact": [3]}, "spec.decisionLog.redact[0]"),
        ("spec.decisionLog", {"includeData": True, "redact": ["$.a"] * 17},
         "spec.decisionLog.redact"),
        ("spec.decisionLog", {"retention": "1y"}, "spec.decisionLog.retention"),
    ],
)  # fmt: skip
def test_each_bad_field_is_named(path: str, value: Any, field: str) -> None:
    manifest = copy.deepcopy(good())
    node: Any = manifest
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    errors = errors_of(manifest)
    assert field in errors, errors


def test_all_errors_are_reported_at_once() -> None:
    manifest = good()
    manifest["spec"]["models"][0]["uri"] = "nope"
    manifest["spec"]["delivery"] = {"retry": -2, "backoffPolicy": "cubic"}
    errors = errors_of(manifest)
    assert {"spec.models[0].uri", "spec.delivery.retry", "spec.delivery.backoffPolicy"} <= set(
        errors
    )


def test_missing_spec_and_non_mapping_spec() -> None:
    manifest = good()
    del manifest["spec"]
    assert "spec" in errors_of(manifest)
    with pytest.raises(SpecError):
        parse_spec({})


def test_multi_attribute_filters_become_knative_single_attribute_entries() -> None:
    f = Filter("exact", attributes=(("source", "/a"), ("subject", "b")))
    assert f.to_knative() == {"all": [{"exact": {"source": "/a"}}, {"exact": {"subject": "b"}}]}
    assert Filter("prefix", attributes=(("source", "/a"),)).to_knative() == {
        "prefix": {"source": "/a"}
    }


def test_delivery_durations_in_either_form_reach_knative_as_iso8601() -> None:
    manifest = good()
    manifest["spec"]["delivery"] = {"backoffDelay": "250ms", "timeout": "1m30s"}
    delivery = parse(manifest).spec.delivery
    assert (delivery.backoff_delay, delivery.timeout) == ("PT0.25S", "PT90S")
    manifest["spec"]["delivery"] = {"backoffDelay": "PT0.5S", "timeout": "P1DT2H"}
    delivery = parse(manifest).spec.delivery
    assert (delivery.backoff_delay, delivery.timeout) == ("PT0.5S", "P1DT2H")


def test_interval_and_retention_take_days() -> None:
    manifest = good()
    manifest["spec"]["models"].append({"name": "v2", "uri": "file:///m/v2.pt"})
    manifest["spec"]["rollout"] = {"canary": "v2", "interval": "1d12h"}
    manifest["spec"]["decisionLog"] = {"retention": "1d12h"}
    spec = parse(manifest).spec
    assert spec.rollout is not None
    assert spec.rollout.interval_seconds == 36 * 3600
    assert spec.decision_log.retention_seconds == 36 * 3600


def test_decision_log_off_by_default_and_on_once_declared() -> None:
    assert parse(good()).spec.decision_log.enabled is False
    manifest = good()
    manifest["spec"]["decisionLog"] = {"includeData": True, "redact": ["$.a"], "retention": "12h"}
    log = parse(manifest).spec.decision_log
    assert (log.enabled, log.sample_rate, log.include_data, log.redact) == (
        True, 1.0, True, ("$.a",)
    )  # fmt: skip
    assert log.retention_seconds == 12 * 3600
    manifest["spec"]["decisionLog"] = {}
    assert parse(manifest).spec.decision_log.retention_seconds == 30 * 86400
