"""Reading an untrusted mapping field by field, collecting every error with its path.

`spec.parse` reads a manifest with it, so that one refusal lists every bad field in the
`spec.models[1].name` form `kubectl` uses, instead of stopping at the first.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from aiservice_functions.durations import to_iso8601

__all__ = ["Reader"]


class Reader:
    """Collects errors with field paths while reading an untrusted mapping."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    def mapping(self, value: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
        if value is None:
            if required:
                self.fail(path, "is required")
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be an object, not {type(value).__name__}")
            return {}
        return value

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        """A mapping of strings to strings (labels, annotations); None is empty."""
        out: dict[str, str] = {}
        for key, item in self.mapping(value, path).items():
            if not isinstance(key, str) or not isinstance(item, str):
                wrong = item if isinstance(key, str) else key
                self.fail(
                    f"{path}.{key}", f"must map strings to strings, not {type(wrong).__name__}"
                )
            else:
                out[key] = item
        return out

    def sequence(self, value: Any, path: str, max_items: int | None = None) -> Sequence[Any]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            self.fail(path, f"must be a list, not {type(value).__name__}")
            return ()
        if max_items is not None and len(value) > max_items:
            self.fail(path, f"must hold at most {max_items} entries, not {len(value)}")
        return value

    def unknown(self, data: Mapping[str, Any], path: str, known: set[str]) -> None:
        for key in sorted(set(data) - known):
            self.fail(f"{path}.{key}", "is not a known field")

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
        max_length: int = 253,
    ) -> str:
        value = data.get(key, default)
        where = f"{path}.{key}"
        if value is None:
            self.fail(where, "is required")
            return ""
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {type(value).__name__}")
            return ""
        if len(value) > max_length:
            self.fail(where, f"must be at most {max_length} characters")
        elif pattern is not None and not pattern.match(value):
            self.fail(where, f"{value!r} is not valid{': ' + hint if hint else ''}")
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: int,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = data.get(key, default)
        where = f"{path}.{key}"
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer, not {type(value).__name__}")
            return default
        if minimum is not None and value < minimum:
            self.fail(where, f"must be at least {minimum}, not {value}")
        if maximum is not None and value > maximum:
            self.fail(where, f"must be at most {maximum}, not {value}")
        return value

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: float,
        minimum: float = 0.0,
        maximum: float | None = None,
    ) -> float:
        value = data.get(key, default)
        where = f"{path}.{key}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"must be a number, not {type(value).__name__}")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and {maximum}" if maximum is not None else ""
            self.fail(where, f"must be between {minimum}{upper}, not {value}")
        return float(value)

    def boolean(self, data: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"must be true or false, not {value!r}")
            return default
        return value

    def choice(
        self, data: Mapping[str, Any], key: str, path: str, *, default: str, choices: Sequence[str]
    ) -> Any:
        value = data.get(key, default)
        if value not in choices:
            self.fail(f"{path}.{key}", f"must be one of {', '.join(choices)}, not {value!r}")
            return default
        return value

    def knative_duration(
        self, data: Mapping[str, Any], key: str, path: str, *, default: str
    ) -> str:
        """A duration bound for Knative, given as ISO-8601 or in the one duration grammar;
        returned as the ISO-8601 Knative reads."""
        value = self.string(data, key, path, default=default)
        if value:
            try:
                return to_iso8601(value)
            except ValueError as err:
                self.fail(f"{path}.{key}", str(err))
        return value
