"""Ingest, free of any HTTP server: from a request's path, query, headers and body to a
record for the group writer, and from the writer's outcome to the answer.

Both fronts use it: the uvicorn ingest front (:mod:`.ingest_front`, production), which
awaits the writer on its event loop, and the Flask app (:mod:`.app`, which also serves the
same routes for WSGI servers and tests), which waits on a thread. So the rules — which
paths ingest, who may post, what each outcome answers — are written once, here.

Paths (see :mod:`aiservice_functions.contract`):

- ``POST /v1/namespaces/{ns}/aiservices/{name}/dead-letters[/{credential}]``
- ``POST /v1/namespaces/{ns}/aiservices/{name}/audit[/{credential}]``
- ``POST /v1/namespaces/{ns}/aiservices/{name}/decisions/{role}[/{credential}]``

Answers: dead letters and audit events ``201 {"seq", "created": true}`` or ``200`` for a
redelivery; decisions an empty ``201``/``200`` with ``Aisvc-Decision-Seq`` (Knative takes
a body that is not a CloudEvent for a failed delivery), ``202`` when the chain is not
sampled; ``400``/``413``/``415`` with a reason; ``401``/``403`` for a missing or wrong
credential; ``429`` with ``Retry-After`` when the writer's queue is full; ``503`` when the
database is unavailable. Knative's delivery retries ``429`` and ``5xx``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiservice_functions.cloudevents_http import InvalidEvent, parse_request
from aiservice_functions.event_store import auth, ingest
from aiservice_functions.event_store.database import StoreUnavailable
from aiservice_functions.event_store.decision_records import (
    ROLE_OF_PATH,
    LogSettings,
    to_decision,
)
from aiservice_functions.event_store.kube_auth import ReviewUnavailable
from aiservice_functions.event_store.records import Kind, now_us, to_us
from aiservice_functions.event_store.service import EventStore
from aiservice_functions.event_store.writer import GroupTable, Overloaded, RecordRefused
from aiservice_functions.timestamps import parse_time

log = logging.getLogger(__name__)

SEQ_HEADER: Final = "Aisvc-Decision-Seq"
SAMPLED_HEADER: Final = "Aisvc-Sampled"
RETRY_AFTER_S: Final = 1
"""What ``Retry-After`` says when the writer's queue is full: one commit cycle is
milliseconds, so a second is ample and keeps Knative's retries from piling up."""
_PATH: Final = re.compile(
    r"^/v1/namespaces/(?P<namespace>[^/]+)/aiservices/(?P<name>[^/]+)/"
    r"(?:(?P<kind>dead-letters|audit)|decisions/(?P<role>[^/]+))(?:/(?P<credential>[^/]+))?$"
)
_KIND_OF_PATH: Final[dict[str, Kind]] = {"dead-letters": "dead-letter", "audit": "audit"}

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers, body."""

    status: int
    headers: Headers = ()
    body: bytes = b""


@dataclass(frozen=True)
class Write:
    """A record to commit, and how to answer once it is committed."""

    table: GroupTable
    record: Any
    answer: Callable[[int, bool], Answer]


def error(status: int, reason: str, headers: Headers = ()) -> Answer:
    """The store's error answer: ``{"error": reason}``."""
    body = json.dumps({"error": reason}).encode()
    return Answer(status, (("Content-Type", "application/json"), *headers), body)


def is_ingest(method: str, path: str) -> bool:
    """Whether a request is ingest (the fronts route it here)."""
    return method == "POST" and _PATH.match(path) is not None


@dataclass(frozen=True)
class Intake:
    """The ingest rules of one store process."""

    store: EventStore
    sink_key: bytes | None
    max_body_bytes: int
    authenticator: auth.Authenticator
    _runs_logged: OrderedDict[str, None] = field(default_factory=OrderedDict, compare=False)
    """Reprocessing runs already in the audit log (one line per run, not per record)."""
    _runs_lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    def needs_thread(self, path: str) -> bool:
        """Whether preparing this ingest may block on the Kubernetes API (a reprocessing
        record in ``kubernetes`` mode): the ingest front then prepares it off the loop."""
        match = _PATH.match(path)
        return (
            self.authenticator.mode == "kubernetes"
            and match is not None
            and ROLE_OF_PATH.get(match["role"] or "") == "reprocessed"
        )

    def prepare(
        self, path: str, query: Mapping[str, Sequence[str]], headers: Mapping[str, str], body: bytes
    ) -> Write | Answer:
        """The record this request asks to store, or the answer that refuses it.
        ``headers`` must have lower-case names."""
        match = _PATH.match(path)
        if match is None:
            return error(404, "not an ingest path")
        namespace, name = match["namespace"], match["name"]
        credential = match["credential"]
        if len(body) > self.max_body_bytes:
            return self.too_large(path)
        try:
            if match["kind"] is not None:
                return self._event(_KIND_OF_PATH[match["kind"]], namespace, name, credential,
                                   headers, body)  # fmt: skip
            return self._decision(match["role"], namespace, name, credential, query, headers, body)
        except InvalidEvent as err:
            self._count(match["kind"], match["role"], "refused")
            what = _KIND_OF_PATH.get(match["kind"] or "", f"decision {match['role']}"[:60])
            log.info("refused %s for %s/%s: %s", what, namespace[:63], name[:63], err.reason)
            return error(err.status, err.reason)

    def too_large(self, path: str) -> Answer:
        """The answer to a body past the limit (a front may know before reading it all)."""
        match = _PATH.match(path)
        if match is not None:
            self._count(match["kind"], match["role"], "refused")
        return error(413, f"body larger than {self.max_body_bytes} bytes")

    def failed(self, path: str, err: BaseException) -> Answer:
        """The answer when the writer could not commit a prepared record."""
        match = _PATH.match(path)
        kind, role = (match["kind"], match["role"]) if match else (None, None)
        if isinstance(err, Overloaded):
            self._count(kind, role, "overloaded")
            return error(
                429,
                f"the store is behind ({err}); retry later",
                (("Retry-After", str(RETRY_AFTER_S)),),
            )
        if isinstance(err, RecordRefused):
            self._count(kind, role, "refused")
            return error(400, str(err))
        if isinstance(err, (StoreUnavailable, TimeoutError)):
            self._count(kind, role, "unavailable")
            log.warning("database unavailable: %s", err)
            return error(503, "storage unavailable, retry later", (("Retry-After", "1"),))
        raise err

    # --- dead letters and audit events ------------------------------------------------

    def _event(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        credential: str | None,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Write | Answer:
        refusal = ingest.credential_refusal(self.sink_key, namespace, name, credential)
        if refusal is not None:
            self.store.metrics.ingest(kind, "refused")
            if credential is not None:
                log.warning("refused %s for %s/%s: wrong sink credential", kind,
                            namespace[:63], name[:63])  # fmt: skip
            return error(*refusal)
        record = ingest.to_record(kind, namespace, name, headers, body)
        metrics = self.store.metrics

        def answer(seq: int, created: bool) -> Answer:
            metrics.ingest(kind, "stored" if created else "duplicate")
            if created and kind == "dead-letter":
                metrics.dead_letter(namespace, name, record.revision, record.error_code)
            body = json.dumps({"seq": seq, "created": created}).encode()
            return Answer(201 if created else 200, (("Content-Type", "application/json"),), body)

        return Write(self.store.events, record, answer)

    # --- decisions --------------------------------------------------------------------

    def _decision(
        self,
        role_path: str,
        namespace: str,
        name: str,
        credential: str | None,
        query: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Write | Answer:
        metrics = self.store.metrics
        if role_path not in ROLE_OF_PATH:
            return error(
                404, f"no decision-log part {role_path[:40]!r}: one of {', '.join(ROLE_OF_PATH)}"
            )
        role = ROLE_OF_PATH[role_path]
        ingest.check_name("namespace", namespace)
        ingest.check_name("AIService name", name)
        run_id: str | None = None
        if role == "reprocessed":
            caller = self.authenticator.caller(headers.get("authorization"), need="replay")
            if isinstance(caller, auth.Refusal):
                return error(caller.status, caller.reason, _challenge(caller.status))
            try:
                allowed = caller.may("reprocess", namespace)
            except ReviewUnavailable as err:
                return error(503, str(err))
            if not allowed:
                return error(
                    403,
                    f"{caller.name} may not reprocess in namespace {namespace!r} "
                    "(create aiservices/reprocess)",
                )
            run_id = (query.get("run") or [""])[-1]
            if not run_id or len(run_id) > 128:
                raise InvalidEvent("reprocessed records need ?run= (at most 128 characters)")
            self._audit_run(run_id, caller.name, namespace, name)
        else:
            refused = ingest.credential_refusal(self.sink_key, namespace, name, credential)
            if refused is not None:
                metrics.decision(role, "refused", None)
                return error(*refused)
        settings = _settings(tuple((k, tuple(v)) for k, v in query.items()))
        event = parse_request(headers, body).event
        record = to_decision(
            event,
            namespace=namespace,
            name=name,
            role=role,
            settings=settings,
            received_at=now_us(),
            run_id=run_id,
        )
        if record is None:
            metrics.decision(role, "unsampled", None)
            return Answer(202, ((SAMPLED_HEADER, "false"),))

        def answer(seq: int, created: bool) -> Answer:
            metrics.decision(
                role,
                "stored" if created else "duplicate",
                _lag_s(record.event_time, record.received_at),
            )
            # No body: Knative takes a non-empty answer that is not a CloudEvent as a
            # failed delivery (it would retry); the seq goes in a header instead.
            return Answer(201 if created else 200, ((SEQ_HEADER, str(seq)),))

        return Write(self.store.decisions, record, answer)

    def _audit_run(self, run_id: str, by: str, namespace: str, name: str) -> None:
        with self._runs_lock:
            if run_id in self._runs_logged:
                return
            self._runs_logged[run_id] = None
            while len(self._runs_logged) > 1024:
                self._runs_logged.popitem(last=False)
        log.info(
            "reprocess by %s",
            by,
            extra={"audit": "reprocess", "by": by, "run": run_id, "namespace": namespace,
                   "aiservice": name},
        )  # fmt: skip

    def _count(self, kind: str | None, role: str | None, outcome: str) -> None:
        if kind is not None:
            self.store.metrics.ingest(_KIND_OF_PATH[kind], outcome)
        elif role in ROLE_OF_PATH:
            self.store.metrics.decision(ROLE_OF_PATH[role], outcome, None)


@functools.lru_cache(maxsize=1024)
def _settings(query: tuple[tuple[str, tuple[str, ...]], ...]) -> LogSettings:
    """A sink URL's settings: the same few URLs come again and again (one per AIService
    and role), so each is read once (a bad one raises, and is not kept)."""
    return LogSettings.from_query(dict(query))


def _challenge(status: int) -> Headers:
    return (("WWW-Authenticate", 'Bearer realm="aisvc-event-store"'),) if status == 401 else ()


def _lag_s(event_time: str | None, received_us: int) -> float | None:
    if not event_time:
        return None
    try:
        return (received_us - to_us(parse_time(event_time))) / 1e6
    except ValueError:
        return None
