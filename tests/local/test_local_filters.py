# ruff: noqa: E501  (the filter table reads best one case per line)
"""Knative Trigger filters, table-driven: every dialect, nesting, and the legacy form."""

from __future__ import annotations

from typing import Any

import pytest
from aiservice_operator.local.filters import (
    UnsupportedFilter,
    attribute_strings,
    compile_filter,
    compile_trigger,
)

EVENT = {
    "specversion": "1.0",
    "id": "e-1",
    "type": "com.example.review.submitted",
    "source": "/shop/reviews/eu",
    "subject": "order-42",
    "region": "eu-west",
    "priority": 3,
    "urgent": True,
    "data": {"type": "not an attribute"},
}

CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("exact match", {"exact": {"type": "com.example.review.submitted"}}, True),
    ("exact mismatch", {"exact": {"type": "com.example.review"}}, False),
    ("exact on all keys", {"exact": {"type": "com.example.review.submitted", "subject": "order-42"}}, True),
    ("exact one key wrong", {"exact": {"type": "com.example.review.submitted", "subject": "x"}}, False),
    ("exact missing attribute", {"exact": {"missing": "x"}}, False),
    ("exact extension", {"exact": {"region": "eu-west"}}, True),
    ("exact integer extension as string", {"exact": {"priority": "3"}}, True),
    ("exact boolean extension as string", {"exact": {"urgent": "true"}}, True),
    ("data is never filtered on", {"exact": {"data": "x"}}, False),
    ("prefix", {"prefix": {"type": "com.example."}}, True),
    ("prefix mismatch", {"prefix": {"type": "org.example."}}, False),
    ("prefix missing attribute", {"prefix": {"missing": ""}}, False),
    ("prefix empty matches present", {"prefix": {"source": ""}}, True),
    ("suffix", {"suffix": {"source": "/eu"}}, True),
    ("suffix mismatch", {"suffix": {"source": "/us"}}, False),
    ("all of two", {"all": [{"prefix": {"type": "com."}}, {"suffix": {"source": "eu"}}]}, True),
    ("all one fails", {"all": [{"prefix": {"type": "com."}}, {"suffix": {"source": "us"}}]}, False),
    ("any one holds", {"any": [{"exact": {"subject": "x"}}, {"exact": {"subject": "order-42"}}]}, True),
    ("any none holds", {"any": [{"exact": {"subject": "x"}}, {"exact": {"subject": "y"}}]}, False),
    ("not", {"not": {"exact": {"region": "us"}}}, True),
    ("not negates", {"not": {"exact": {"region": "eu-west"}}}, False),
    ("not of missing attribute", {"not": {"exact": {"missing": "x"}}}, True),
    ("empty all passes", {"all": []}, True),
    ("empty any passes", {"any": []}, True),
    (
        "nested: not(any(all(...), exact))",
        {"not": {"any": [{"all": [{"prefix": {"type": "com."}}, {"exact": {"region": "us"}}]},
                         {"exact": {"subject": "nope"}}]}},
        True,
    ),
    (
        "nested: all(any(prefix, not(suffix)), not(not(exact)))",
        {"all": [{"any": [{"prefix": {"source": "/x"}}, {"not": {"suffix": {"source": "/us"}}}]},
                 {"not": {"not": {"exact": {"subject": "order-42"}}}}]},
        True,
    ),
    (
        "nested: any(not(prefix), all(exact, not(any(...))))",
        {"any": [{"not": {"prefix": {"type": "com."}}},
                 {"all": [{"exact": {"region": "eu-west"}},
                          {"not": {"any": [{"exact": {"priority": "3"}}, {"exact": {"subject": "x"}}]}}]}]},
        False,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "spec", "expected"), CASES, ids=[c[0] for c in CASES])
def test_filter_dialect(name: str, spec: dict[str, Any], expected: bool) -> None:
    assert compile_filter(spec)(attribute_strings(EVENT)) is expected


def test_trigger_requires_every_filter_entry() -> None:
    attrs = attribute_strings(EVENT)
    both = {"filters": [{"prefix": {"type": "com."}}, {"exact": {"region": "eu-west"}}]}
    assert compile_trigger(both)(attrs)
    one_fails = {"filters": [{"prefix": {"type": "com."}}, {"exact": {"region": "us"}}]}
    assert not compile_trigger(one_fails)(attrs)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"type": "com.example.review.submitted"}, True),
        ({"type": "com.example.review.submitted", "source": "/shop/reviews/eu"}, True),
        ({"type": "com.example.other"}, False),
        ({"type": ""}, True),  # empty value: any value
        ({"missing": ""}, True),  # empty value matches even an absent attribute
        ({"missing": "x"}, False),
        ({}, True),
    ],
)
def test_legacy_filter_attributes(attributes: dict[str, str], expected: bool) -> None:
    predicate = compile_trigger({"filter": {"attributes": attributes}})
    assert predicate(attribute_strings(EVENT)) is expected


def test_filters_win_over_filter_when_both_are_set() -> None:
    spec = {
        "filter": {"attributes": {"type": "never.this"}},
        "filters": [{"exact": {"region": "eu-west"}}],
    }
    assert compile_trigger(spec)(attribute_strings(EVENT))


def test_no_filter_matches_everything() -> None:
    assert compile_trigger({})(attribute_strings(EVENT))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cesql": "type = 'x'"}, "spec.filters[0].cesql: CESQL filters are not supported"),
        ({"all": [{"any": [{"cesql": "true"}]}]}, "spec.filters[0].all[0].any[0].cesql"),
        ({"regex": {"type": ".*"}}, "'regex' is not a filter dialect"),
        ({"exact": {"type": 3}}, "spec.filters[0].exact.type: must be a string"),
        ({"exact": {}}, "must map at least one attribute"),
        ({"exact": {"type": "a"}, "prefix": {"type": "b"}}, "exactly one of"),
        ({"all": {"exact": {"type": "a"}}}, "must be a list"),
    ],
)
def test_unsupported_filters_are_refused_with_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedFilter) as err:
        compile_trigger({"filters": [spec]})
    assert message in str(err.value)
