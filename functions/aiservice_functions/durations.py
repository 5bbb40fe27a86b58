"""The one duration grammar of aiservice-operator, read the same way everywhere.

Everywhere a person writes a length of time — ``spec.rollout.interval``,
``spec.decisionLog.retention``, ``spec.delivery.*``, ``aisvc --since/--until/--timeout``,
the event store's ``--retention-max-age`` and read timeouts, the chart's values — it is a
Go-style duration with days: numbers with units, largest unit first, each unit at most
once, e.g. ``30s``, ``1m``, ``1h30m``, ``7d``, ``1d12h``, ``1.5h``, ``250ms``. Units: ``d``
(24 h), ``h``, ``m``, ``s``, ``ms``; days are whole numbers, the others may have a
fraction. Go's own ``time.ParseDuration`` has no days, and Knative's delivery fields take
ISO-8601 (``PT0.2S``): where a value goes to Knative, both forms are accepted and
:func:`to_iso8601` writes the form Knative reads.

The same grammar is a regular expression in the CRD (:data:`PATTERN`), so the apiserver
refuses what this module refuses. Hand-written because no kept library reads both Go
durations with days and ISO-8601 durations, and the CRD needs the grammar as a regex.
Arithmetic is decimal, so ``0.1s`` converts to ``PT0.1S`` exactly.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = [
    "EXAMPLES",
    "ISO8601_PATTERN",
    "MAX_SECONDS",
    "PATTERN",
    "parse_duration",
    "parse_iso8601",
    "parse_knative_duration",
    "to_iso8601",
]

_NUMBER = r"[0-9]+(\.[0-9]+)?"
PATTERN = rf"^([0-9]+d)?({_NUMBER}h)?({_NUMBER}m)?({_NUMBER}s)?({_NUMBER}ms)?$"
"""The grammar as an RE2-compatible regex (also matches the empty string: check that apart)."""
ISO8601_PATTERN = rf"^P({_NUMBER}D)?(T({_NUMBER}H)?({_NUMBER}M)?({_NUMBER}S)?)?$"
"""ISO-8601 durations as Knative's delivery fields take them (also matches ``P`` and
``PT``: check those apart)."""
EXAMPLES = "30s, 1m, 1h30m, 7d or 250ms"
MAX_SECONDS = 10_000 * 86_400
"""The longest duration accepted anywhere: 10,000 days (Go's own limit is ~292 years)."""

_GO = re.compile(
    r"^(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+(?:\.[0-9]+)?)h)?(?:(?P<m>[0-9]+(?:\.[0-9]+)?)m)?"
    r"(?:(?P<s>[0-9]+(?:\.[0-9]+)?)s)?(?:(?P<ms>[0-9]+(?:\.[0-9]+)?)ms)?$"
)
_ISO = re.compile(
    r"^P(?:(?P<d>[0-9]+(?:\.[0-9]+)?)D)?(?:T(?:(?P<h>[0-9]+(?:\.[0-9]+)?)H)?"
    r"(?:(?P<m>[0-9]+(?:\.[0-9]+)?)M)?(?:(?P<s>[0-9]+(?:\.[0-9]+)?)S)?)?$"
)
_UNIT_SECONDS = {
    "d": Decimal(86400),
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}


def _exact(text: str) -> Decimal:
    """Seconds in a Go-style duration with days, exactly; ``ValueError`` names the grammar."""
    match = _GO.match(text) if text else None
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as {EXAMPLES}")
    total = sum(
        (Decimal(v) * _UNIT_SECONDS[unit] for unit, v in match.groupdict().items() if v),
        Decimal(0),
    )
    if int(total) > MAX_SECONDS:  # whole seconds, as the CRD's CEL rule counts them
        raise ValueError(f"{text!r} is longer than 10000d")
    return total


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``1h30m`` or ``7d`` (the grammar above)."""
    return float(_exact(text))


def parse_iso8601(text: str) -> float:
    """Seconds in an ISO-8601 duration such as ``PT0.2S`` or ``P1DT2H`` (the Knative form)."""
    match = _ISO.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as PT0.5S")
    parts = {k: Decimal(v) if v else Decimal(0) for k, v in match.groupdict().items()}
    return float(parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"])


def _knative_exact(text: str) -> Decimal:
    """Seconds in a value bound for a Knative duration field, either form; the error
    names both."""
    if text.startswith("P"):
        return Decimal(str(parse_iso8601(text)))
    try:
        return _exact(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration such as {EXAMPLES}, nor ISO-8601 such as PT0.5S"
        ) from None


def parse_knative_duration(text: str) -> float:
    """Seconds in a value bound for a Knative duration field: ISO-8601 or the grammar above."""
    return float(_knative_exact(text))


def to_iso8601(text: str) -> str:
    """The ISO-8601 form Knative reads of a duration given in either form: an ISO-8601
    value is kept as written, ``1m30s`` becomes ``PT90S``, ``250ms`` ``PT0.25S``."""
    seconds = _knative_exact(text)
    if text.startswith("P"):
        return text
    return f"PT{format(seconds.normalize(), 'f')}S"
