"""The decision log's HTTP API, a Flask Blueprint the event store registers.

Ingest (``POST .../decisions/{inputs|replies|feedback|reprocessed}``) is :mod:`.intake`'s,
served by both fronts.

Query (bearer token), JSON:

- ``GET /v1/decisions/trace?id=X`` — X an event id, ``source#id``, correlation id or
  traceparent → ``{"query", "correlationIds": [...], "records": [record...],
  "deadLetters": [...]}``; records oldest first, each with ``key``, ``causationId``.
- ``GET /v1/namespaces/{ns}/aiservices/{name}/decisions?role=&since=&until=&after=&limit=
  &run=`` → ``{"items": [record...], "next": seq | null}`` oldest first (keyset paging).
- ``GET .../decisions/compare?run=RUN`` → ``{"run", "pairs": [{"input", "old", "new"}]}``
  for a reprocessing run: each input with its logged reply and the new one.
- ``GET .../decisions/export?since=&until=&feedback=true`` → NDJSON, one line per logged
  input (data, output, model version, outcome, time), streamed; logged with who asked.

In ``kubernetes`` auth mode one AIService's routes need ``get aiservices`` in its
namespace (403); a trace keeps the records and dead letters of the namespaces the caller
may read, and shows each hop elsewhere only as ``{"hidden": true}``, in its place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Final

from flask import Blueprint, Flask, Response, jsonify, request

from aiservice_functions.cloudevents_http import InvalidEvent, json_text
from aiservice_functions.event_store import params
from aiservice_functions.event_store.access import Caller, shown
from aiservice_functions.event_store.decision_records import ROLE_OF_PATH
from aiservice_functions.event_store.decisions import DecisionLog

log = logging.getLogger(__name__)

_ID_MAX: Final = 1024

Guard = Callable[..., Response | None]
"""The app's token check; `guard("replay")` asks for the full token, `guard()` a read."""
"""The query API's bearer-token check: None to pass, else the refusal."""


def _error(status: int, reason: str) -> Response:
    response = jsonify({"error": reason})
    response.status_code = status
    return response


Callers = Callable[[], Caller]
"""The caller of the current request (known once ``guard`` passed it)."""

HIDDEN: Final = {"hidden": True}
"""A hop of a trace in a namespace the caller may not read: that it exists, nothing else."""


def _readable(caller: Caller, decisions: DecisionLog) -> frozenset[str] | None:
    return caller.readable(lambda: decisions.namespaces() | decisions.dead_letter_namespaces())


def _refused(guard: Guard, callers: Callers, namespace: str) -> Response | None:
    """The guard's refusal, else 403 when the caller may not read ``namespace``."""
    refused = guard()
    if refused:
        return refused
    caller = callers()
    if caller.may("read", namespace):
        return None
    return _error(403, f"{caller.name} may not read in namespace {namespace!r} (get aiservices)")


def blueprint(decisions: DecisionLog, guard: Guard, callers: Callers) -> Blueprint:
    """The decision log's query routes over ``decisions`` (ingest is :mod:`.intake`'s)."""
    bp = Blueprint("decisions", __name__)
    service_path = "/v1/namespaces/<namespace>/aiservices/<name>/decisions"

    @bp.errorhandler(InvalidEvent)
    def invalid(err: InvalidEvent) -> Response:
        return _error(err.status, err.reason)

    @bp.errorhandler(params.ParamError)
    def bad_parameter(err: params.ParamError) -> Response:
        return _error(400, str(err))

    _add_lookups(bp, service_path, decisions, guard, callers)
    _add_run_views(bp, service_path, decisions, guard, callers)
    return bp


def _add_lookups(
    bp: Blueprint, service_path: str, decisions: DecisionLog, guard: Guard, callers: Callers
) -> None:
    """A chain by any of its ids, and one AIService's decisions page by page."""

    @bp.get("/v1/decisions/trace")
    def trace() -> Response:
        refused = guard()
        if refused:
            return refused
        query = (request.args.get("id") or "").strip()
        if not query or len(query) > _ID_MAX:
            raise InvalidEvent(f"id is required (at most {_ID_MAX} characters)")
        correlations, records = decisions.chain(query)
        readable = _readable(callers(), decisions)
        visible = [r for r in records if shown(r.namespace, readable)]
        keys = sorted({(r.source, r.event_id) for r in visible})
        if readable is not None:
            correlations = sorted({r.correlation for r in visible})
        return jsonify(
            {
                "query": query,
                "correlationIds": correlations,
                "records": [
                    r.to_json() if shown(r.namespace, readable) else HIDDEN for r in records
                ],
                "deadLetters": [
                    d
                    for d in decisions.dead_letters_of(keys)
                    if shown(str(d["namespace"]), readable)
                ],
            }
        )

    @bp.get(service_path)
    def list_decisions(namespace: str, name: str) -> Response:
        refused = _refused(guard, callers, namespace)
        if refused:
            return refused
        role = request.args.get("role") or None
        if role is not None and role not in ROLE_OF_PATH.values():
            raise InvalidEvent(f"role must be one of {', '.join(ROLE_OF_PATH.values())}")
        args = request.args
        limit = params.integer(args, "limit", 1) or 500
        items = decisions.page(
            namespace,
            name,
            role,
            params.timestamp(args, "since"),
            params.timestamp(args, "until"),
            params.integer(args, "after") or 0,
            limit,
            request.args.get("run") or None,
        )
        more = len(items) >= max(1, min(limit, 5000))
        return jsonify(
            {"items": [i.to_json() for i in items], "next": items[-1].seq if more else None}
        )


def _add_run_views(
    bp: Blueprint, service_path: str, decisions: DecisionLog, guard: Guard, callers: Callers
) -> None:
    """A reprocessing run against the decisions it re-made, and the export as JSON lines."""

    @bp.get(service_path + "/compare")
    def compare(namespace: str, name: str) -> Response:
        refused = _refused(guard, callers, namespace)
        if refused:
            return refused
        run_id = request.args.get("run") or ""
        if not run_id:
            raise InvalidEvent("run is required")
        pairs = [
            {
                "input": i.to_json() if i is not None else None,
                "old": o.to_json() if o is not None else None,
                "new": n.to_json(),
            }
            for i, o, n in decisions.compare(namespace, name, run_id)
        ]
        return jsonify({"run": run_id, "pairs": pairs})

    @bp.get(service_path + "/export")
    def export(namespace: str, name: str) -> Response:
        refused = _refused(guard, callers, namespace)
        if refused:
            return refused
        by = callers().name
        log.info(
            "export by %s",
            by,
            extra={"audit": "export", "by": by, "namespace": namespace, "aiservice": name},
        )
        since = params.timestamp(request.args, "since")
        until = params.timestamp(request.args, "until")
        feedback = (request.args.get("feedback") or "").lower() in ("1", "true", "yes")

        def lines() -> Iterator[str]:
            for row in decisions.export(namespace, name, since, until, feedback):
                yield json_text(row) + "\n"  # a lone surrogate escaped: it must encode

        return Response(lines(), content_type="application/x-ndjson")


def register(app: Flask, decisions: DecisionLog, guard: Guard, callers: Callers) -> DecisionLog:
    """Add the decision log's query routes to the event store's app."""
    app.register_blueprint(blueprint(decisions, guard, callers))
    return decisions
