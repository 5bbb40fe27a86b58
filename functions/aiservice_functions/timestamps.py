"""RFC 3339 timestamps, written and read the same way by the operator and the services.

Written: UTC with a ``Z`` suffix, at a fixed precision (milliseconds in an AIService's
status, microseconds in the event store, which orders events by them). Read: any
RFC 3339 / ISO 8601 date-time; a value without a zone is taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

__all__ = ["parse_time", "rfc3339"]


def rfc3339(moment: datetime, *, digits: Literal[0, 3, 6] = 3) -> str:
    """``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SS[.fff[fff]]Z``; naive values are refused
    (a local time would be read back hours off)."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[: -(6 - digits) or None] if digits else text[:-7]) + "Z"


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 timestamp (``Z`` or ``z`` for UTC); naive values are UTC.
    A malformed one raises ``ValueError``."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
