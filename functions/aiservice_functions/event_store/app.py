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

In ``kubernetes`` auth mode (:mod:`.access`) the bearer token is the caller's own: lists,
counts and stats hold only the namespaces where they may ``get aiservices``; one
AIService's records need that permission in its namespace (403), one record by ``seq``
is 404 outside it; replaying needs ``create aiservices/replay`` in each namespace
concerned (403 naming the first that is not); replay jobs are shown to whoever started
them (and to those who may read every namespace). Replays are logged with the caller's
identity and record it on the job (``request.by``).

Health: ``/health/liveness``; ``/health/readiness`` (the database answers).
Metrics: ``GET /metrics`` (Prometheus text, no token: counts and timings only, see
:mod:`.telemetry`). No event data, error data or tokens are logged.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from aiservice_functions import contract
from aiservice_functions.event_store import auth, console, decision_api, params, quality
from aiservice_functions.event_store.access import Action, Caller
from aiservice_functions.event_store.database import StoreUnavailable
from aiservice_functions.event_store.guard import redact_url
from aiservice_functions.event_store.intake import Answer, Intake, Write
from aiservice_functions.event_store.jobs import job_json
from aiservice_functions.event_store.kube_auth import ReviewUnavailable
from aiservice_functions.event_store.params import ParamError
from aiservice_functions.event_store.records import (
    KINDS,
    MAX_PAGE,
    EventFilter,
    RevisionCount,
    ServiceCount,
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
from aiservice_functions.event_store.service import WRITE_TIMEOUT_S, EventStore
from aiservice_functions.event_store.writer import Overloaded, RecordRefused
from aiservice_functions.loopback_hosts import MISDIRECTED, host_refusal
from aiservice_functions.serving.bodies import read_body

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = contract.DEFAULT_MAX_BODY_BYTES
EXTENSION_KEY: Final = "aisvc_event_store"
REPLAYS_PATH: Final = "/v1/replays"


def _flask_path(template: str) -> str:
    return template.replace("{", "<").replace("}", ">")


def _error(status: int, reason: str) -> Response:
    response = jsonify({"error": reason})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="aisvc-event-store"'
    return response


_BROKER_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _replay_options(body: dict[str, Any], defaults: ReplayOptions) -> ReplayOptions:
    """The replay settings of a request, each bounded (400 naming the field)."""
    target = params.text(body, "target")
    if target:
        try:
            check_url(target, "target")
            defaults.policy.check(target, "target", defaults.broker_url)
        except ValueError as err:
            raise ParamError(str(err)) from None
    broker = params.text(body, "broker")
    if broker is not None and not _BROKER_NAME.match(broker):
        raise ParamError(f"broker must be a Broker name (a DNS-1123 label), got {broker[:70]!r}")
    rate = params.number(body, "rate")
    if rate is not None and rate != 0 and not MIN_RATE <= rate <= MAX_RATE:
        raise ParamError(f"rate must be 0 (unbounded) or between {MIN_RATE} and {MAX_RATE:g}")
    concurrency = params.integer(body, "concurrency", 1, MAX_CONCURRENCY)
    limit = params.integer(body, "limit", 1, MAX_SELECTION)
    return replace(
        defaults,
        target=target or defaults.target,
        broker=broker or defaults.broker,
        force=bool(params.boolean(body, "force")),
        concurrency=concurrency or defaults.concurrency,
        rate=defaults.rate if rate is None else rate,
        limit=limit or defaults.limit,
    )


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ParamError("body must be a JSON object")
    return body


def _selection(body: dict[str, Any]) -> EventFilter:
    """Which dead letters a replay request selects (400 naming what is wrong)."""
    seqs = body.get("seqs")
    raw_filter = body.get("filter")
    if raw_filter is not None and not isinstance(raw_filter, dict):
        raise ParamError("filter must be an object")
    if seqs is not None:
        if not isinstance(seqs, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= params.INT64_MAX
            for s in seqs
        ):
            raise ParamError("seqs must be a list of positive integers")
        if len(seqs) > MAX_SELECTION:
            raise ParamError(f"seqs must list at most {MAX_SELECTION} records")
        flt = EventFilter(seqs=tuple(seqs))
        if raw_filter:
            flt = replace(_filter(raw_filter), seqs=tuple(seqs))
        return flt
    if raw_filter:
        return _filter(raw_filter)
    if body.get("all") is True:
        return EventFilter()
    raise ParamError('select what to replay: "seqs", a non-empty "filter", or "all": true')


def _filter(source: dict[str, Any], **fixed: Any) -> EventFilter:
    kind = params.text(source, "kind")
    if kind is not None and kind not in KINDS:
        raise ParamError(f"kind must be one of {', '.join(KINDS)}, got {kind[:40]!r}")
    values: dict[str, Any] = {
        "kind": kind,
        "namespace": params.text(source, "namespace"),
        "name": params.text(source, "name"),
        "type": params.text(source, "type"),
        "error_code": params.integer(source, "code", 0, 999),
        "revision": params.text(source, "revision"),
        "since": params.timestamp(source, "since"),
        "until": params.timestamp(source, "until"),
        "replayed": params.boolean(source, "replayed"),
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


@dataclass(frozen=True)
class _Context:
    """What the routes of one app work with (kept in ``app.extensions``)."""

    store: EventStore
    intake: Intake
    authenticator: auth.Authenticator
    max_body_bytes: int
    replay_defaults: ReplayOptions

    def run_replay(self, selection: EventFilter, options: ReplayOptions) -> ReplaySummary:
        """A synchronous replay, counted in the metrics."""
        summary = replay(self.store.events, selection, options, client=self.store.http_client)
        self.store.metrics.replay(summary.replayed, summary.failed)
        return summary

    def start_console_replay(self, seqs: Sequence[int], force: bool, by: str) -> str:
        """The console's replay: a job over these records, with the store's defaults."""
        options = replace(self.replay_defaults, force=force)
        request = {
            "seqs": list(seqs),
            "force": force,
            "from": "console",
            "target": redact_url(options.target) if options.target else None,
            "broker": options.broker,
            "by": by,
        }
        job_id = self.store.replays.start(EventFilter(seqs=tuple(seqs)), options, request)
        audit_log("replay", by, job=job_id, seqs=len(seqs), via="console")
        return job_id


api = Blueprint("event_store", __name__)
"""The HTTP API; :func:`create_app` registers it on an app with its :class:`_Context`."""


def audit_log(action: str, by: str, **details: Any) -> None:
    """One JSON log line per replay, reprocessing run and export, naming who asked."""
    log.info("%s by %s", action, by, extra={"audit": action, "by": by, **details})


def _ctx() -> _Context:
    context: _Context = current_app.extensions[EXTENSION_KEY]["context"]
    return context


def create_app(
    store: EventStore,
    *,
    token: str | None = None,
    read_token: str | None = None,
    allow_unauthenticated: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    replay_defaults: ReplayOptions | None = None,
    sink_key: bytes | None = None,
    loopback_listener: tuple[str, int] | None = None,
    authenticator: auth.Authenticator | None = None,
) -> Flask:
    """The WSGI app over ``store`` (started here: its writer, retention and expiry run).

    With ``loopback_listener`` (host, port), as a local run serves it, every request must
    name that loopback listener in its ``Host`` (421 otherwise): a web page that rebinds
    its own name to 127.0.0.1 cannot read or replay through the unauthenticated store.
    The ingest front applies the same rule (:func:`loopback_of`).

    ``authenticator`` picks the auth mode; without it, ``token`` mode with ``token``,
    ``read_token`` and ``allow_unauthenticated``."""
    app = Flask("aiservice_functions.event_store")
    if loopback_listener is not None:
        listen_host, listen_port = loopback_listener

        @app.before_request
        def _loopback_only() -> Response | None:
            refused = host_refusal(request.headers.get("Host"), listen_host, listen_port)
            return _error(MISDIRECTED, refused) if refused else None

    # One byte of slack: a chunked body is cut at the limit by the server's stream, so
    # reading max+1 bytes is how an oversized one is told from one of exactly max bytes.
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes + 1
    store.start()
    authenticator = authenticator or auth.Authenticator(token, read_token, allow_unauthenticated)
    intake = Intake(store, sink_key, max_body_bytes, authenticator)
    context = _Context(
        store=store,
        intake=intake,
        authenticator=authenticator,
        max_body_bytes=max_body_bytes,
        replay_defaults=replay_defaults or ReplayOptions(),
    )
    app.extensions[EXTENSION_KEY] = {"context": context, "loopback": loopback_listener}
    app.register_blueprint(api)
    decisions = decision_api.register(app, store.decisions, _guard, _caller)
    quality.register(app, store.db, _guard_read)
    store.metrics.database_gauge(
        "aisvc_event_store_decisions_stored",
        "Decision-log records kept, per AIService and role (input, reply, reprocessed, feedback).",
        ["namespace", "aiservice", "role"],
        decisions.counts,
    )
    access = console.Access(authenticator, sink_key)
    app.register_blueprint(
        console.blueprint(store, access, context.start_console_replay, decisions)
    )
    return app


def loopback_of(app: Flask) -> tuple[str, int] | None:
    """The loopback listener an app made by :func:`create_app` only answers for, if any."""
    listener: tuple[str, int] | None = app.extensions[EXTENSION_KEY]["loopback"]
    return listener


def intake_of(app: Flask) -> Intake:
    """The ingest rules of an app made by :func:`create_app` (the ingest front shares them)."""
    context: _Context = app.extensions[EXTENSION_KEY]["context"]
    return context.intake


# --- errors -----------------------------------------------------------------------------


@api.app_errorhandler(RequestEntityTooLarge)
def _too_large(_: RequestEntityTooLarge) -> Response:
    return _error(413, f"body larger than {_ctx().max_body_bytes} bytes")


@api.app_errorhandler(StoreUnavailable)
def _unavailable(err: StoreUnavailable) -> Response:
    log.warning("database unavailable: %s", err)
    return _error(503, "storage unavailable, retry later")


@api.app_errorhandler(ReviewUnavailable)
def _no_review(err: ReviewUnavailable) -> Response:
    return _error(503, str(err))


@api.app_errorhandler(ParamError)
def _bad_request(err: ParamError) -> Response:
    return _error(400, str(err))


@api.app_errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Response:
    return _error(err.code or 500, err.description or err.name)


def _guard(need: auth.Scope = "read") -> Response | None:
    """The refusal for a request without the token this call needs, else ``None`` and
    the request's :func:`_caller` is known (a read-only token passes ``read`` but not
    ``replay``; in ``kubernetes`` mode each route asks RBAC about its namespaces)."""
    found = _ctx().authenticator.caller(request.headers.get("Authorization"), need)
    if isinstance(found, auth.Refusal):
        return _error(found.status, found.reason)
    g.aisvc_caller = found
    return None


def _caller() -> Caller:
    """Who the request is (set by :func:`_guard`)."""
    caller: Caller = g.aisvc_caller
    return caller


def _readable() -> frozenset[str] | None:
    """The namespaces the caller may read (``None``: all)."""
    return _caller().readable(_ctx().store.namespaces)


def _guard_read(namespace: str) -> Response | None:
    """The refusal of a read of one namespace's records: no token, or no RBAC for it."""
    return _guard() or _forbidden("read", namespace)


def _forbidden(action: Action, namespace: str) -> Response | None:
    """403 when the caller may not do ``action`` in ``namespace``."""
    caller = _caller()
    if caller.may(action, namespace):
        return None
    rule = {"read": "get aiservices", "replay": "create aiservices/replay"}.get(action, action)
    return _error(403, f"{caller.name} may not {action} in namespace {namespace!r} ({rule})")


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


def _answer(answer: Answer) -> Response:
    return Response(answer.body, status=answer.status, headers=list(answer.headers))


def commit(intake: Intake, path: str, write: Write) -> Answer:
    """Hand ``write`` to the group writer and wait for its commit (a WSGI thread's way)."""
    try:
        seq, created = intake.store.writer.add(write.table, write.record, WRITE_TIMEOUT_S)
    except (Overloaded, RecordRefused, StoreUnavailable, TimeoutError) as err:
        return intake.failed(path, err)
    return write.answer(seq, created)


def _ingest(**_: str) -> Response:
    """Every ingest route (:mod:`.intake` has the rules; the ingest front serves the same)."""
    ctx = _ctx()
    try:
        body = read_body(request.environ, ctx.max_body_bytes)
    except RequestEntityTooLarge:
        return _answer(ctx.intake.too_large(request.path))
    headers = {name.lower(): value for name, value in request.headers.items()}
    prepared = ctx.intake.prepare(request.path, request.args.to_dict(flat=False), headers, body)
    if isinstance(prepared, Answer):
        return _answer(prepared)
    return _answer(commit(ctx.intake, request.path, prepared))


for _template in (
    contract.EVENT_STORE_DEAD_LETTERS_PATH,
    contract.EVENT_STORE_AUDIT_PATH,
    contract.EVENT_STORE_DECISIONS_PATH,
):
    api.add_url_rule(_flask_path(_template), view_func=_ingest, methods=["POST"],
                     endpoint=f"ingest{_template}")  # fmt: skip
    api.add_url_rule(_flask_path(_template) + "/<credential>", view_func=_ingest,
                     methods=["POST"], endpoint=f"ingest{_template}/credential")  # fmt: skip


# --- query ------------------------------------------------------------------------------


def _list(source: dict[str, Any], flt: EventFilter) -> Response:
    ctx = _ctx()
    limit = params.integer(source, "limit", 1, MAX_PAGE) or 50
    flt = replace(flt, namespaces=_readable())
    try:
        with ctx.store.metrics.timed("page"):
            page = ctx.store.events.page(flt, limit=limit, cursor=params.cursor(source))
    except ValueError as err:
        raise ParamError(str(err)) from None
    return jsonify({"items": [r.summary() for r in page.items], "nextCursor": page.next_cursor})


@api.get(_flask_path(contract.EVENT_STORE_DEAD_LETTERS_PATH))
@_authorized()
def dead_letters(namespace: str, name: str) -> Response:
    refused = _forbidden("read", namespace)
    if refused:
        return refused
    args = dict(request.args)
    return _list(args, _filter(args, kind="dead-letter", namespace=namespace, name=name))


@api.get(_flask_path(contract.EVENT_STORE_AUDIT_PATH))
@_authorized()
def audit(namespace: str, name: str) -> Response:
    refused = _forbidden("read", namespace)
    if refused:
        return refused
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
    if seq > params.INT64_MAX:
        return _error(404, f"no record with seq {seq}")
    with ctx.store.metrics.timed("get"):
        record = ctx.store.events.get(seq)
    if record is None or not _caller().may("read", record.namespace):
        return _error(404, f"no record with seq {seq}")
    return jsonify(record.detail())


@api.get(contract.EVENT_STORE_STATS_PATH)
@_authorized()
def stats() -> Response:
    ctx = _ctx()
    flt = _filter(dict(request.args), kind=None, replayed=None)
    flt = replace(flt, namespaces=_readable())
    with ctx.store.metrics.timed("stats"):
        services, revisions = ctx.store.events.stats(flt)
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
    flt = _replayable(_selection(body))
    if isinstance(flt, Response):
        return flt
    options = _replay_options(body, ctx.replay_defaults)
    summary = ctx.run_replay(flt, options)
    audit_log("replay", _caller().name, replayed=summary.replayed, failed=summary.failed)
    return jsonify(summary.to_json())


@api.post(REPLAYS_PATH)
@_authorized("replay")
def start_replay() -> Response:
    ctx = _ctx()
    body = _json_body()
    flt = _replayable(_selection(body))
    if isinstance(flt, Response):
        return flt
    options = _replay_options(body, ctx.replay_defaults)
    summary: dict[str, Any] = {k: body[k] for k in ("seqs", "filter", "all") if k in body}
    summary.update(
        target=redact_url(options.target) if options.target else None,
        broker=options.broker,
        force=options.force,
        concurrency=options.concurrency,
        rate=options.rate,
        limit=options.limit,
        by=_caller().name,
    )
    job_id = ctx.store.replays.start(flt, options, summary)
    audit_log("replay", _caller().name, job=job_id)
    row = ctx.store.jobs.get(job_id)
    assert row is not None
    response = jsonify(job_json(row, with_results=False))
    response.status_code = 202
    response.headers["Location"] = f"{REPLAYS_PATH}/{job_id}"
    return response


def _replayable(flt: EventFilter) -> EventFilter | Response:
    """``flt`` narrowed to the namespaces where the caller may replay; 403 when it names
    (by namespace or by ``seq``) records of a namespace where they may not, or when it
    would replay nothing they may."""
    caller = _caller()
    if caller.everywhere("replay"):
        return flt
    wanted = sorted(_ctx().store.events.namespaces(replace(flt, kind="dead-letter")))
    allowed = frozenset(ns for ns in wanted if caller.may("replay", ns))
    explicit = flt.namespace is not None or flt.seqs is not None
    denied = [ns for ns in wanted if ns not in allowed]
    if flt.namespace is not None and not wanted:
        denied = [flt.namespace] if not caller.may("replay", flt.namespace) else []
    if denied and (explicit or not allowed):
        return _forbidden("replay", denied[0]) or _error(403, "replay not allowed")
    return replace(flt, namespaces=allowed)


def _job_visible(row: dict[str, Any]) -> bool:
    """A replay job is shown to whoever started it, and to those who may read every
    namespace (shared tokens included)."""
    caller = _caller()
    if caller.identity is None or caller.everywhere("read"):
        return True
    return bool(job_json(row, with_results=False)["request"].get("by") == caller.name)


@api.get(REPLAYS_PATH)
@_authorized()
def list_replays() -> Response:
    limit = params.integer(dict(request.args), "limit", 1, 500) or 50
    rows = [r for r in _ctx().store.jobs.recent(limit) if _job_visible(r)]
    return jsonify({"items": [job_json(r, with_results=False) for r in rows]})


@api.get(REPLAYS_PATH + "/<job_id>")
@_authorized()
def get_replay(job_id: str) -> Response:
    row = _ctx().store.jobs.get(job_id[:64])
    if row is None or not _job_visible(row):
        return _error(404, f"no replay job {job_id[:64]!r}")
    return jsonify(job_json(row))


@api.route(REPLAYS_PATH + "/<job_id>", methods=["DELETE"])
@api.post(REPLAYS_PATH + "/<job_id>/cancel")
@_authorized("replay")
def cancel_replay(job_id: str) -> Response:
    jobs = _ctx().store.jobs
    found = jobs.get(job_id[:64])
    if found is None or not _job_visible(found) or not jobs.request_cancel(job_id[:64]):
        return _error(404, f"no replay job {job_id[:64]!r}")
    row = jobs.get(job_id[:64])
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
    with ctx.store.metrics.timed("ping"):
        ctx.store.db.ping()
    return jsonify({"status": "ok", "backend": ctx.store.backend})


@api.get(contract.PATH_METRICS)
def metrics_route() -> Response:
    # No token: counts and timings only, nothing of any event (see .telemetry).
    metrics = _ctx().store.metrics
    return Response(metrics.render(), content_type=metrics.content_type)
