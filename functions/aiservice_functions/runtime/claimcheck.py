"""Claim-check: events whose data lives in object storage (CloudEvents ``dataref``).

An event with no data and a ``dataref`` extension naming ``s3://bucket/key`` (the bucket
of ``spec.function.claimCheck``) or ``https://...`` is resolved before ``decode``: the
object is fetched with a size limit and a deadline, its content type checked against the
event's ``datacontenttype`` and the allowed types, its sha256 against the ``datasha256``
extension when the event carries one, and the function sees an ordinary event whose data
is the object's bytes. Failures follow the runtime's error contract, so a bad reference is
dead-lettered at once and an outage is retried:

=====  ==========================================================================
400    ``datasha256`` is not 64 hex digits
413    the object is larger than ``AISVC_CLAIMCHECK_MAX_BYTES``
415    its content type is not the declared one, or not an allowed one
422    no such object, digest mismatch, a bucket other than the configured one, an
       internal ``https`` host not allow-listed, a redirect, an unsupported scheme, or
       references not enabled for this function
503    the store is unreachable, answers 5xx, refuses the function's credentials, or
       the fetch passes ``AISVC_CLAIMCHECK_TIMEOUT_SECONDS``
=====  ==========================================================================

Outputs a function returns as :class:`~aiservice_functions.runtime.function.ByReference`
are written to ``<bucket>/<prefix><sha256>`` (content-addressed, so a retried event writes
the same key) and the reply carries the reference instead of the bytes.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiservice_functions import contract, object_store
from aiservice_functions.cloudevents_http import CloudEvent, ReceivedEvent
from aiservice_functions.targets import Resolve, TargetPolicy

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 256 * 1024
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})


class RefFailed(Exception):
    """A reference that cannot be resolved; ``status`` follows the error contract."""

    def __init__(self, status: int, reason: str, field: str = contract.EXT_DATAREF) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class ClaimCheckConfig:
    """``spec.function.claimCheck`` as the runtime gets it (``AISVC_CLAIMCHECK_*``)."""

    bucket: str | None = None
    endpoint: str | None = None
    prefix: str = ""
    max_bytes: int = contract.DEFAULT_CLAIMCHECK_MAX_BYTES
    timeout_seconds: float = 30.0
    allow_hosts: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.bucket is not None or bool(self.allow_hosts)


def wants_resolving(event: CloudEvent) -> bool:
    """Whether ``event`` carries a reference instead of data (data given inline wins)."""
    return event.get_data() is None and bool(event.get_extension(contract.EXT_DATAREF))


def may_carry_reference(headers: dict[str, str], body: bytes) -> bool:
    """A cheap test before parsing: whether resolving may block (so the caller moves the
    work off its event loop). False positives cost a thread hop, never a wrong answer."""
    return "ce-dataref" in headers or b'"dataref"' in body


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead anywhere, past the target check: refuse to follow it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        raise RefFailed(422, "the reference answered with a redirect, which is not followed")


class ClaimCheck:
    """Resolves references and stores outputs for one served function (thread-safe)."""

    def __init__(self, config: ClaimCheckConfig, *, resolve_host: Resolve | None = None) -> None:
        self.config = config
        policy = TargetPolicy.parse(
            config.allow_hosts, contract.ENV_CLAIMCHECK_ALLOW_HOSTS, public=True
        )
        if resolve_host is not None:
            policy = TargetPolicy(policy.allow, resolve_host, policy.allow_list, public=True)
        self.policy = policy
        self._opener = urllib.request.build_opener(_NoRedirects)
        self._client: Any = None
        self._lock = threading.Lock()

    # --- inputs ---------------------------------------------------------------------

    def resolve(self, event: CloudEvent) -> CloudEvent:
        """``event`` with its referenced data fetched and checked; raises :class:`RefFailed`."""
        ref = str(event.get_extension(contract.EXT_DATAREF))
        expected = _expected_digest(event)
        if not self.config.enabled:
            raise RefFailed(
                422,
                "this function takes no data references (its AIService sets no "
                "spec.function.claimCheck); send the data inline",
            )
        scheme = urlsplit(ref).scheme.lower()
        if scheme == "s3":
            found_type, data = self._fetch_s3(ref)
        elif scheme in ("https", "http"):
            found_type, data = self._fetch_http(ref)
        else:
            raise RefFailed(422, f"dataref {ref[:200]!r}: use s3://bucket/key or https://")
        content_type = self._content_type(event.get_datacontenttype(), found_type)
        if expected is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise RefFailed(
                    422,
                    f"referenced data does not match datasha256: expected {expected}, got {actual}",
                    contract.EXT_DATASHA256,
                )
        attributes = dict(event.get_attributes())
        attributes["datacontenttype"] = content_type
        return ReceivedEvent(attributes, data)

    def _content_type(self, declared: str | None, found: str | None) -> str:
        declared_base, found_base = _base_type(declared), _base_type(found)
        if declared_base and found_base not in ("", declared_base, *_GENERIC_TYPES):
            raise RefFailed(
                415,
                f"the event declares datacontenttype {declared_base!r} but the referenced "
                f"object is {found_base!r}",
                "datacontenttype",
            )
        effective = declared or found or "application/octet-stream"
        allowed = self.config.content_types
        if allowed and _base_type(effective) not in allowed:
            raise RefFailed(
                415,
                f"referenced data of type {_base_type(effective)!r} is not accepted "
                f"(accepted: {', '.join(allowed)})",
                "datacontenttype",
            )
        return effective

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = object_store.client(
                        endpoint_url=self.config.endpoint,
                        timeout_s=self.config.timeout_seconds,
                        attempts=2,
                    )
                except object_store.ObjectStoreError as err:
                    raise RefFailed(503, f"claim-check store: {err}") from None
            return self._client

    def _fetch_s3(self, ref: str) -> tuple[str | None, bytes]:
        try:
            bucket, key = object_store.parse_s3_uri(ref)
        except ValueError as err:
            raise RefFailed(422, f"dataref {err}") from None
        if bucket != self.config.bucket:
            raise RefFailed(
                422,
                f"dataref names bucket {bucket[:100]!r}; this function reads references from "
                f"{self.config.bucket!r} only",
            )
        deadline = time.monotonic() + self.config.timeout_seconds
        try:
            response = self._s3().get_object(Bucket=bucket, Key=key)
        except RefFailed:
            raise
        except Exception as err:  # botocore raises ClientError and transport errors
            raise self._s3_failure(ref, err) from None
        body = response["Body"]
        try:
            self._check_size(int(response.get("ContentLength") or 0))
            data = self._read(iter(lambda: body.read(_CHUNK), b""), deadline)
        except RefFailed:
            raise
        except Exception as err:
            raise RefFailed(503, f"reading {ref[:200]} failed: {type(err).__name__}") from None
        finally:
            body.close()
        return response.get("ContentType"), data

    @staticmethod
    def _s3_failure(ref: str, err: Exception) -> RefFailed:
        code = object_store.error_code(err)
        if code in object_store.NOT_FOUND_CODES:
            return RefFailed(422, f"no such object: {ref[:200]}")
        if code:
            # Access denied, missing bucket, throttling: the function's set-up or the
            # store, not the event; retried so that fixing them lets the event through.
            return RefFailed(503, f"object store refused {ref[:200]}: {code}")
        return RefFailed(503, f"object store unreachable: {type(err).__name__}")

    def _fetch_http(self, ref: str) -> tuple[str | None, bytes]:
        try:
            self.policy.check(ref, "dataref")
        except ValueError as err:
            raise RefFailed(422, str(err)) from None
        deadline = time.monotonic() + self.config.timeout_seconds
        request = urllib.request.Request(ref, headers={"User-Agent": "aisvc-runtime"})
        try:
            with self._opener.open(request, timeout=self.config.timeout_seconds) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit():
                    self._check_size(int(length))
                data = self._read(iter(lambda: response.read(_CHUNK), b""), deadline)
                return response.headers.get("Content-Type"), data
        except RefFailed:
            raise
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500 and err.code not in (408, 429):
                raise RefFailed(422, f"dataref answered {err.code} {err.reason}") from None
            raise RefFailed(503, f"dataref answered {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise RefFailed(503, f"dataref unreachable: {reason}") from None

    def _check_size(self, size: int) -> None:
        if size > self.config.max_bytes:
            raise RefFailed(
                413,
                f"referenced object has {size} bytes, more than "
                f"{contract.ENV_CLAIMCHECK_MAX_BYTES}={self.config.max_bytes}",
            )

    def _read(self, chunks: Iterator[bytes], deadline: float) -> bytes:
        parts: list[bytes] = []
        total = 0
        for chunk in chunks:
            total += len(chunk)
            self._check_size(total)
            if time.monotonic() > deadline:
                raise RefFailed(
                    503,
                    f"fetching the reference took longer than "
                    f"{self.config.timeout_seconds:g}s ({contract.ENV_CLAIMCHECK_TIMEOUT_SECONDS})",
                )
            parts.append(chunk)
        return b"".join(parts)

    # --- outputs --------------------------------------------------------------------

    def store(self, data: bytes, content_type: str) -> tuple[str, str]:
        """Write an output under this function's prefix; its ``(s3 URI, sha256)``."""
        if self.config.bucket is None:
            raise RefFailed(
                500, "the function returned data by reference, but no claim-check bucket is set"
            )
        digest = hashlib.sha256(data).hexdigest()
        key = f"{self.config.prefix}{digest}"
        self._s3().put_object(
            Bucket=self.config.bucket, Key=key, Body=data, ContentType=content_type
        )
        return f"s3://{self.config.bucket}/{key}", digest


def _expected_digest(event: CloudEvent) -> str | None:
    value = event.get_extension(contract.EXT_DATASHA256)
    if value is None or value == "":
        return None
    text = str(value).strip()
    if not _SHA256.match(text):
        raise RefFailed(400, "datasha256 must be 64 hex digits", contract.EXT_DATASHA256)
    return text.lower()
