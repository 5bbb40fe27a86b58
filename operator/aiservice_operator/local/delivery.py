"""Knative delivery semantics as pure decisions: what to do after each attempt.

Mirrors Knative Eventing's dispatcher: ``retry`` extra attempts after the first;
``linear`` backoff waits ``backoffDelay * n``, ``exponential`` waits
``backoffDelay * 2^n`` before retry ``n`` (1-based); ``timeout`` bounds each attempt.
Network errors, timeouts, 5xx, 404, 408, 409 and 429 are retried; any other non-2xx
answer is dead-lettered at once. Dead letters carry ``knativeerrordest``,
``knativeerrorcode`` and ``knativeerrordata`` (the answer body, base64, at most 1024
characters), as the Knative dispatcher adds them.

The I/O (posting, sleeping) lives in ``dispatcher.py``; this module only decides.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiservice_functions import contract
from aiservice_functions.durations import parse_iso8601

RETRYABLE_4XX = frozenset({404, 408, 409, 429})
MAX_ERROR_DATA_CHARS = 1024
"""Knative caps the base64 of the failed answer's body at this many characters."""

Outcome = Literal["delivered", "retry", "dead-letter"]


@dataclass(frozen=True)
class DeliveryPolicy:
    """A Trigger's ``spec.delivery`` in seconds; defaults are Knative's (no retry, no DLS)."""

    retry: int = 0
    backoff_policy: Literal["linear", "exponential"] = "exponential"
    backoff_delay: float = 0.0
    timeout: float | None = None
    dead_letter_uri: str = ""
    dead_letter_ref: Mapping[str, Any] | None = None

    @classmethod
    def from_knative(cls, delivery: Mapping[str, Any] | None) -> DeliveryPolicy:
        """Read a Knative ``DeliverySpec`` (ISO-8601 durations), naming any bad field."""
        d = delivery or {}
        policy = d.get("backoffPolicy", "exponential")
        if policy not in ("linear", "exponential"):
            raise ValueError(
                f"spec.delivery.backoffPolicy: {policy!r} is not linear or exponential"
            )
        retry = d.get("retry", 0)
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"spec.delivery.retry: must be an integer >= 0, not {retry!r}")
        sink = d.get("deadLetterSink") or {}
        try:
            delay = parse_iso8601(d["backoffDelay"]) if d.get("backoffDelay") else 0.0
            timeout = parse_iso8601(d["timeout"]) if d.get("timeout") else None
        except ValueError as err:
            raise ValueError(f"spec.delivery: {err}") from None
        return cls(
            retry=retry,
            backoff_policy=policy,
            backoff_delay=delay,
            timeout=timeout,
            dead_letter_uri=str(sink.get("uri", "")),
            dead_letter_ref=sink.get("ref"),
        )

    @property
    def has_dead_letter_sink(self) -> bool:
        return bool(self.dead_letter_uri or self.dead_letter_ref)


def backoff_seconds(policy: DeliveryPolicy, retry_number: int) -> float:
    """Wait before retry ``retry_number`` (1 for the first retry)."""
    if policy.backoff_policy == "linear":
        return policy.backoff_delay * retry_number
    return policy.backoff_delay * float(2**retry_number)


def retry_schedule(policy: DeliveryPolicy) -> list[float]:
    """Every wait a failing event goes through before it is dead-lettered."""
    return [backoff_seconds(policy, n) for n in range(1, policy.retry + 1)]


def is_retryable(status: int | None) -> bool:
    """Whether an attempt that ended with ``status`` (None: no answer at all) is retried."""
    if status is None:
        return True
    return status >= 500 or status in RETRYABLE_4XX


def decide(policy: DeliveryPolicy, attempt: int, status: int | None) -> Outcome:
    """After attempt ``attempt`` (1-based) ended with ``status``: done, retry, or dead-letter."""
    if status is not None and 200 <= status < 300:
        return "delivered"
    if is_retryable(status) and attempt <= policy.retry:
        return "retry"
    return "dead-letter"


def error_data(body: bytes) -> str:
    """The failed answer's body as Knative puts it in ``knativeerrordata``: base64, ≤1024 chars."""
    keep = (MAX_ERROR_DATA_CHARS // 4) * 3  # the longest prefix whose base64 fits
    return base64.b64encode(body[:keep]).decode("ascii")


def dead_letter_extensions(dest: str, status: int | None, body: bytes) -> dict[str, str]:
    """The extensions Knative adds to an event it dead-letters.

    Without any answer (connection refused, timeout) there is no status code; the error
    text is carried as ``knativeerrordata`` so the dead letter still says what went wrong.
    """
    ext = {contract.EXT_ERROR_DEST: dest, contract.EXT_ERROR_DATA: error_data(body)}
    if status is not None:
        ext[contract.EXT_ERROR_CODE] = str(status)
    return ext
