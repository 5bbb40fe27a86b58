"""The event store's HTTP API, as the operator, the local run and `aisvc dlq` call it.

One client for every caller, so each sees the same failures the same way: a store that
cannot be reached or answers other than 2xx raises `EventStoreError` (a `SourceUnavailable`,
which makes a rollout observation unavailable) with the store's own reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from aiservice_functions import contract
from aiservice_functions.timestamps import rfc3339

from aiservice_operator.core.analysis import Quality, SourceUnavailable, VersionQuality

__all__ = ["EventStoreClient", "EventStoreError"]


class EventStoreError(SourceUnavailable):
    """The event store could not be reached or refused the request; the text says why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class EventStoreClient:
    """Calls to one event store, with its bearer token (needed by the query API only)."""

    url: str
    token: str | None = None
    timeout_seconds: float = 5.0
    client: httpx.Client | None = None
    """A client to reuse (tests, connection pooling); else one per call."""
    sink_key: bytes | None = field(default=None, repr=False)
    """Key of the audit ingest credential (the store's sink key)."""

    def request(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One call; a transport error or a status other than 2xx raises `EventStoreError`."""
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        base = self.url.rstrip("/")
        client = self.client or httpx.Client(timeout=timeout or self.timeout_seconds)
        try:
            response = client.request(method, base + path, headers=headers, **kwargs)
        except httpx.HTTPError as err:
            raise EventStoreError(f"cannot reach the event store at {base}: {err}") from err
        finally:
            if self.client is None:
                client.close()
        if response.status_code >= 300:
            raise EventStoreError(
                f"event store at {base} answered {response.status_code}: {_reason(response)}",
                response.status_code,
            )
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request`, and the answer's JSON body (a body that is not JSON is an error)."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as err:
            raise EventStoreError(f"event store at {self.url}: answer is not JSON") from err

    def dead_letters(
        self, *, namespace: str, name: str, targets: Collection[str], since: datetime
    ) -> int:
        """Dead letters of `name` received since `since` and attributed to any of `targets`
        (revision names or traffic tags), from `GET /v1/stats`."""
        params = {"namespace": namespace, "name": name, "since": rfc3339(since)}
        stats = self.json("GET", contract.EVENT_STORE_STATS_PATH, params=params)
        try:
            return sum(
                int(r["deadLetters"])
                for r in stats["revisions"]
                if r.get("namespace") == namespace
                and r.get("name") == name
                and r.get("revision") in targets
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EventStoreError(f"event store at {self.url}: unexpected stats: {err}") from err

    def canary_dead_letters(
        self, *, namespace: str, service: str, revision: str, model: str, since: datetime
    ) -> int:
        """Dead letters of the canary since `since`: those attributed to its revision name,
        its model tag or the `canary` tag."""
        return self.dead_letters(
            namespace=namespace, name=service, targets={revision, model, "canary"}, since=since
        )

    def quality(
        self,
        *,
        namespace: str,
        name: str,
        canary: str,
        stable: str,
        since: datetime,
        until: datetime,
        compare: str,
        tolerance: float | None,
    ) -> Quality:
        """The decision log's quality figures of `canary` against `stable` (model versions)
        over [since, until), from `GET .../quality` (one query in the store)."""
        params: dict[str, str] = {
            "canary": canary,
            "stable": stable,
            "since": rfc3339(since),
            "until": rfc3339(until),
            "compare": compare,
        }
        if tolerance is not None:
            params["tolerance"] = repr(tolerance)
        body = self.json("GET", contract.quality_path(namespace, name), params=params)
        try:
            versions = body["versions"]
            return Quality(
                canary=_version(versions[canary]),
                stable=_version(versions[stable]),
                paired=int(body["paired"]),
                agreed=int(body["agreed"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise EventStoreError(f"event store at {self.url}: unexpected quality: {err}") from err

    def send_audit(self, namespace: str, name: str, event: Mapping[str, Any]) -> None:
        """POST one structured-mode CloudEvent to the AIService's audit log."""
        self.request(
            "POST",
            contract.audit_path(namespace, name, self.sink_key),
            json=dict(event),
            headers={"Content-Type": "application/cloudevents+json"},
        )


def _version(data: Mapping[str, Any]) -> VersionQuality:
    return VersionQuality(
        answers=int(data["answers"]),
        outputs={str(k): int(v) for k, v in dict(data["outputs"]).items()},
        labelled=int(data["labelled"]),
        correct=int(data["correct"]),
    )


def _reason(response: httpx.Response) -> str:
    """The store's `{"error": ...}` text, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    reason = body.get("error") if isinstance(body, dict) else None
    return str(reason or response.text)[:300]
