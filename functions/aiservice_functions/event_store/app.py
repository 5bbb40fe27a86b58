"""The event store's HTTP API (Flask): ingest, query, stats, replay, health.

Ingest — any CloudEvent, binary or structured mode. Knative's dispatcher sends no
credentials, so with a sink key configured the credential is the URL's last segment
(:func:`aiservice_functions.contract.sink_credential`: an HMAC of the namespace and name,
compiled by the operator into each Trigger); without it ``401``, a wrong one ``403``.
Records are attributed to the AIService of the authenticated path, never to what the
event says. Without a sink key (local use) ingest is open and the segment is left out.

- ``POST /v1/namespaces/{ns}/aiservices/{name}/dead-letters/{credential}``: a dead letter
  (the operator sets this URL as every Trigger's ``deadLetterSink``);
- ``POST /v1/namespaces/{ns}/aiservices/{name}/audit/{credential}``: a decision event
  (rollout decisions).

Answers ``201 {"seq": N, "created": true}`` once the record is committed, ``200`` with
``"created": false`` for a redelivery (same source and id: stored once), ``400``/``415``
with ``{"error": reason}`` for what is not a CloudEvent, ``413`` past the body limit,
``503`` when the database is unavailable (Knative retries).

Query and replay (``Authorization: Bearer <token>``; 401 without it, 403 when wrong):

- ``GET /v1/events?kind=&namespace=&name=&type=&code=&revision=&since=&until=&replayed=
  &limit=&cursor=`` and ``GET /v1/namespaces/{ns}/aiservices/{name}/dead-letters`` (same
  filters) → ``{"items": [summary...], "nextCursor": str|null}``, newest first;
  ``since``/``until`` are RFC 3339 and bound the time the store first received the event;
  ``replayed`` is ``true``/``false``; pass ``nextCursor`` as ``cursor`` for the next page.
- ``GET /v1/events/{seq}`` → one record with ``errorData`` decoded and the whole ``event``.
- ``GET /v1/stats?namespace=&name=&since=&until=`` → counts, for canary analysis::

      {"since": "2026-01-01T00:00:00Z" | null, "until": ... | null,
       "services": [{"namespace": "shop", "name": "sentiment", "deadLetters": 12,
                     "unreplayed": 3, "audit": 40,
                     "lastDeadLetterAt": "2026-01-01T00:04:59.120000Z" | null}],
       "revisions": [{"namespace": "shop", "name": "sentiment",
                      "revision": "sentiment-v2-7f3a1" | "canary" | null,
                      "deadLetters": 9, "unreplayed": 3}]}

  ``revision`` is resolved as documented in :mod:`.revision` (a revision name, else a
  traffic tag, else ``null`` when the event went through the untagged route).
- ``POST /v1/replay`` with a JSON body ``{"seqs": [1, 2]}`` or ``{"filter": {"namespace":
  ..., "name": ..., "type": ..., "code": ..., "revision": ..., "since": ..., "until": ...}}``
  (or ``{"all": true}``), and optionally ``target`` (a URL; default the namespace's
  Broker ingress), ``broker`` (default ``default``), ``force``, ``concurrency``, ``rate``
  (events/s), ``limit`` → ``{"selected", "replayed", "failed", "results": [...]}``.

Console: ``/console/`` (see :mod:`.console`), the same data for people, behind the same
token. A read-only token (``read_token``) passes every query but not replay.

Health: ``/health/liveness``; ``/health/readiness`` (the database answers).
Metrics: ``GET /metrics`` (Prometheus text, no token: counts and timings only, see
:mod:`.telemetry`). No event data, error data or tokens are logged.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

import httpx
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from aiservice_functions import contract
from aiservice_functions.event_store import auth, console, decision_api, ingest
from aiservice_functions.event_store.guard import redact_url
from aiservice_functions.event_store.jobs import ReplayJobs, job_json
from aiservice_functions.event_store.records import (
    KINDS,
    MAX_PAGE,
    EventFilter,
    Kind,
    RevisionCount,
    ServiceCount,
    parse_time,
    rfc3339,
    to_us,
)
from aiservice_functions.event_store.replay import (
    MAX_CONCURRENCY,
    MAX_RATE,
    MAX_SELECTION,
    MIN_RATE,
    ReplayOptions,
    ReplaySummary,
    check_url,
    replay,
)
from aiservice_functions.event_store.retention import RetentionPolicy, RetentionThread
from aiservice_functions.event_store.storage import SqlStore, StoreUnavailable
from aiservice_functions.event_store.telemetry import StoreMetrics
from aiservice_functions.runtime.cloudevents_http import InvalidEvent

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = contract.DEFAULT_MAX_BODY_BYTES
EXTENSION_KEY: Final = "aisvc_event_store"
REPLAYS_PATH: Final = "/v1/replays"


class BadRequest(Exception):
    """A query parameter or body field is wrong; the message names it."""


def _read_body(limit: int) -> bytes:
    """The request body, or 413 past ``limit`` bytes — also for chunked bodies, which
    carry no Content-Length for Flask to check up front."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = request.stream.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise RequestEntityTooLarge()
        chunks.append(chunk)


def _flask_path(template: str) -> str:
    return template.replace("{", "<").replace("}", ">")


def _error(status: int, reason: str) -> Response:
    response = jsonify({"error": reason})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="aisvc-event-store"'
    return response


_INT64_MAX: Final = 2**63 - 1
_BROKER_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _opt_int(
    source: dict[str, Any], key: str, minimum: int = 0, maximum: int = _INT64_MAX
) -> int | None:
    """An integer in ``[minimum, maximum]``, or 400 naming ``key``."""
    value = source.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, (bool, float)):
        raise BadRequest(f"{key} must be an integer, got {str(value)[:40]!r}")
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d{1,20}", text):
        raise BadRequest(f"{key} must be an integer, got {text[:40]!r}")
    number = int(text)
    if not minimum <= number <= maximum:
        raise BadRequest(f"{key} must be between {minimum} and {maximum}, got {text[:40]}")
    return number


def _opt_float(source: dict[str, Any], key: str) -> float | None:
    value = source.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRequest(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"{key} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise BadRequest(f"{key} must be a finite number, got {str(value)[:40]!r}")
    if number < 0:
        raise BadRequest(f"{key} must not be negative")
    return number


def _replay_options(body: dict[str, Any], defaults: ReplayOptions) -> ReplayOptions:
    """The replay settings of a request, each bounded (400 naming the field)."""
    target = _opt_str(body, "target")
    if target:
        try:
            check_url(target, "target")
            defaults.policy.check(target, "target", defaults.broker_url)
        except ValueError as err:
            raise BadRequest(str(err)) from None
    broker = _opt_str(body, "broker")
    if broker is not None and not _BROKER_NAME.match(broker):
        raise BadRequest(f"broker must be a Broker name (a DNS-1123 label), got {broker[:70]!r}")
    rate = _opt_float(body, "rate")
    if rate is not None and rate != 0 and not MIN_RATE <= rate <= MAX_RATE:
        raise BadRequest(f"rate must be 0 (unbounded) or between {MIN_RATE} and {MAX_RATE:g}")
    concurrency = _opt_int(body, "concurrency", 1, MAX_CONCURRENCY)
    limit = _opt_int(body, "limit", 1, MAX_SELECTION)
    return replace(
        defaults,
        target=target or defaults.target,
        broker=broker or defaults.broker,
        force=bool(_opt_bool(body, "force")),
        concurrency=concurrency or defaults.concurrency,
        rate=defaults.rate if rate is None else rate,
        limit=limit or defaults.limit,
    )


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _selection(body: dict[str, Any]) -> EventFilter:
    """Which dead letters a replay request selects (400 naming what is wrong)."""
    seqs = body.get("seqs")
    raw_filter = body.get("filter")
    if raw_filter is not None and not isinstance(raw_filter, dict):
        raise BadRequest("filter must be an object")
    if seqs is not None:
        if not isinstance(seqs, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= _INT64_MAX for s in seqs
        ):
            raise BadRequest("seqs must be a list of positive integers")
        if len(seqs) > MAX_SELECTION:
            raise BadRequest(f"seqs must list at most {MAX_SELECTION} records")
        flt = EventFilter(seqs=tuple(seqs))
        if raw_filter:
            flt = replace(_filter(raw_filter), seqs=tuple(seqs))
        return flt
    if raw_filter:
        return _filter(raw_filter)
    if body.get("all") is True:
        return EventFilter()
    raise BadRequest('select what to replay: "seqs", a non-empty "filter", or "all": true')


def _opt_time(source: dict[str, Any], key: str) -> int | None:
    value = source.get(key)
    if value is None or value == "":
        return None
    try:
        return to_us(parse_time(str(value)))
    except ValueError:
        raise BadRequest(f"{key} must be an RFC 3339 timestamp, got {str(value)[:40]!r}") from None


def _opt_bool(source: dict[str, Any], key: str) -> bool | None:
    value = source.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BadRequest(f"{key} must be true or false, got {text[:40]!r}")


def _opt_str(source: dict[str, Any], key: str) -> str | None:
    value = source.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def _filter(source: dict[str, Any], **fixed: Any) -> EventFilter:
    kind = _opt_str(source, "kind")
    if kind is not None and kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}, got {kind[:40]!r}")
    values: dict[str, Any] = {
        "kind": kind,
        "namespace": _opt_str(source, "namespace"),
        "name": _opt_str(source, "name"),
        "type": _opt_str(source, "type"),
        "error_code": _opt_int(source, "code", 0, 999),
        "revision": _opt_str(source, "revision"),
        "since": _opt_time(source, "since"),
        "until": _opt_time(source, "until"),
        "replayed": _opt_bool(source, "replayed"),
    }
    values.update(fixed)
    return EventFilter(**values)


def _service_json(c: ServiceCount) -> dict[str, Any]:
    return {
        "namespace": c.namespace,
        "name": c.name,
        "deadLetters": c.dead_letters,
        "unreplayed": c.unreplayed,
        "audit": c.audit,
        "lastDeadLetterAt": rfc3339(c.last_dead_letter_at),
    }


def _revision_json(c: RevisionCount) -> dict[str, Any]:
    return {
        "namespace": c.namespace,
        "name": c.name,
        "revision": c.revision,
        "deadLetters": c.dead_letters,
        "unreplayed": c.unreplayed,
    }


def _pending(store: SqlStore) -> list[tuple[str, str, int]]:
    services, _ = store.stats(EventFilter(kind="dead-letter"))
    return [(c.namespace, c.name, c.unreplayed) for c in services]


def create_app(
    store: SqlStore,
    *,
    token: str | None = None,
    read_token: str | None = None,
    allow_unauthenticated: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    replay_defaults: ReplayOptions | None = None,
    retention: RetentionPolicy | None = None,
    http_client: httpx.Client | None = None,
    sink_key: bytes | None = None,
) -> Flask:
    """The WSGI app over ``store``; starts the retention thread when ``retention`` is active."""
    app = Flask("aiservice_functions.event_store")
    # One byte of slack: a chunked body is cut at the limit by the server's stream, so
    # reading max+1 bytes is how an oversized one is told from one of exactly max bytes.
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes + 1
    defaults = replay_defaults or ReplayOptions()
    metrics = StoreMetrics(pending=lambda: _pending(store))
    jobs = ReplayJobs(store, http_client, on_finished=metrics.replay)
    thread = (
        RetentionThread(store, retention, on_deleted=metrics.retention()).start()
        if retention and retention.active
        else None
    )
    app.extensions[EXTENSION_KEY] = {
        "store": store,
        "retention": thread,
        "metrics": metrics,
        "jobs": jobs,
    }

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Response:
        return _error(413, f"body larger than {max_body_bytes} bytes")

    @app.errorhandler(StoreUnavailable)
    def unavailable(err: StoreUnavailable) -> Response:
        log.warning("database unavailable: %s", err)
        return _error(503, "storage unavailable, retry later")

    @app.errorhandler(BadRequest)
    def bad_request(err: BadRequest) -> Response:
        return _error(400, str(err))

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        return _error(err.code or 500, err.description or err.name)

    def guard(need: auth.Scope = "read") -> Response | None:
        refusal = auth.check(
            token,
            allow_unauthenticated,
            request.headers.get("Authorization"),
            read_token=read_token,
            need=need,
        )
        return _error(refusal.status, refusal.reason) if refusal else None

    decision_api.register(app, store, guard, max_body_bytes, metrics)

    def run_replay(selection: EventFilter, options: ReplayOptions) -> ReplaySummary:
        summary = replay(store, selection, options, client=http_client)
        metrics.replay(summary.replayed, summary.failed)
        return summary

    def ingest_event(
        kind: Kind, namespace: str, name: str, credential: str | None = None
    ) -> Response:
        if sink_key is not None:
            # Attribution comes from this authenticated path, never from the event.
            if credential is None:
                metrics.ingest(kind, "refused")
                return _error(401, "ingest needs the AIService's sink credential in the path")
            if not contract.verify_sink_credential(sink_key, namespace, name, credential):
                metrics.ingest(kind, "refused")
                log.warning(
                    "refused %s for %s/%s: wrong sink credential", kind, namespace[:63], name[:63]
                )
                return _error(403, "sink credential not accepted for this AIService")
        try:
            body = _read_body(max_body_bytes)
            record = ingest.to_record(kind, namespace, name, dict(request.headers), body)
        except RequestEntityTooLarge:
            metrics.ingest(kind, "refused")
            raise
        except InvalidEvent as err:
            metrics.ingest(kind, "refused")
            log.info("refused %s for %s/%s: %s", kind, namespace[:63], name[:63], err.reason)
            return _error(err.status, err.reason)
        try:
            with metrics.timed("add"):
                seq, created = store.add(record)
        except StoreUnavailable:
            metrics.ingest(kind, "unavailable")
            raise
        metrics.ingest(kind, "stored" if created else "duplicate")
        if created and kind == "dead-letter":
            metrics.dead_letter(namespace, name, record.revision, record.error_code)
        log.debug(
            "%s %s %s/%s seq=%d", "stored" if created else "redelivered", kind, namespace, name, seq
        )
        response = jsonify({"seq": seq, "created": created})
        response.status_code = 201 if created else 200
        return response

    def list_events(source: dict[str, Any], flt: EventFilter) -> Response:
        limit = _opt_int(source, "limit", 1, MAX_PAGE) or 50
        try:
            with metrics.timed("page"):
                page = store.page(flt, limit=limit, cursor=_opt_str(source, "cursor"))
        except ValueError as err:
            raise BadRequest(str(err)) from None
        return jsonify({"items": [r.summary() for r in page.items], "nextCursor": page.next_cursor})

    @app.post(_flask_path(contract.EVENT_STORE_DEAD_LETTERS_PATH) + "/<credential>")
    def dead_letters_authenticated(namespace: str, name: str, credential: str) -> Response:
        return ingest_event("dead-letter", namespace, name, credential)

    @app.post(_flask_path(contract.EVENT_STORE_AUDIT_PATH) + "/<credential>")
    def audit_authenticated(namespace: str, name: str, credential: str) -> Response:
        return ingest_event("audit", namespace, name, credential)

    @app.route(_flask_path(contract.EVENT_STORE_DEAD_LETTERS_PATH), methods=["POST", "GET"])
    def dead_letters(namespace: str, name: str) -> Response:
        if request.method == "POST":
            return ingest_event("dead-letter", namespace, name)
        refused = guard()
        if refused:
            return refused
        args = dict(request.args)
        return list_events(args, _filter(args, kind="dead-letter", namespace=namespace, name=name))

    @app.route(_flask_path(contract.EVENT_STORE_AUDIT_PATH), methods=["POST", "GET"])
    def audit(namespace: str, name: str) -> Response:
        if request.method == "POST":
            return ingest_event("audit", namespace, name)
        refused = guard()
        if refused:
            return refused
        args = dict(request.args)
        return list_events(args, _filter(args, kind="audit", namespace=namespace, name=name))

    @app.get("/v1/events")
    def events() -> Response:
        refused = guard()
        if refused:
            return refused
        args = dict(request.args)
        return list_events(args, _filter(args))

    @app.get("/v1/events/<int:seq>")
    def event(seq: int) -> Response:
        refused = guard()
        if refused:
            return refused
        if seq > _INT64_MAX:
            return _error(404, f"no record with seq {seq}")
        with metrics.timed("get"):
            record = store.get(seq)
        if record is None:
            return _error(404, f"no record with seq {seq}")
        return jsonify(record.detail())

    @app.get(contract.EVENT_STORE_STATS_PATH)
    def stats() -> Response:
        refused = guard()
        if refused:
            return refused
        args = dict(request.args)
        flt = _filter(args, kind=None, replayed=None)
        with metrics.timed("stats"):
            services, revisions = store.stats(flt)
        return jsonify(
            {
                "since": rfc3339(flt.since),
                "until": rfc3339(flt.until),
                "services": [_service_json(c) for c in services],
                "revisions": [_revision_json(c) for c in revisions],
            }
        )

    @app.post("/v1/replay")
    def replay_route() -> Response:
        """Synchronous replay (small selections); see ``/v1/replays`` for jobs."""
        refused = guard("replay")
        if refused:
            return refused
        body = _json_body()
        flt = _selection(body)
        options = _replay_options(body, defaults)
        return jsonify(run_replay(flt, options).to_json())

    def replay_seqs(seqs: Sequence[int], force: bool) -> ReplaySummary:
        return run_replay(EventFilter(seqs=tuple(seqs)), replace(defaults, force=force))

    access = console.Access(token, read_token, allow_unauthenticated)
    app.register_blueprint(console.blueprint(store, access, replay_seqs))

    @app.post(REPLAYS_PATH)
    def start_replay() -> Response:
        refused = guard("replay")
        if refused:
            return refused
        body = _json_body()
        flt = _selection(body)
        options = _replay_options(body, defaults)
        summary: dict[str, Any] = {k: body[k] for k in ("seqs", "filter", "all") if k in body}
        summary.update(
            target=redact_url(options.target) if options.target else None,
            broker=options.broker,
            force=options.force,
            concurrency=options.concurrency,
            rate=options.rate,
            limit=options.limit,
        )
        job_id = jobs.start(flt, options, summary)
        row = store.get_job(job_id)
        assert row is not None
        response = jsonify(job_json(row, with_results=False))
        response.status_code = 202
        response.headers["Location"] = f"{REPLAYS_PATH}/{job_id}"
        return response

    @app.get(REPLAYS_PATH)
    def list_replays() -> Response:
        refused = guard()
        if refused:
            return refused
        limit = _opt_int(dict(request.args), "limit", 1, 500) or 50
        return jsonify({"items": [job_json(r, with_results=False) for r in store.list_jobs(limit)]})

    @app.get(REPLAYS_PATH + "/<job_id>")
    def get_replay(job_id: str) -> Response:
        refused = guard()
        if refused:
            return refused
        row = store.get_job(job_id[:64])
        if row is None:
            return _error(404, f"no replay job {job_id[:64]!r}")
        return jsonify(job_json(row))

    @app.route(REPLAYS_PATH + "/<job_id>", methods=["DELETE"])
    @app.post(REPLAYS_PATH + "/<job_id>/cancel")
    def cancel_replay(job_id: str) -> Response:
        refused = guard("replay")
        if refused:
            return refused
        if not store.request_cancel(job_id[:64]):
            return _error(404, f"no replay job {job_id[:64]!r}")
        row = store.get_job(job_id[:64])
        assert row is not None
        response = jsonify(job_json(row, with_results=False))
        response.status_code = 202
        return response

    @app.get(contract.PATH_LIVENESS)
    def liveness() -> Response:
        return jsonify({"status": "ok"})

    @app.get(contract.PATH_READINESS)
    def readiness() -> Response:
        with metrics.timed("ping"):
            store.ping()
        return jsonify({"status": "ok", "backend": store.backend})

    @app.get(contract.PATH_METRICS)
    def metrics_route() -> Response:
        # No token: counts and timings only, nothing of any event (see .telemetry).
        return Response(metrics.render(), content_type=metrics.content_type)

    return app
