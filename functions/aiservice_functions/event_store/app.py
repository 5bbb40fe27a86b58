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

import functools
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import httpx
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from aiservice_functions import contract
from aiservice_functions.cloudevents_http import InvalidEvent
from aiservice_functions.event_store import auth, console, decision_api, ingest, quality
from aiservice_functions.event_store.guard import redact_url
from aiservice_functions.event_store.jobs import ReplayJobs, job_json
from aiservice_functions.event_store.records import (
    KINDS,
    MAX_PAGE,
    EventFilter,
    Kind,
    RevisionCount,
    ServiceCount,
    to_us,
    us_text,
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
from aiservice_functions.serving.bodies import read_body
from aiservice_functions.timestamps import parse_time

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = contract.DEFAULT_MAX_BODY_BYTES
EXTENSION_KEY: Final = "aisvc_event_store"
REPLAYS_PATH: Final = "/v1/replays"


class BadRequest(Exception):
    """A query parameter or body field is wrong; the message names it."""


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
        "lastDeadLetterAt": us_text(c.last_dead_letter_at),
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


@dataclass(frozen=True)
class _Context:
    """What the routes of one app work with (kept in ``app.extensions``)."""

    store: SqlStore
    metrics: StoreMetrics
    token: str | None
    read_token: str | None
    allow_unauthenticated: bool
    max_body_bytes: int
    replay_defaults: ReplayOptions
    http_client: httpx.Client | None
    retention: RetentionThread | None
    jobs: ReplayJobs
    sink_key: bytes | None

    def run_replay(self, selection: EventFilter, options: ReplayOptions) -> ReplaySummary:
        """A synchronous replay, counted in the metrics."""
        summary = replay(self.store, selection, options, client=self.http_client)
        self.metrics.replay(summary.replayed, summary.failed)
        return summary

    def start_console_replay(self, seqs: Sequence[int], force: bool) -> str:
        """The console's replay: a job over these records, with the store's defaults."""
        options = replace(self.replay_defaults, force=force)
        request = {
            "seqs": list(seqs),
            "force": force,
            "from": "console",
            "target": redact_url(options.target) if options.target else None,
            "broker": options.broker,
        }
        return self.jobs.start(EventFilter(seqs=tuple(seqs)), options, request)


api = Blueprint("event_store", __name__)
"""The HTTP API; :func:`create_app` registers it on an app with its :class:`_Context`."""


def _ctx() -> _Context:
    context: _Context = current_app.extensions[EXTENSION_KEY]["context"]
    return context


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
    metrics = StoreMetrics(pending=lambda: _pending(store))
    thread = (
        RetentionThread(store, retention, on_deleted=metrics.retention()).start()
        if retention and retention.active
        else None
    )
    context = _Context(
        store=store,
        metrics=metrics,
        token=token,
        read_token=read_token,
        allow_unauthenticated=allow_unauthenticated,
        max_body_bytes=max_body_bytes,
        replay_defaults=replay_defaults or ReplayOptions(),
        http_client=http_client,
        retention=thread,
        jobs=ReplayJobs(store, http_client, on_finished=metrics.replay),
        sink_key=sink_key,
    )
    app.extensions[EXTENSION_KEY] = {
        "context": context,
        "store": store,
        "retention": thread,
        "metrics": metrics,
        "jobs": context.jobs,
    }
    app.register_blueprint(api)
    decisions = decision_api.register(app, store, _guard, max_body_bytes, metrics, sink_key)
    quality.register(app, store, _guard)
    metrics.database_gauge(
        "aisvc_event_store_decisions_stored",
        "Decision-log records kept, per AIService and role (input, reply, reprocessed, feedback).",
        ["namespace", "aiservice", "role"],
        decisions.counts,
    )
    access = console.Access(token, read_token, allow_unauthenticated)
    app.register_blueprint(
        console.blueprint(store, access, context.start_console_replay, decisions)
    )
    return app


# --- errors -----------------------------------------------------------------------------


@api.app_errorhandler(RequestEntityTooLarge)
def _too_large(_: RequestEntityTooLarge) -> Response:
    return _error(413, f"body larger than {_ctx().max_body_bytes} bytes")


@api.app_errorhandler(StoreUnavailable)
def _unavailable(err: StoreUnavailable) -> Response:
    log.warning("database unavailable: %s", err)
    return _error(503, "storage unavailable, retry later")


@api.app_errorhandler(BadRequest)
def _bad_request(err: BadRequest) -> Response:
    return _error(400, str(err))


@api.app_errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Response:
    return _error(err.code or 500, err.description or err.name)


def _guard(need: auth.Scope = "read") -> Response | None:
    """The refusal for a request without the token this call needs, else ``None``
    (a read-only token passes ``read`` but not ``replay``)."""
    ctx = _ctx()
    refusal = auth.check(
        ctx.token,
        ctx.allow_unauthenticated,
        request.headers.get("Authorization"),
        read_token=ctx.read_token,
        need=need,
    )
    return _error(refusal.status, refusal.reason) if refusal else None


def _authorized(
    need: auth.Scope = "read",
) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Query and replay need a bearer token (ingest, health and metrics do not)."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Response:
            return _guard(need) or view(*args, **kwargs)

        return guarded

    return decorate


# --- ingest -----------------------------------------------------------------------------


def _refuse_credential(
    kind: Kind, namespace: str, name: str, credential: str | None
) -> Response | None:
    """With a sink key, ingest needs the AIService's credential in the path: attribution
    comes from this authenticated path, never from the event."""
    ctx = _ctx()
    refusal = ingest.credential_refusal(ctx.sink_key, namespace, name, credential)
    if refusal is None:
        return None
    ctx.metrics.ingest(kind, "refused")
    if credential is not None:
        log.warning("refused %s for %s/%s: wrong sink credential", kind, namespace[:63], name[:63])
    return _error(*refusal)


def _ingest(kind: Kind, namespace: str, name: str, credential: str | None = None) -> Response:
    refused = _refuse_credential(kind, namespace, name, credential)
    if refused:
        return refused
    ctx = _ctx()
    try:
        body = read_body(request.environ, ctx.max_body_bytes)
        record = ingest.to_record(kind, namespace, name, dict(request.headers), body)
    except RequestEntityTooLarge:
        ctx.metrics.ingest(kind, "refused")
        raise
    except InvalidEvent as err:
        ctx.metrics.ingest(kind, "refused")
        log.info("refused %s for %s/%s: %s", kind, namespace[:63], name[:63], err.reason)
        return _error(err.status, err.reason)
    try:
        with ctx.metrics.timed("add"):
            seq, created = ctx.store.add(record)
    except StoreUnavailable:
        ctx.metrics.ingest(kind, "unavailable")
        raise
    ctx.metrics.ingest(kind, "stored" if created else "duplicate")
    if created and kind == "dead-letter":
        ctx.metrics.dead_letter(namespace, name, record.revision, record.error_code)
    log.debug(
        "%s %s %s/%s seq=%d", "stored" if created else "redelivered", kind, namespace, name, seq
    )
    response = jsonify({"seq": seq, "created": created})
    response.status_code = 201 if created else 200
    return response


@api.post(_flask_path(contract.EVENT_STORE_DEAD_LETTERS_PATH))
def ingest_dead_letter(namespace: str, name: str) -> Response:
    return _ingest("dead-letter", namespace, name)


@api.post(_flask_path(contract.EVENT_STORE_AUDIT_PATH))
def ingest_audit(namespace: str, name: str) -> Response:
    return _ingest("audit", namespace, name)


@api.post(_flask_path(contract.EVENT_STORE_DEAD_LETTERS_PATH) + "/<credential>")
def ingest_dead_letter_authenticated(namespace: str, name: str, credential: str) -> Response:
    return _ingest("dead-letter", namespace, name, credential)


@api.post(_flask_path(contract.EVENT_STORE_AUDIT_PATH) + "/<credential>")
def ingest_audit_authenticated(namespace: str, name: str, credential: str) -> Response:
    return _ingest("audit", namespace, name, credential)


# --- query ------------------------------------------------------------------------------


def _list(source: dict[str, Any], flt: EventFilter) -> Response:
    ctx = _ctx()
    limit = _opt_int(source, "limit", 1, MAX_PAGE) or 50
    try:
        with ctx.metrics.timed("page"):
            page = ctx.store.page(flt, limit=limit, cursor=_opt_str(source, "cursor"))
    except ValueError as err:
        raise BadRequest(str(err)) from None
    return jsonify({"items": [r.summary() for r in page.items], "nextCursor": page.next_cursor})


@api.get(_flask_path(contract.EVENT_STORE_DEAD_LETTERS_PATH))
@_authorized()
def dead_letters(namespace: str, name: str) -> Response:
    args = dict(request.args)
    return _list(args, _filter(args, kind="dead-letter", namespace=namespace, name=name))


@api.get(_flask_path(contract.EVENT_STORE_AUDIT_PATH))
@_authorized()
def audit(namespace: str, name: str) -> Response:
    args = dict(request.args)
    return _list(args, _filter(args, kind="audit", namespace=namespace, name=name))


@api.get("/v1/events")
@_authorized()
def events() -> Response:
    args = dict(request.args)
    return _list(args, _filter(args))


@api.get("/v1/events/<int:seq>")
@_authorized()
def event(seq: int) -> Response:
    ctx = _ctx()
    if seq > _INT64_MAX:
        return _error(404, f"no record with seq {seq}")
    with ctx.metrics.timed("get"):
        record = ctx.store.get(seq)
    if record is None:
        return _error(404, f"no record with seq {seq}")
    return jsonify(record.detail())


@api.get(contract.EVENT_STORE_STATS_PATH)
@_authorized()
def stats() -> Response:
    ctx = _ctx()
    flt = _filter(dict(request.args), kind=None, replayed=None)
    with ctx.metrics.timed("stats"):
        services, revisions = ctx.store.stats(flt)
    return jsonify(
        {
            "since": us_text(flt.since),
            "until": us_text(flt.until),
            "services": [_service_json(c) for c in services],
            "revisions": [_revision_json(c) for c in revisions],
        }
    )


# --- replay -----------------------------------------------------------------------------


@api.post("/v1/replay")
@_authorized("replay")
def replay_route() -> Response:
    """Synchronous replay (small selections); see ``/v1/replays`` for jobs."""
    ctx = _ctx()
    body = _json_body()
    flt = _selection(body)
    options = _replay_options(body, ctx.replay_defaults)
    return jsonify(ctx.run_replay(flt, options).to_json())


@api.post(REPLAYS_PATH)
@_authorized("replay")
def start_replay() -> Response:
    ctx = _ctx()
    body = _json_body()
    flt = _selection(body)
    options = _replay_options(body, ctx.replay_defaults)
    summary: dict[str, Any] = {k: body[k] for k in ("seqs", "filter", "all") if k in body}
    summary.update(
        target=redact_url(options.target) if options.target else None,
        broker=options.broker,
        force=options.force,
        concurrency=options.concurrency,
        rate=options.rate,
        limit=options.limit,
    )
    job_id = ctx.jobs.start(flt, options, summary)
    row = ctx.store.get_job(job_id)
    assert row is not None
    response = jsonify(job_json(row, with_results=False))
    response.status_code = 202
    response.headers["Location"] = f"{REPLAYS_PATH}/{job_id}"
    return response


@api.get(REPLAYS_PATH)
@_authorized()
def list_replays() -> Response:
    limit = _opt_int(dict(request.args), "limit", 1, 500) or 50
    rows = _ctx().store.list_jobs(limit)
    return jsonify({"items": [job_json(r, with_results=False) for r in rows]})


@api.get(REPLAYS_PATH + "/<job_id>")
@_authorized()
def get_replay(job_id: str) -> Response:
    row = _ctx().store.get_job(job_id[:64])
    if row is None:
        return _error(404, f"no replay job {job_id[:64]!r}")
    return jsonify(job_json(row))


@api.route(REPLAYS_PATH + "/<job_id>", methods=["DELETE"])
@api.post(REPLAYS_PATH + "/<job_id>/cancel")
@_authorized("replay")
def cancel_replay(job_id: str) -> Response:
    store = _ctx().store
    if not store.request_cancel(job_id[:64]):
        return _error(404, f"no replay job {job_id[:64]!r}")
    row = store.get_job(job_id[:64])
    assert row is not None
    response = jsonify(job_json(row, with_results=False))
    response.status_code = 202
    return response


# --- health and metrics -----------------------------------------------------------------


@api.get(contract.PATH_LIVENESS)
def liveness() -> Response:
    return jsonify({"status": "ok"})


@api.get(contract.PATH_READINESS)
def readiness() -> Response:
    ctx = _ctx()
    with ctx.metrics.timed("ping"):
        ctx.store.ping()
    return jsonify({"status": "ok", "backend": ctx.store.backend})


@api.get(contract.PATH_METRICS)
def metrics_route() -> Response:
    # No token: counts and timings only, nothing of any event (see .telemetry).
    metrics = _ctx().metrics
    return Response(metrics.render(), content_type=metrics.content_type)
