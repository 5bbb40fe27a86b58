"""The one reader of request parameters for the event store's API and console.

Every query parameter, form field and JSON body field that holds a number, a time, a
flag, a cursor or a redirect target is read here, so that every one of them refuses the
same odd values (23-digit numbers, ``"²"``, years past 9999 after the zone is applied,
CR/LF in a path) with a :class:`ParamError` naming the parameter: a 400, never a 500
from a database bind or a ``datetime`` overflow further on. No Flask here: callers pass
``request.args``, ``request.form`` or a JSON object.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Final

from aiservice_functions.timestamps import parse_time

INT64_MAX: Final = 2**63 - 1
"""The largest ``seq``, cursor or count either database stores."""
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)
_SHOWN: Final = 40
"""Characters of a bad value quoted back in the error."""


class ParamError(ValueError):
    """A parameter is wrong; the message names it and says what is expected."""


def _raw(source: Mapping[str, Any], key: str) -> Any:
    value = source.get(key)
    return None if value is None or value == "" else value


def _shown(value: object) -> str:
    return repr(str(value)[:_SHOWN])


def integer(
    source: Mapping[str, Any],
    key: str,
    minimum: int = 0,
    maximum: int = INT64_MAX,
    *,
    label: str | None = None,
) -> int | None:
    """A whole number in ``[minimum, maximum]`` (ASCII digits, at most 19), or None
    when absent or empty."""
    value = _raw(source, key)
    if value is None:
        return None
    return whole(value, label or key, minimum, maximum)


def whole(value: object, name: str, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """``value`` (text or a JSON integer) as a whole number in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ParamError(f"{name} must be a whole number, got {_shown(value)}")
    text = str(value).strip()
    if not _INTEGER.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise ParamError(
            f"{name} must be a whole number from {minimum} to {maximum}, got {_shown(text)}"
        )
    return int(text)


def number(
    source: Mapping[str, Any], key: str, minimum: float = 0.0, maximum: float = math.inf
) -> float | None:
    """A finite number in ``[minimum, maximum]``, or None when absent or empty."""
    value = _raw(source, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParamError(f"{key} must be a number, got {_shown(value)}")
    try:
        result = float(value)
    except (ValueError, OverflowError):
        raise ParamError(f"{key} must be a number, got {_shown(value)}") from None
    if not math.isfinite(result) or not minimum <= result <= maximum:
        raise ParamError(f"{key} must be a finite number from {minimum:g} to {maximum:g}")
    return result


def timestamp(source: Mapping[str, Any], key: str, *, label: str | None = None) -> int | None:
    """An RFC 3339 time as epoch microseconds (UTC), or None when absent or empty; a
    time that falls outside years 1-9999 once its zone is applied is refused too."""
    value = _raw(source, key)
    if value is None:
        return None
    name = label or key
    if not isinstance(value, str):
        raise ParamError(f"{name} must be an RFC 3339 time, got {_shown(value)}")
    try:
        moment = parse_time(value).astimezone(UTC)
        return int(moment.timestamp() * 1_000_000)
    except (ValueError, OverflowError):
        raise ParamError(
            f"{name} must be an RFC 3339 time like 2026-01-31T12:00:00Z, got {_shown(value)}"
        ) from None


def boolean(source: Mapping[str, Any], key: str) -> bool | None:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, JSON booleans), or None."""
    value = _raw(source, key)
    if value is None or isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ParamError(f"{key} must be true or false, got {_shown(text)}")


def text(source: Mapping[str, Any], key: str) -> str | None:
    """A string, or None when absent or empty (a JSON number or list is refused)."""
    value = _raw(source, key)
    if value is not None and not isinstance(value, str):
        raise ParamError(f"{key} must be a string")
    return value


def cursor(source: Mapping[str, Any], key: str = "cursor") -> str | None:
    """A paging cursor as this store issues them (a positive ``seq``), or None."""
    value = integer(source, key, 1)
    return None if value is None else str(value)


def console_path(target: str | None, default: str = "/console/") -> str:
    """Where the console may send a browser next: a path of the console only, never
    another site, and nothing a header cannot carry (control characters)."""
    if (
        target
        and target.startswith("/console")
        and "//" not in target
        and "\\" not in target
        and target.isprintable()
    ):
        return target
    return default
