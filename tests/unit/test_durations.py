"""The one duration grammar (`aiservice_functions.durations`): what it reads, what it
refuses, that the CRD's regex is the same grammar, and that every place a person writes
a duration (spec fields, `aisvc --since`, `aisvc up --idle`, the event store's options)
takes it."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

import pytest
import typer
from aiservice_functions.durations import (
    ISO8601_PATTERN,
    PATTERN,
    parse_duration,
    parse_iso8601,
    parse_knative_duration,
    to_iso8601,
)
from aiservice_functions.event_store.__main__ import duration as store_duration
from aiservice_functions.timestamps import parse_time
from aiservice_operator.cli.dlq import _when
from aiservice_operator.cli.local import _duration as up_duration

from tests.support.schemas import AISERVICE_CRD, crd_schema, load_crd

READ = [
    ("30s", 30),
    ("1m", 60),
    ("1h30m", 5400),
    ("7d", 7 * 86400),
    ("1d12h", 36 * 3600),
    ("1.5h", 5400),
    ("250ms", 0.25),
    ("1m30s500ms", 90.5),
    ("0s", 0),
    ("10000d", 10000 * 86400),
]
REFUSED = ["", "30", "1 m", "1.5d", "30m1h", "1h1h", "PT30S", "-1s", "1s1m", "10000d1s", "1w"]


@pytest.mark.parametrize(("text", "seconds"), READ)
def test_reads_go_style_durations_with_days(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", REFUSED)
def test_refuses_other_text_naming_the_grammar(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration such as|longer than 10000d"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "_"), READ)
def test_the_crd_regex_reads_what_the_parser_reads(text: str, _: float) -> None:
    assert re.match(PATTERN, text)


@pytest.mark.parametrize("text", [t for t in REFUSED if t and t != "10000d1s"])
def test_the_crd_regex_refuses_what_the_parser_refuses(text: str) -> None:
    assert not re.match(PATTERN, text)


def test_the_crd_carries_this_modules_grammar() -> None:
    """The CRD's CEL rules hold the same regex (doubled backslashes inside a CEL string)."""
    spec = crd_schema(load_crd(AISERVICE_CRD), "v1alpha1")["properties"]["spec"]["properties"]
    fields = [
        spec["rollout"]["properties"]["interval"],
        spec["decisionLog"]["properties"]["retention"],
        spec["delivery"]["properties"]["backoffDelay"],
        spec["delivery"]["properties"]["timeout"],
    ]
    for field in fields:
        rules = " ".join(r["rule"] for r in field["x-kubernetes-validations"])
        assert PATTERN.replace("\\", "\\\\") in rules
    for field in fields[2:]:
        rules = " ".join(r["rule"] for r in field["x-kubernetes-validations"])
        assert ISO8601_PATTERN.replace("\\", "\\\\") in rules


@pytest.mark.parametrize(
    ("text", "seconds"), [("PT0.2S", 0.2), ("PT30S", 30), ("P1DT2H", 93600), ("PT1M", 60)]
)
def test_iso8601(text: str, seconds: float) -> None:
    assert parse_iso8601(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["P", "PT", "P1DT", "30s", "", "PT-1S"])
def test_iso8601_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_iso8601(text)


@pytest.mark.parametrize(
    ("text", "iso"),
    [("250ms", "PT0.25S"), ("1m30s", "PT90S"), ("0.1s", "PT0.1S"), ("1d", "PT86400S"),
     ("PT0.2S", "PT0.2S"), ("P1DT2H", "P1DT2H")],
)  # fmt: skip
def test_knative_fields_get_iso8601(text: str, iso: str) -> None:
    assert to_iso8601(text) == iso
    assert parse_iso8601(iso) == pytest.approx(parse_knative_duration(text))


def test_a_knative_duration_error_names_both_forms() -> None:
    with pytest.raises(ValueError, match=r"duration such as .* nor ISO-8601"):
        to_iso8601("30 s")


def test_cli_since_takes_the_same_grammar() -> None:
    before = datetime.now(UTC)
    for text, seconds in [("1h30m", 5400), ("1d", 86400), ("1d12h", 129600)]:
        when = _when(text, "--since")
        assert when is not None
        assert abs((before - parse_time(when)) - timedelta(seconds=seconds)) < timedelta(seconds=5)
    assert _when("2026-01-01T00:00:00Z", "--since") == "2026-01-01T00:00:00Z"
    with pytest.raises(typer.BadParameter, match="1h30m"):
        _when("yesterday", "--since")


def test_up_idle_and_store_options_take_the_same_grammar() -> None:
    assert up_duration("1m30s", "--idle") == 90
    with pytest.raises(typer.BadParameter, match="duration such as"):
        up_duration("90 seconds", "--idle")
    assert store_duration("1d12h") == 36 * 3600
    assert store_duration("250ms") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match="duration such as"):
        store_duration("2 weeks")
