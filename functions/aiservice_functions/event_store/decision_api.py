"""The decision log's HTTP API, a Flask Blueprint the event store registers.

Ingest (the sink URLs the operator compiles from ``spec.decisionLog``; like dead-letter
ingest it is attributed by its authenticated path, never by the event):

- ``POST /v1/namespaces/{ns}/aiservices/{name}/decisions/{inputs|replies|feedback}/{credential}
  ?sample=&data=&retention=&redact=`` — any CloudEvent. The credential is the AIService's
  sink credential (:func:`aiservice_functions.contract.sink_credential`); a store run
  without a sink key also takes the path without it. An empty ``201`` once committed
  (header ``Aisvc-Decision-Seq``), ``200`` for a redelivery, ``202`` (``Aisvc-Sampled:
  false``) when the event's chain is not sampled, ``400``/``415`` with a JSON reason,
  ``503`` when the database is down. Answers carry no body: Knative would take one that
  is not a CloudEvent for a failed delivery.
- ``POST .../decisions/reprocessed?run=RUN`` (bearer token: ``aisvc reprocess`` writes the
  new decisions beside the old ones).

Query (bearer token), JSON:

- ``GET /v1/decisions/trace?id=X`` — X an event id, ``source#id``, correlation id or
  traceparent → ``{"query", "correlationIds": [...], "records": [record...],
  "deadLetters": [...]}``; records oldest first, each with ``key``, ``causationId``.
- ``GET /v1/namespaces/{ns}/aiservices/{name}/decisions?role=&since=&until=&after=&limit=
  &run=`` → ``{"items": [record...], "next": seq | null}`` oldest first (keyset paging).
- ``GET .../decisions/compare?run=RUN`` → ``{"run", "pairs": [{"input", "old", "new"}]}``
  for a reprocessing run: each input with its logged reply and the new one.
- ``GET .../decisions/export?since=&until=&feedback=true`` → NDJSON, one line per logged
  input (data, output, model version, outcome, time), streamed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Final

from flask import Blueprint, Flask, Response, jsonify, request

from aiservice_functions.cloudevents_http import InvalidEvent, json_text, parse_request
from aiservice_functions.event_store import ingest, params
from aiservice_functions.event_store.decision_records import (
    ROLE_OF_PATH,
    LogSettings,
    to_decision,
)
from aiservice_functions.event_store.decisions import DecisionLog
from aiservice_functions.event_store.records import now_us, to_us
from aiservice_functions.event_store.storage import SqlStore, StoreUnavailable
from aiservice_functions.event_store.telemetry import StoreMetrics
from aiservice_functions.timestamps import parse_time

log = logging.getLogger(__name__)

EXPIRE_EVERY_S: Final = 60.0
SEQ_HEADER: Final = "Aisvc-Decision-Seq"
SAMPLED_HEADER: Final = "Aisvc-Sampled"
_ID_MAX: Final = 1024

Guard = Callable[..., Response | None]
"""The app's token check; `guard("replay")` asks for the full token, `guard()` a read."""
"""The query API's bearer-token check: None to pass, else the refusal."""


def _error(status: int, reason: str) -> Response:
    response = jsonify({"error": reason})
    response.status_code = status
    return response


class ExpiryThread:
    """Deletes expired decision records every ``interval`` seconds, in short batches."""

    def __init__(self, decisions: DecisionLog, interval: float = EXPIRE_EVERY_S) -> None:
        self.decisions = decisions
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decision-expiry", daemon=True)

    def start(self) -> ExpiryThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                while self.decisions.expire(now_us()) >= 500 and not self._stop.is_set():
                    self._stop.wait(0.05)
            except StoreUnavailable as err:
                log.warning("decision expiry skipped: %s", err)


def _lag_s(event_time: str | None, received_us: int) -> float | None:
    if not event_time:
        return None
    try:
        return (received_us - to_us(parse_time(event_time))) / 1e6
    except ValueError:
        return None


def blueprint(
    decisions: DecisionLog,
    guard: Guard,
    max_body_bytes: int,
    metrics: StoreMetrics | None = None,
    sink_key: bytes | None = None,
) -> Blueprint:
    """The decision log's routes over ``decisions``."""
    bp = Blueprint("decisions", __name__)
    service_path = "/v1/namespaces/<namespace>/aiservices/<name>/decisions"

    @bp.errorhandler(InvalidEvent)
    def invalid(err: InvalidEvent) -> Response:
        return _error(err.status, err.reason)

    @bp.errorhandler(params.ParamError)
    def bad_parameter(err: params.ParamError) -> Response:
        return _error(400, str(err))

    _add_ingest(bp, service_path, decisions, guard, max_body_bytes, metrics, sink_key)
    _add_lookups(bp, service_path, decisions, guard)
    _add_run_views(bp, service_path, decisions, guard)
    return bp


def _add_ingest(
    bp: Blueprint,
    service_path: str,
    decisions: DecisionLog,
    guard: Guard,
    max_body_bytes: int,
    metrics: StoreMetrics | None,
    sink_key: bytes | None,
) -> None:
    """``POST .../decisions/<role>[/<credential>]``: one consumed event, reply, feedback
    event (the sink credential) or reprocessed answer (the bearer token)."""

    @bp.post(service_path + "/<role>")
    @bp.post(service_path + "/<role>/<credential>")
    def ingest_decision(
        namespace: str, name: str, role: str, credential: str | None = None
    ) -> Response:
        if role not in ROLE_OF_PATH:
            return _error(
                404, f"no decision-log part {role[:40]!r}: one of {', '.join(ROLE_OF_PATH)}"
            )
        ingest.check_name("namespace", namespace)
        ingest.check_name("AIService name", name)
        run_id: str | None = None
        if role == "reprocessed":
            refused = guard("replay")
            if refused:
                return refused
            run_id = request.args.get("run") or ""
            if not run_id or len(run_id) > 128:
                raise InvalidEvent("reprocessed records need ?run= (at most 128 characters)")
        else:
            refusal = ingest.credential_refusal(sink_key, namespace, name, credential)
            if refusal is not None:
                if metrics is not None:
                    metrics.decision(ROLE_OF_PATH[role], "refused", None)
                return _error(*refusal)
        settings = LogSettings.from_query(request.args.to_dict(flat=False))
        body = request.get_data(cache=False)
        if len(body) > max_body_bytes:
            return _error(413, f"body larger than {max_body_bytes} bytes")
        event = parse_request(dict(request.headers), body).event
        record = to_decision(
            event,
            namespace=namespace,
            name=name,
            role=ROLE_OF_PATH[role],
            settings=settings,
            received_at=now_us(),
            run_id=run_id,
        )
        if record is None:
            if metrics is not None:
                metrics.decision(ROLE_OF_PATH[role], "unsampled", None)
            return Response(status=202, headers={SAMPLED_HEADER: "false"})
        seq, created = decisions.add(record)
        if metrics is not None:
            lag = _lag_s(record.event_time, record.received_at)
            metrics.decision(record.role, "stored" if created else "duplicate", lag)
        # No body: Knative takes a non-empty answer that is not a CloudEvent as a failed
        # delivery (it would retry); the seq goes in a header instead.
        return Response(status=201 if created else 200, headers={SEQ_HEADER: str(seq)})


def _add_lookups(bp: Blueprint, service_path: str, decisions: DecisionLog, guard: Guard) -> None:
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
        keys = sorted({(r.source, r.event_id) for r in records})
        return jsonify(
            {
                "query": query,
                "correlationIds": correlations,
                "records": [r.to_json() for r in records],
                "deadLetters": decisions.dead_letters_of(keys),
            }
        )

    @bp.get(service_path)
    def list_decisions(namespace: str, name: str) -> Response:
        refused = guard()
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


def _add_run_views(bp: Blueprint, service_path: str, decisions: DecisionLog, guard: Guard) -> None:
    """A reprocessing run against the decisions it re-made, and the export as JSON lines."""

    @bp.get(service_path + "/compare")
    def compare(namespace: str, name: str) -> Response:
        refused = guard()
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
        refused = guard()
        if refused:
            return refused
        since = params.timestamp(request.args, "since")
        until = params.timestamp(request.args, "until")
        feedback = (request.args.get("feedback") or "").lower() in ("1", "true", "yes")

        def lines() -> Iterator[str]:
            for row in decisions.export(namespace, name, since, until, feedback):
                yield json_text(row) + "\n"  # a lone surrogate escaped: it must encode

        return Response(lines(), content_type="application/x-ndjson")


def register(
    app: Flask,
    store: SqlStore,
    guard: Guard,
    max_body_bytes: int,
    metrics: StoreMetrics | None = None,
    sink_key: bytes | None = None,
) -> DecisionLog:
    """Add the decision log to the event store's app (table, routes, expiry thread)."""
    decisions = DecisionLog(store)
    app.register_blueprint(blueprint(decisions, guard, max_body_bytes, metrics, sink_key))
    app.extensions["aisvc_decisions"] = {
        "log": decisions,
        "expiry": ExpiryThread(decisions).start(),
    }
    return decisions
