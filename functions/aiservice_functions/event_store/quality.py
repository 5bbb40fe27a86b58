"""Model quality of two versions over one window, from the decision log, in one query.

A canary rollout's quality checks (``spec.rollout.analysis.minAgreement``,
``maxOutputDrift``, ``minAccuracy``, ``maxAccuracyDrop``) need, per analysis interval and
per model version: how often each output was given, on how many inputs both versions
answered and how often they agreed, and how many of each version's answers received
feedback and how many of those were right. The database computes all of it in one
statement (SQLite and PostgreSQL alike), so a window of a million decisions costs one
round trip and returns a few dozen rows.

- An *answer* is a ``reply`` (the version served the event) or a ``shadow`` record (the
  canary answered a mirrored copy in shadow mode); both name their input in
  ``causation``. A version's answers to one input count once.
- The compared *output* is the ``label`` column (kept for every decision) for ``$.label``,
  else the value at a dotted path of the logged data (needs ``includeData``).
- *Paired*: inputs both versions answered in the window; *agreed*: those with equal
  outputs, or, with ``tolerance``, numeric outputs at most that far apart.
- *Buckets* of a categorical output are its values; a numeric output (``tolerance`` set)
  is bucketed by the stable version's deciles in the window: ``NTILE(10)`` over its
  values, each decile's largest value its upper edge; a value goes to the first bucket
  whose edge is at least the value, above every edge to the last. Missing values are
  bucket ``none``.
- *Feedback*: the feedback records received in the window (labels usually come long
  after the decision). Each names a decision (its id or ``source#id``); its label is the
  truth for that decision's input, so it grades every version's answer to the same input,
  whenever given (a shadow answer too). ``labelled`` counts a version's answers with a
  truth, ``correct`` those whose ``label`` equals it.

``GET /v1/namespaces/{ns}/aiservices/{name}/quality?canary=&stable=&since=&until=
&compare=&tolerance=`` (read token) answers ``{"versions": {v: {"answers", "outputs":
{bucket: n}, "labelled", "correct"}}, "paired", "agreed", ...}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

from flask import Blueprint, Flask, Response, jsonify, request

from aiservice_functions import contract
from aiservice_functions.cloudevents_http import InvalidEvent
from aiservice_functions.event_store import ingest
from aiservice_functions.event_store.database import Database
from aiservice_functions.event_store.decisions import TABLE
from aiservice_functions.event_store.records import to_us
from aiservice_functions.timestamps import parse_time

LABEL: Final = "$.label"
COMPARE_PATH: Final = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_]*){1,8}$")
"""A dotted JSON path (identifiers only: it is written into the SQL as a literal)."""
DECILES: Final = 10
NONE_BUCKET: Final = "none"
Guard = Callable[[str], Response | None]
"""Refuses a read of one namespace's records (no token, or no RBAC for it), else None."""


def _value(backend: str, compare: str, numeric: bool) -> str:
    """The SQL expression of the compared output of a decision row."""
    if compare == LABEL and not numeric:
        return "label"
    steps = compare[2:].split(".")
    if backend == "sqlite":
        path = "'" + compare + "'"
        if numeric:
            return (
                f"CASE WHEN json_type(data, {path}) IN ('integer', 'real') "
                f"THEN json_extract(data, {path}) END"
            )
        return f"CAST(json_extract(data, {path}) AS TEXT)"
    path = "'{" + ",".join(steps) + "}'"
    doc = f"CAST(data AS jsonb) #> CAST({path} AS text[])"
    if numeric:
        return (
            f"CASE WHEN jsonb_typeof({doc}) = 'number' "
            f"THEN CAST(CAST(data AS jsonb) #>> CAST({path} AS text[]) AS DOUBLE PRECISION) END"
        )
    return f"(CAST(data AS jsonb) #>> CAST({path} AS text[]))"


def query(
    store: Database,
    namespace: str,
    name: str,
    *,
    canary: str,
    stable: str,
    since_us: int,
    until_us: int,
    compare: str = LABEL,
    tolerance: float | None = None,
) -> dict[str, Any]:
    """Quality figures of ``canary`` and ``stable`` (model versions) over the window."""
    if not COMPARE_PATH.match(compare):
        raise ValueError(f"compare must be a JSON path such as $.label, got {compare[:80]!r}")
    numeric = tolerance is not None
    value = _value(store.backend, compare, numeric)
    agree = "ABS(c.v - s.v) <= ?" if numeric else "c.v = s.v"
    if numeric:
        buckets = f"""
        e AS (
            SELECT tile, MAX(v) AS hi FROM (
                SELECT v, NTILE({DECILES}) OVER (ORDER BY v) AS tile
                FROM a WHERE mv = ? AND v IS NOT NULL) t
            GROUP BY tile),
        b AS (
            SELECT mv, CASE WHEN v IS NULL THEN NULL ELSE COALESCE(
                (SELECT MIN(e.tile) FROM e WHERE e.hi >= a.v),
                (SELECT MAX(e.tile) FROM e)) END AS bucket
            FROM a),"""
        bucket_params: list[Any] = [stable]
    else:
        buckets = "b AS (SELECT mv, v AS bucket FROM a),"
        bucket_params = []
    sql = f"""
    WITH r AS (
        SELECT model_version AS mv, causation AS cause, event_id AS eid, event_key AS ekey,
            label AS lab, {value} AS v
        FROM {TABLE}
        WHERE namespace = ? AND name = ? AND role IN ('reply', 'shadow')
            AND received_at >= ? AND received_at < ? AND model_version IN (?, ?)
            AND causation IS NOT NULL),
    a AS (SELECT mv, cause, MIN(v) AS v, MIN(lab) AS lab FROM r GROUP BY mv, cause),
    fb AS (
        SELECT causation AS decision, label AS truth FROM {TABLE}
        WHERE namespace = ? AND name = ? AND role = 'feedback'
            AND received_at >= ? AND received_at < ? AND label IS NOT NULL),
    f AS (
        SELECT d.causation AS cause, MAX(fb.truth) AS truth
        FROM fb JOIN {TABLE} d ON d.event_key = fb.decision OR d.event_id = fb.decision
        WHERE d.namespace = ? AND d.name = ? AND d.role IN ('reply', 'shadow')
            AND d.causation IS NOT NULL
        GROUP BY d.causation),
    g AS (
        SELECT x.model_version AS mv, MIN(x.label) AS lab, MIN(f.truth) AS truth
        FROM f JOIN {TABLE} x ON x.causation = f.cause
        WHERE x.namespace = ? AND x.name = ? AND x.role IN ('reply', 'shadow')
            AND x.model_version IN (?, ?)
        GROUP BY x.model_version, f.cause),
    {buckets}
    p AS (
        SELECT CASE WHEN {agree} THEN 1 ELSE 0 END AS agreed
        FROM a c JOIN a s ON c.cause = s.cause AND c.mv = ? AND s.mv = ?)
    SELECT 'outputs' AS kind, mv AS version, CAST(bucket AS TEXT) AS bucket, COUNT(*) AS n,
        0 AS m FROM b GROUP BY mv, bucket
    UNION ALL
    SELECT 'pairs', '', '', COUNT(*), COALESCE(SUM(agreed), 0) FROM p
    UNION ALL
    SELECT 'feedback', mv, '', COUNT(*), COALESCE(SUM(CASE WHEN lab = truth THEN 1 ELSE 0 END), 0)
    FROM g GROUP BY mv"""
    params: list[Any] = [namespace, name, since_us, until_us, canary, stable]
    params += [namespace, name, since_us, until_us, namespace, name]
    params += [namespace, name, canary, stable]
    params += bucket_params
    if numeric:
        params.append(tolerance)
    params += [canary, stable]
    with store.transaction(write=False) as conn:
        rows = store.execute(conn, sql, params).fetchall()
    versions: dict[str, dict[str, Any]] = {
        v: {"answers": 0, "outputs": {}, "labelled": 0, "correct": 0} for v in (canary, stable)
    }
    paired = agreed = 0
    for row in rows:
        kind, version, bucket, n, m = (row[c] for c in ("kind", "version", "bucket", "n", "m"))
        if kind == "pairs":
            paired, agreed = int(n), int(m)
        elif kind == "outputs":
            key = NONE_BUCKET if bucket is None else str(bucket)
            versions[version]["outputs"][key] = int(n)
            versions[version]["answers"] += int(n)
        else:
            versions[version]["labelled"], versions[version]["correct"] = int(n), int(m)
    return {
        "namespace": namespace,
        "name": name,
        "sinceUs": since_us,
        "untilUs": until_us,
        "compare": compare,
        "tolerance": tolerance,
        "canary": canary,
        "stable": stable,
        "versions": versions,
        "paired": paired,
        "agreed": agreed,
    }


def _time(key: str) -> int:
    value = request.args.get(key) or ""
    try:
        return to_us(parse_time(value))
    except ValueError:
        raise InvalidEvent(f"{key} must be an RFC 3339 timestamp, got {value[:40]!r}") from None


def blueprint(store: Database, guard: Guard) -> Blueprint:
    bp = Blueprint("quality", __name__)

    @bp.errorhandler(InvalidEvent)
    def invalid(err: InvalidEvent) -> Response:
        response = jsonify({"error": err.reason})
        response.status_code = err.status
        return response

    @bp.get(contract.EVENT_STORE_QUALITY_PATH.replace("{", "<").replace("}", ">"))
    def quality(namespace: str, name: str) -> Response:
        refused = guard(namespace)
        if refused:
            return refused
        ingest.check_name("namespace", namespace)
        ingest.check_name("AIService name", name)
        canary, stable = request.args.get("canary") or "", request.args.get("stable") or ""
        if not canary or not stable or canary == stable or max(len(canary), len(stable)) > 63:
            raise InvalidEvent("canary and stable are required: two different model versions")
        compare = request.args.get("compare") or LABEL
        if not COMPARE_PATH.match(compare):
            raise InvalidEvent(f"compare must be a JSON path such as $.label, got {compare[:80]!r}")
        tolerance: float | None = None
        if request.args.get("tolerance"):
            try:
                tolerance = float(request.args["tolerance"])
            except ValueError:
                tolerance = -1.0
            if not math.isfinite(tolerance) or tolerance < 0:
                raise InvalidEvent("tolerance must be a number of at least 0")
        since, until = _time("since"), _time("until")
        if until <= since:
            raise InvalidEvent("until must be later than since")
        return jsonify(
            query(
                store,
                namespace,
                name,
                canary=canary,
                stable=stable,
                since_us=since,
                until_us=until,
                compare=compare,
                tolerance=tolerance,
            )
        )

    return bp


def register(app: Flask, store: Database, guard: Guard) -> None:
    """Add the quality query's route to the event store's app (its indexes are the
    decision log's, :mod:`.decisions`)."""
    app.register_blueprint(blueprint(store, guard))
