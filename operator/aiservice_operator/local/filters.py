"""Knative Trigger filters, evaluated the way Knative Eventing's broker filter does.

Two forms exist on a Trigger: the legacy ``spec.filter.attributes`` (exact match; an
empty value matches any value, the attribute need not even be present) and the
``spec.filters`` dialect (exact, prefix, suffix, all, any, not, cesql). When both are
set, ``filters`` wins, as in Knative. CESQL is refused when the Trigger is loaded, with
a message saying so: an executor that silently passes or drops events on an expression
it cannot evaluate would misreport what the cluster does.

Pure: a filter is compiled once into a predicate over an event's context attributes
(strings, as they travel in ``ce-*`` headers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

Attributes = Mapping[str, str]
Predicate = Callable[[Attributes], bool]

LEAF_DIALECTS = ("exact", "prefix", "suffix")
DIALECTS = (*LEAF_DIALECTS, "all", "any", "not", "cesql")


class UnsupportedFilter(ValueError):
    """A Trigger filter this executor cannot evaluate faithfully; names the field."""


def attribute_strings(event: Mapping[str, Any]) -> dict[str, str]:
    """Context attributes (of an event dict or ``CloudEvent.get_attributes()``) as strings.

    Data never takes part in filtering, so ``data`` and ``data_base64`` are left out.
    """
    out: dict[str, str] = {}
    for name, value in event.items():
        if name in ("data", "data_base64") or value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            out[name] = value.isoformat().replace("+00:00", "Z")
        else:
            out[name] = str(value)
    return out


def _always(_: Attributes) -> bool:
    return True


def _leaf(dialect: str, attrs: Mapping[str, Any], where: str) -> Predicate:
    if not isinstance(attrs, Mapping) or not attrs:
        raise UnsupportedFilter(f"{where}: must map at least one attribute to a string")
    pairs: list[tuple[str, str]] = []
    for key, value in attrs.items():
        if not isinstance(value, str):
            raise UnsupportedFilter(f"{where}.{key}: must be a string")
        pairs.append((str(key), value))

    if dialect == "exact":

        def exact(event: Attributes) -> bool:
            return all(event.get(k) == v for k, v in pairs)

        return exact
    if dialect == "prefix":

        def prefix(event: Attributes) -> bool:
            return all(k in event and event[k].startswith(v) for k, v in pairs)

        return prefix

    def suffix(event: Attributes) -> bool:
        return all(k in event and event[k].endswith(v) for k, v in pairs)

    return suffix


def compile_filter(spec: Mapping[str, Any], where: str = "filters[0]") -> Predicate:
    """One entry of ``spec.filters`` as a predicate; raise `UnsupportedFilter` if it cannot be."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise UnsupportedFilter(f"{where}: must have exactly one of {', '.join(DIALECTS)}")
    ((dialect, body),) = spec.items()
    if dialect in LEAF_DIALECTS:
        return _leaf(dialect, body, f"{where}.{dialect}")
    if dialect in ("all", "any"):
        if not isinstance(body, list):
            raise UnsupportedFilter(f"{where}.{dialect}: must be a list of filters")
        children = [compile_filter(c, f"{where}.{dialect}[{i}]") for i, c in enumerate(body)]
        if not children:
            # Knative treats an empty all/any as no filter at all: it passes.
            return _always
        if dialect == "all":
            return lambda event: all(child(event) for child in children)
        return lambda event: any(child(event) for child in children)
    if dialect == "not":
        inner = compile_filter(body, f"{where}.not")
        return lambda event: not inner(event)
    if dialect == "cesql":
        raise UnsupportedFilter(
            f"{where}.cesql: CESQL filters are not supported by the local executor "
            "(use exact, prefix, suffix, all, any or not; a cluster evaluates CESQL)"
        )
    raise UnsupportedFilter(f"{where}: {dialect!r} is not a filter dialect ({', '.join(DIALECTS)})")


def compile_trigger(trigger_spec: Mapping[str, Any]) -> Predicate:
    """The predicate of a whole Trigger ``spec``: ``filters`` if set, else ``filter.attributes``."""
    filters = trigger_spec.get("filters")
    if filters:
        predicates = [compile_filter(f, f"spec.filters[{i}]") for i, f in enumerate(filters)]
        return lambda event: all(p(event) for p in predicates)
    attributes = (trigger_spec.get("filter") or {}).get("attributes") or {}
    pairs = [(str(k), str(v)) for k, v in attributes.items() if v != ""]

    def legacy(event: Attributes) -> bool:
        return all(event.get(k) == v for k, v in pairs)

    return legacy
