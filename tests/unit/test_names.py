"""The naming rule for names of any length, pinned (golden): short names keep the names they
always had; long ones get a readable prefix and a hash, and every derived name fits Knative."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from aiservice_operator.core import names
from aiservice_operator.core.compile import (
    model_tag,
    revision_name,
    service_name,
    shadow_trigger_name,
    steady_state,
    trigger_name,
)
from aiservice_operator.core.spec import parse
from hypothesis import given, settings
from hypothesis import strategies as st

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LONG = "fraud-scoring-for-the-europe-west-payments-platform-team-prod01"  # 63 characters


def manifest(name: str, models: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": name, "namespace": "ns", "uid": "u-1"},
        "spec": {
            "consumes": [{"type": "com.example.in"}],
            "function": {"image": "img:1", "entrypoint": "pkg.fn"},
            "models": [{"name": m, "uri": f"file:///models/{i}.pt"} for i, m in enumerate(models)],
            "rollout": {"canary": models[1]} if len(models) > 1 else None,
        },
    }


def _parse(name: str, models: list[str]) -> Any:
    doc = manifest(name, models)
    if doc["spec"]["rollout"] is None:
        del doc["spec"]["rollout"]
    return parse(doc)


def test_short_names_are_used_as_they_are() -> None:
    ais = _parse("sentiment", ["v1", "v2"])
    assert service_name(ais) == "sentiment"
    assert re.fullmatch(r"sentiment-v1-[0-9a-f]{8}", revision_name(ais, "v1"))
    assert model_tag("v1") == "v1"
    assert re.fullmatch(r"sentiment-[0-9a-f]{8}", trigger_name(ais, ais.spec.consumes[0]))
    assert re.fullmatch(
        r"sentiment-shadow-[0-9a-f]{8}", shadow_trigger_name(ais, ais.spec.consumes[0])
    )


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("fraud", 40, "fraud"),
        ("a" * 40, 40, "a" * 40),
        (LONG, 40, "fraud-scoring-for-the-europe-we-c452d7e3"),
        # A prefix ending in '-' is trimmed: the result stays a DNS label.
        ("a" * 30 + "-" + "b" * 20, 40, "a" * 30 + "-5edcbf90"),
    ],
)  # fmt: skip
def test_shorten_golden(value: str, limit: int, expected: str) -> None:
    assert names.shorten(value, limit) == expected
    assert len(names.shorten(value, limit)) <= limit


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("v1", "v1"),
        ("canary-2", "canary-2"),
        ("a" * 22, "a" * 22),
        ("distilled-multilingual-2026-11-01", "distilled-mul-707eb0dd"),
        ("2026-11-20-int8", "m2026-11-20-i-9e3adb1d"),  # a tag must start with a letter
    ],
)
def test_model_tags_golden(model: str, expected: str) -> None:
    assert model_tag(model) == expected


def test_the_issue_case_renders_with_every_name_within_63() -> None:
    ais = _parse(LONG, ["distilled-multilingual-2026-11-01", "2026-11-20-int8"])
    desired = steady_state(ais)
    derived = [
        desired.service["metadata"]["name"],
        *desired.revision_names.values(),
        *(t["metadata"]["name"] for t in desired.triggers),
    ]
    assert derived[0] == "fraud-scoring-for-the-europe-we-c452d7e3"
    for name in derived:
        assert len(name) <= 63 and DNS_1035.match(name), name
    for target in desired.service["spec"]["traffic"]:
        assert len(f"{target['tag']}-{derived[0]}") <= 63
        assert target["revisionName"].startswith(f"{derived[0]}-")


def test_two_long_names_with_one_prefix_stay_apart() -> None:
    a = _parse(LONG, ["m" * 60 + "aaa"])
    b = _parse(LONG[:-1] + "2", ["m" * 60 + "bbb"])
    assert service_name(a) != service_name(b)
    assert model_tag("m" * 60 + "aaa") != model_tag("m" * 60 + "bbb")
    assert revision_name(a, "m" * 60 + "aaa") != revision_name(b, "m" * 60 + "bbb")


LABEL = st.from_regex(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
MODEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


@settings(max_examples=80, deadline=None)
@given(LABEL, st.lists(MODEL.filter(lambda m: m not in ("stable", "canary")), min_size=1,
                       max_size=3, unique=True))  # fmt: skip
def test_any_names_derive_valid_knative_names(name: str, models: list[str]) -> None:
    doc = manifest(name, models)
    del doc["spec"]["rollout"]
    ais = parse(copy.deepcopy(doc))
    desired = steady_state(ais)
    service = desired.service["metadata"]["name"]
    assert len(service) <= 40 and DNS_1035.match(service)
    for revision in desired.revision_names.values():
        assert (
            len(revision) <= 63 and DNS_1035.match(revision) and revision.startswith(f"{service}-")
        )
    tags = [t["tag"] for t in desired.service["spec"]["traffic"]]
    assert len(tags) == len(set(tags))
    for tag in tags:
        assert DNS_1035.match(tag) and len(f"{tag}-{service}") <= 63
    for trigger in desired.triggers:
        assert len(trigger["metadata"]["name"]) <= 63
