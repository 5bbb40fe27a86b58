"""The decision log's table: append-only, on the event store's database (SQLite or
PostgreSQL), beside the dead letters.

One row per (AIService, role, source, id): a redelivery is stored once (``receipts``
counts it). Roles: ``input`` (an event the service consumed), ``reply`` (its decision),
``reprocessed`` (a logged input answered again by another model version, by
``aisvc reprocess``), ``feedback`` (a label for a decision, from any system). Each row
keeps the links a chain is rebuilt from: its own ``event_key``, its ``causation`` (the
key of the event it answers) and its ``correlation`` (constant along the chain). Each
row expires at ``received_at`` + the service's retention; :meth:`DecisionLog.expire`
deletes in short batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiservice_functions.cloudevents_http import json_text
from aiservice_functions.event_store.database import Connection, Database
from aiservice_functions.event_store.decision_records import Decision
from aiservice_functions.event_store.storage import TABLE as EVENTS_TABLE

TABLE: Final = "aisvc_decisions"
LOCK_ID: Final = 7163550011
MAX_CHAIN: Final = 5000
"""At most this many records in one trace answer (a chain is a handful in practice)."""

_COLUMNS: Final = (
    "seq, namespace, name, role, source, event_id, type, event_key, causation, correlation, "
    "trace_id, model_version, revision, latency_ms, data, data_hash, attributes, event_time, "
    "received_at, expires_at, receipts, run_id, corrects, label"
)


def _schema(autoinc: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            seq {autoinc},
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            source TEXT NOT NULL,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            event_key TEXT NOT NULL,
            causation TEXT,
            correlation TEXT NOT NULL,
            trace_id TEXT,
            model_version TEXT,
            revision TEXT,
            latency_ms DOUBLE PRECISION,
            data TEXT,
            data_hash TEXT NOT NULL,
            attributes TEXT NOT NULL,
            event_time TEXT,
            received_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            receipts INTEGER NOT NULL DEFAULT 1,
            run_id TEXT,
            corrects TEXT,
            label TEXT,
            UNIQUE (namespace, name, role, source, event_id)
        )""",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_svc ON {TABLE} (namespace, name, role, seq)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (received_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_expires ON {TABLE} (expires_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_corr ON {TABLE} (correlation)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_key ON {TABLE} (event_key)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_cause ON {TABLE} (causation)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_trace ON {TABLE} (trace_id)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_rev ON {TABLE} (namespace, name, revision)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_type ON {TABLE} (type)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_run ON {TABLE} (run_id)",
        # The quality query's window: one service's answers, equality on the first three,
        # range on time; and the decision a feedback names by its id (by its key: the
        # index on event_key).
        f"CREATE INDEX IF NOT EXISTS {TABLE}_window ON {TABLE} "
        "(namespace, name, role, received_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_eid ON {TABLE} (event_id)",
    ]


@dataclass(frozen=True)
class StoredDecision(Decision):
    """A decision as the store keeps it: with its place in the log and how many times
    it was delivered."""

    seq: int = 0
    receipts: int = 1

    def to_json(self) -> dict[str, Any]:
        """The record as the HTTP API returns it (camelCase, times in µs since the epoch)."""
        return {
            "seq": self.seq,
            "namespace": self.namespace,
            "name": self.name,
            "role": self.role,
            "source": self.source,
            "id": self.event_id,
            "type": self.type,
            "key": self.key,
            "causationId": self.causation,
            "correlationId": self.correlation,
            "traceId": self.trace_id,
            "modelVersion": self.model_version,
            "revision": self.revision,
            "latencyMs": self.latency_ms,
            "data": self.data,
            "dataHash": self.data_hash,
            "attributes": self.attributes,
            "time": self.event_time,
            "receivedAtUs": self.received_at,
            "receipts": self.receipts,
            "runId": self.run_id,
            "corrects": self.corrects,
            "label": self.label,
        }


def _record(row: Any) -> StoredDecision:
    return StoredDecision(
        seq=int(row["seq"]),
        namespace=row["namespace"],
        name=row["name"],
        role=row["role"],
        source=row["source"],
        event_id=row["event_id"],
        type=row["type"],
        key=row["event_key"],
        causation=row["causation"],
        correlation=row["correlation"],
        trace_id=row["trace_id"],
        model_version=row["model_version"],
        revision=row["revision"],
        latency_ms=float(row["latency_ms"]) if row["latency_ms"] is not None else None,
        data=json.loads(row["data"]) if row["data"] is not None else None,
        data_hash=row["data_hash"],
        attributes=json.loads(row["attributes"]),
        event_time=row["event_time"],
        received_at=int(row["received_at"]),
        expires_at=int(row["expires_at"]),
        receipts=int(row["receipts"]),
        run_id=row["run_id"],
        corrects=row["corrects"],
        label=row["label"],
    )


def _json(value: Any) -> str:
    return json_text(value)  # escapes a lone surrogate, which no database column takes


_INSERT: Final = f"""INSERT INTO {TABLE} (namespace, name, role, source, event_id, type,
    event_key, causation, correlation, trace_id, model_version, revision, latency_ms, data,
    data_hash, attributes, event_time, received_at, expires_at, run_id, corrects, label)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (namespace, name, role, source, event_id) DO NOTHING"""
_REDELIVERED: Final = f"""UPDATE {TABLE} SET receipts = receipts + 1
WHERE namespace = ? AND name = ? AND role = ? AND source = ? AND event_id = ?
RETURNING seq"""


def _key(d: Decision) -> tuple[str, str, str, str, str]:
    return (d.namespace, d.name, d.role, d.source, d.event_id)


def _insert_params(d: Decision) -> tuple[Any, ...]:
    return (
        d.namespace, d.name, d.role, d.source, d.event_id, d.type, d.key,
        d.causation, d.correlation, d.trace_id, d.model_version, d.revision,
        d.latency_ms, _json(d.data) if d.data is not None else None, d.data_hash,
        _json(d.attributes), d.event_time, d.received_at, d.expires_at, d.run_id,
        d.corrects, d.label,
    )  # fmt: skip


class DecisionLog:
    """The decision log's table over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        autoinc = (
            "INTEGER PRIMARY KEY AUTOINCREMENT"
            if db.backend == "sqlite"
            else "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
        )
        db.create(_schema(autoinc), LOCK_ID)

    def add(self, d: Decision) -> tuple[int, bool]:
        """Store ``d`` durably in a transaction of its own; ``(seq, created)``, ``created``
        False for a redelivery (ingest goes through the group writer)."""
        with self.db.transaction() as conn:
            return self.add_all(conn, [d])[0]

    def add_all(self, conn: Connection, records: Sequence[Decision]) -> list[tuple[int, bool]]:
        """Write ``records`` in the open transaction (:meth:`Database.write_group`);
        ``(seq, created)`` each, in order (seq 0 for a redelivery of a record that expired
        meanwhile: nothing left to count)."""
        written = self.db.write_group(
            conn,
            records,
            key=_key,
            insert=(_INSERT, _insert_params),
            redelivered=(_REDELIVERED, _key),
        )
        return [(seq or 0, created) for seq, created in written]

    # --- reads ----------------------------------------------------------------------

    def counts(self) -> list[tuple[tuple[str, str, str], float]]:
        """Records kept per (namespace, AIService, role): the log's size, for alerting
        before retention or the disk runs out."""
        with self.db.transaction(write=False) as conn:
            rows = self.db.execute(
                conn,
                f"SELECT namespace, name, role, COUNT(*) AS n FROM {TABLE} "
                "GROUP BY namespace, name, role ORDER BY namespace, name, role",
                (),
            ).fetchall()
        return [
            ((str(r["namespace"]), str(r["name"]), str(r["role"])), float(r["n"])) for r in rows
        ]

    def _select(self, where: str, params: Sequence[Any], tail: str = "") -> list[StoredDecision]:
        with self.db.transaction(write=False) as conn:
            rows = self.db.execute(
                conn, f"SELECT {_COLUMNS} FROM {TABLE} WHERE {where} {tail}", params
            ).fetchall()
        return [_record(r) for r in rows]

    def chain(self, query: str) -> tuple[list[str], list[StoredDecision]]:
        """Every record of the chains ``query`` names: an event id, an event key
        (source#id), a correlation id, or a traceparent / trace id."""
        trace = query.split("-")[1] if query.count("-") == 3 else query
        found = self._select(
            "event_id = ? OR event_key = ? OR correlation = ? OR trace_id = ?",
            (query, query, query, trace.lower()),
            f"ORDER BY seq LIMIT {MAX_CHAIN}",
        )
        correlations = sorted({d.correlation for d in found})
        if not correlations:
            return [], []
        marks = ", ".join("?" for _ in correlations)
        records = self._select(
            f"correlation IN ({marks})", correlations, f"ORDER BY seq LIMIT {MAX_CHAIN}"
        )
        return correlations, records

    def dead_letters_of(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """Dead letters (from the dead-letter table) of the events ``(source, id)``."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(keys), 200):
            part = keys[start : start + 200]
            cond = " OR ".join("(source = ? AND event_id = ?)" for _ in part)
            params = [v for pair in part for v in pair]
            with self.db.transaction(write=False) as conn:
                rows = self.db.execute(
                    conn,
                    f"""SELECT seq, namespace, name, source, event_id, error_code, error_dest,
                        revision, replay_count, replayed_at, received_at, receipts
                    FROM {EVENTS_TABLE} WHERE kind = 'dead-letter' AND ({cond}) ORDER BY seq""",
                    params,
                ).fetchall()
            out += [
                {
                    "seq": int(r["seq"]),
                    "namespace": r["namespace"],
                    "name": r["name"],
                    "key": f"{r['source']}#{r['event_id']}",
                    "errorCode": r["error_code"],
                    "errorDest": r["error_dest"],
                    "revision": r["revision"],
                    "replayCount": int(r["replay_count"]),
                    "replayed": r["replayed_at"] is not None,
                    "receivedAtUs": int(r["received_at"]),
                    "receipts": int(r["receipts"]),
                }
                for r in rows
            ]
        return out

    def page(
        self,
        namespace: str,
        name: str,
        role: str | None = None,
        since: int | None = None,
        until: int | None = None,
        after: int = 0,
        limit: int = 500,
        run_id: str | None = None,
    ) -> list[StoredDecision]:
        """Oldest first, after seq ``after`` (keyset paging: constant memory over millions)."""
        conds = ["namespace = ?", "name = ?", "seq > ?"]
        params: list[Any] = [namespace, name, after]
        for column, value in (("role", role), ("run_id", run_id)):
            if value is not None:
                conds.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            conds.append("received_at >= ?")
            params.append(since)
        if until is not None:
            conds.append("received_at < ?")
            params.append(until)
        return self._select(
            " AND ".join(conds), params, f"ORDER BY seq LIMIT {max(1, min(limit, 5000))}"
        )

    def recent(
        self, namespace: str, name: str, before: int | None = None, limit: int = 50
    ) -> list[StoredDecision]:
        """Newest first, before seq ``before`` (the console's pages of one AIService)."""
        conds = "namespace = ? AND name = ?"
        params: list[Any] = [namespace, name]
        if before is not None:
            conds += " AND seq < ?"
            params.append(before)
        return self._select(conds, params, f"ORDER BY seq DESC LIMIT {max(1, min(limit, 500))}")

    def by_causes(
        self, namespace: str, name: str, role: str, causes: Sequence[str], run_id: str | None = None
    ) -> list[StoredDecision]:
        """The records of one role answering any of ``causes`` (event keys or ids)."""
        if not causes:
            return []
        marks = ", ".join("?" for _ in causes)
        where = f"namespace = ? AND name = ? AND role = ? AND causation IN ({marks})"
        params: list[Any] = [namespace, name, role, *causes]
        if run_id is not None:
            where += " AND run_id = ?"
            params.append(run_id)
        return self._select(where, params, "ORDER BY seq")

    def by_keys(
        self, namespace: str, name: str, role: str, keys: Sequence[str]
    ) -> list[StoredDecision]:
        """The records of one role with any of the event ``keys`` (source#id)."""
        out: list[StoredDecision] = []
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            marks = ", ".join("?" for _ in part)
            out += self._select(
                f"namespace = ? AND name = ? AND role = ? AND event_key IN ({marks})",
                [namespace, name, role, *part],
                "ORDER BY seq",
            )
        return out

    def compare(
        self, namespace: str, name: str, run_id: str, limit: int = 5000
    ) -> list[tuple[StoredDecision | None, StoredDecision | None, StoredDecision]]:
        """One reprocessing run beside what it re-made: ``(input, old reply, new answer)``
        per reprocessed record, oldest first."""
        new = self.page(namespace, name, "reprocessed", run_id=run_id, limit=limit)
        causes = [n.causation for n in new if n.causation]
        inputs = {i.key: i for i in self.by_keys(namespace, name, "input", causes)}
        old = {r.causation: r for r in self.by_causes(namespace, name, "reply", causes)}
        return [(inputs.get(c), old.get(c), n) for n in new if (c := n.causation or "")]

    def namespaces(self) -> set[str]:
        """The namespaces with decision records."""
        with self.db.transaction(write=False) as conn:
            rows = self.db.execute(conn, f"SELECT DISTINCT namespace FROM {TABLE}").fetchall()
        return {r["namespace"] for r in rows}

    def dead_letter_namespaces(self) -> set[str]:
        """The namespaces with dead letters (a trace may show them)."""
        with self.db.transaction(write=False) as conn:
            rows = self.db.execute(
                conn,
                f"SELECT DISTINCT namespace FROM {EVENTS_TABLE} WHERE kind = 'dead-letter'",
            ).fetchall()
        return {r["namespace"] for r in rows}

    def services(self, limit: int = 500) -> list[dict[str, Any]]:
        """AIServices with decisions: records and the newest ``received_at`` of each."""
        with self.db.transaction(write=False) as conn:
            rows = self.db.execute(
                conn,
                f"""SELECT namespace, name, COUNT(*) AS n, MAX(received_at) AS newest FROM {TABLE}
                GROUP BY namespace, name ORDER BY namespace, name LIMIT {int(limit)}""",
            ).fetchall()
        return [
            {
                "namespace": r["namespace"],
                "name": r["name"],
                "records": int(r["n"]),
                "newestUs": int(r["newest"]),
            }
            for r in rows
        ]

    def runs(self, namespace: str, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """Reprocessing runs of one AIService, newest first: id, records, model versions."""
        with self.db.transaction(write=False) as conn:
            rows = self.db.execute(
                conn,
                f"""SELECT run_id, COUNT(*) AS n, MIN(received_at) AS started,
                    MAX(received_at) AS ended, MIN(model_version) AS low,
                    MAX(model_version) AS high
                FROM {TABLE} WHERE namespace = ? AND name = ? AND role = 'reprocessed'
                    AND run_id IS NOT NULL
                GROUP BY run_id ORDER BY MIN(received_at) DESC LIMIT {int(limit)}""",
                (namespace, name),
            ).fetchall()
        return [
            {
                "run": r["run_id"],
                "records": int(r["n"]),
                "startedUs": int(r["started"]),
                "endedUs": int(r["ended"]),
                "modelVersions": sorted({v for v in (r["low"], r["high"]) if v}),
            }
            for r in rows
        ]

    def feedback_for(
        self, namespace: str, name: str, decision_ids: Sequence[str]
    ) -> list[StoredDecision]:
        """This AIService's feedback records naming any of ``decision_ids`` (a decision's
        id or key): feedback sent for another service never labels this one's rows."""
        if not decision_ids:
            return []
        marks = ", ".join("?" for _ in decision_ids)
        return self._select(
            f"namespace = ? AND name = ? AND role = 'feedback' AND causation IN ({marks})",
            [namespace, name, *decision_ids],
            "ORDER BY seq",
        )

    def export(
        self, namespace: str, name: str, since: int | None, until: int | None, feedback: bool
    ) -> Iterator[dict[str, Any]]:
        """One row per logged input, with its decision and outcome, oldest first; read
        in pages, so memory stays constant however many rows there are."""
        after = 0
        while True:
            inputs = self.page(namespace, name, "input", since, until, after, limit=500)
            if not inputs:
                return
            after = inputs[-1].seq
            replies = {
                r.causation: r
                for r in self.by_causes(namespace, name, "reply", [i.key for i in inputs])
            }
            dead = {
                d["key"] for d in self.dead_letters_of([(i.source, i.event_id) for i in inputs])
            }
            labels: dict[str, str | None] = {}
            if feedback and replies:
                ids = [r.event_id for r in replies.values()] + [r.key for r in replies.values()]
                for f in self.feedback_for(namespace, name, ids):
                    labels[f.causation or ""] = f.label
            for i in inputs:
                reply = replies.get(i.key)
                row: dict[str, Any] = {
                    "id": i.event_id,
                    "source": i.source,
                    "type": i.type,
                    "time": i.event_time,
                    "input": i.data,
                    "inputHash": i.data_hash,
                    "output": reply.data if reply else None,
                    "modelVersion": reply.model_version if reply else None,
                    "revision": reply.revision if reply else None,
                    "latencyMs": reply.latency_ms if reply else None,
                    "outcome": _outcome(i, reply, i.key in dead),
                    "decisionId": reply.event_id if reply else None,
                }
                if feedback:
                    row["feedbackLabel"] = (
                        (labels.get(reply.event_id) or labels.get(reply.key)) if reply else None
                    )
                yield row

    # --- retention ------------------------------------------------------------------

    def expire(self, now_us: int, batch: int = 500) -> int:
        """Delete up to ``batch`` records past their AIService's retention."""
        with self.db.transaction() as conn:
            cur = self.db.execute(
                conn,
                f"""DELETE FROM {TABLE} WHERE seq IN (
                    SELECT seq FROM {TABLE} WHERE expires_at < ? ORDER BY seq LIMIT ?)""",
                (now_us, batch),
            )
            return max(cur.rowcount, 0)

    def stats(self) -> tuple[int, int | None]:
        """(records, newest received_at): for the store's metrics."""
        with self.db.transaction(write=False) as conn:
            row = self.db.execute(
                conn, f"SELECT COUNT(*) AS n, MAX(received_at) AS newest FROM {TABLE}"
            ).fetchone()
        return int(row["n"]), (int(row["newest"]) if row["newest"] is not None else None)


def _outcome(i: StoredDecision, reply: StoredDecision | None, dead: bool) -> str:
    """answered / dead-lettered / replayed (answered after a replay) / pending."""
    if reply is not None:
        replayed = bool(i.attributes.get("aisvcreplay")) or dead
        return "replayed" if replayed else "answered"
    return "dead-lettered" if dead else "pending"
