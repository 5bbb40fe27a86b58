"""The events table: dead letters and audit events, with their replay bookkeeping.

De-duplication is a unique key on (kind, namespace, AIService, source, id): a redelivered
event is stored once; its ``receipts`` counter says how often it came. Connections and
transactions are :mod:`.database`'s; ingest writes go through the group writer
(:mod:`.writer`), which calls :meth:`EventTable.add_all` with everything that arrived
meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from aiservice_functions.cloudevents_http import json_text
from aiservice_functions.event_store.database import Connection, Database, StoreUnavailable
from aiservice_functions.event_store.records import (
    MAX_PAGE,
    EventFilter,
    NewEvent,
    Page,
    RevisionCount,
    ServiceCount,
    StoredEvent,
    now_us,
)

TABLE: Final = "aisvc_events"
LOCK_ID: Final = 7163550010
_COLUMNS: Final = (
    "seq, kind, namespace, name, source, event_id, type, document, error_dest, error_code, "
    "error_data, revision, received_at, last_received_at, receipts, replay_count, "
    "replayed_at, last_replay_status, last_replay_error"
)


def _schema(autoinc: str, blob: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            seq {autoinc},
            kind TEXT NOT NULL,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            event_id TEXT NOT NULL,
            type TEXT NOT NULL,
            document TEXT NOT NULL,
            error_dest TEXT,
            error_code INTEGER,
            error_data {blob},
            revision TEXT,
            received_at BIGINT NOT NULL,
            last_received_at BIGINT NOT NULL,
            receipts INTEGER NOT NULL DEFAULT 1,
            replay_count INTEGER NOT NULL DEFAULT 0,
            replay_failed_seen INTEGER NOT NULL DEFAULT 0,
            replayed_at BIGINT,
            last_replay_status INTEGER,
            last_replay_error TEXT,
            claim TEXT,
            claim_until BIGINT,
            UNIQUE (kind, namespace, name, source, event_id)
        )""",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_svc ON {TABLE} (namespace, name, kind, seq)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (received_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_claim ON {TABLE} (claim)",
    ]


_INSERT: Final = f"""INSERT INTO {TABLE} (kind, namespace, name, source, event_id, type,
    document, error_dest, error_code, error_data, revision, received_at, last_received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (kind, namespace, name, source, event_id) DO NOTHING"""
# A redelivery carrying an ``aisvcreplay`` count at least the record's replay count means a
# replayed event failed again: the record is un-marked as replayed and takes the new error.
_FAILED_AGAIN: Final = "(? > 0 AND ? >= replay_count)"
_REDELIVERED: Final = f"""UPDATE {TABLE} SET
    receipts = receipts + 1,
    last_received_at = ?,
    replay_failed_seen = CASE WHEN ? > replay_failed_seen THEN ? ELSE replay_failed_seen END,
    replayed_at = CASE WHEN {_FAILED_AGAIN} THEN NULL ELSE replayed_at END,
    error_dest = CASE WHEN {_FAILED_AGAIN} THEN ? ELSE error_dest END,
    error_code = CASE WHEN {_FAILED_AGAIN} THEN ? ELSE error_code END,
    error_data = CASE WHEN {_FAILED_AGAIN} THEN ? ELSE error_data END,
    revision = CASE WHEN {_FAILED_AGAIN} THEN ? ELSE revision END
WHERE kind = ? AND namespace = ? AND name = ? AND source = ? AND event_id = ?
RETURNING seq"""


def _key(event: NewEvent) -> tuple[str, str, str, str, str]:
    return (event.kind, event.namespace, event.name, event.source, event.event_id)


def _insert_params(event: NewEvent) -> tuple[Any, ...]:
    return (
        *_key(event),
        event.type,
        json_text(event.document),
        event.error_dest,
        event.error_code,
        event.error_data,
        event.revision,
        event.received_at,
        event.received_at,
    )


def _redelivered_params(event: NewEvent) -> tuple[Any, ...]:
    seen = event.replay_seen
    return (
        event.received_at,
        seen, seen,
        seen, seen,
        seen, seen, event.error_dest,
        seen, seen, event.error_code,
        seen, seen, event.error_data,
        seen, seen, event.revision,
        *_key(event),
    )  # fmt: skip


class EventTable:
    """The events table over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        if db.backend == "sqlite":
            db.create(_schema("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"), LOCK_ID)
        else:
            db.create(_schema("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BYTEA"), LOCK_ID)

    def _run(self, conn: Connection, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute(conn, sql, params)

    # --- ingest ---------------------------------------------------------------------

    def add(self, event: NewEvent) -> tuple[int, bool]:
        """Store ``event`` durably in a transaction of its own; ``(seq, created)`` —
        ``created`` is False for a redelivery (ingest goes through the group writer)."""
        with self.db.transaction() as conn:
            return self.add_all(conn, [event])[0]

    def add_all(self, conn: Connection, events: Sequence[NewEvent]) -> list[tuple[int, bool]]:
        """Write ``events`` in the open transaction (:meth:`Database.write_group`);
        ``(seq, created)`` for each, in order."""
        written = self.db.write_group(
            conn,
            events,
            key=_key,
            insert=(_INSERT, _insert_params),
            redelivered=(_REDELIVERED, _redelivered_params),
        )
        results = []
        for seq, created in written:
            if seq is None:  # deleted by retention between the two statements
                raise StoreUnavailable("record vanished while being updated; retry")
            results.append((seq, created))
        return results

    # --- queries --------------------------------------------------------------------

    @staticmethod
    def _where(flt: EventFilter) -> tuple[str, list[Any]]:
        conds: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("kind", flt.kind),
            ("namespace", flt.namespace),
            ("name", flt.name),
            ("type", flt.type),
            ("error_code", flt.error_code),
            ("revision", flt.revision),
        ):
            if value is not None:
                conds.append(f"{column} = ?")
                params.append(value)
        if flt.since is not None:
            conds.append("received_at >= ?")
            params.append(flt.since)
        if flt.until is not None:
            conds.append("received_at < ?")
            params.append(flt.until)
        if flt.replayed is True:
            conds.append("replayed_at IS NOT NULL")
        elif flt.replayed is False:
            conds.append("replayed_at IS NULL")
        if flt.seqs is not None:
            if not flt.seqs:
                conds.append("1 = 0")
            else:
                conds.append(f"seq IN ({', '.join('?' for _ in flt.seqs)})")
                params.extend(flt.seqs)
        if flt.namespaces is not None:
            if not flt.namespaces:
                conds.append("1 = 0")
            else:
                conds.append(f"namespace IN ({', '.join('?' for _ in flt.namespaces)})")
                params.extend(sorted(flt.namespaces))
        return (" AND ".join(conds) or "1 = 1"), params

    @staticmethod
    def _record(row: Any) -> StoredEvent:
        return StoredEvent(
            seq=int(row["seq"]),
            kind=row["kind"],
            namespace=row["namespace"],
            name=row["name"],
            source=row["source"],
            event_id=row["event_id"],
            type=row["type"],
            document=json.loads(row["document"]),
            error_dest=row["error_dest"],
            error_code=row["error_code"],
            error_data=bytes(row["error_data"]) if row["error_data"] is not None else None,
            revision=row["revision"],
            received_at=int(row["received_at"]),
            last_received_at=int(row["last_received_at"]),
            receipts=int(row["receipts"]),
            replay_count=int(row["replay_count"]),
            replayed_at=_int(row["replayed_at"]),
            last_replay_status=row["last_replay_status"],
            last_replay_error=row["last_replay_error"],
        )

    def page(self, flt: EventFilter, limit: int = 50, cursor: str | None = None) -> Page:
        """Newest first; ``cursor`` is the ``next_cursor`` of the previous page (opaque)."""
        limit = max(1, min(limit, MAX_PAGE))
        where, params = self._where(flt)
        if cursor:
            try:
                before = int(cursor)
            except ValueError:
                raise ValueError(f"cursor {cursor!r:.40} is not one this store issued") from None
            where += " AND seq < ?"
            params.append(before)
        with self.db.transaction(write=False) as conn:
            rows = self._run(
                conn,
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE {where} ORDER BY seq DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        items = [self._record(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, str(items[-1].seq) if more and items else None)

    def get(self, seq: int) -> StoredEvent | None:
        with self.db.transaction(write=False) as conn:
            row = self._run(
                conn, f"SELECT {_COLUMNS} FROM {TABLE} WHERE seq = ?", (seq,)
            ).fetchone()
        return self._record(row) if row is not None else None

    def namespaces(self, flt: EventFilter) -> set[str]:
        """The namespaces of the records ``flt`` selects."""
        where, params = self._where(flt)
        with self.db.transaction(write=False) as conn:
            rows = self._run(
                conn, f"SELECT DISTINCT namespace FROM {TABLE} WHERE {where}", params
            ).fetchall()
        return {r["namespace"] for r in rows}

    def count(self, flt: EventFilter) -> int:
        where, params = self._where(flt)
        with self.db.transaction(write=False) as conn:
            row = self._run(
                conn, f"SELECT COUNT(*) AS n FROM {TABLE} WHERE {where}", params
            ).fetchone()
        return int(row["n"])

    def stats(self, flt: EventFilter) -> tuple[list[ServiceCount], list[RevisionCount]]:
        """Counts per AIService (dead letters, un-replayed, audit) and per revision."""
        where, params = self._where(flt)
        with self.db.transaction(write=False) as conn:
            services = self._run(
                conn,
                f"""SELECT namespace, name,
                    SUM(CASE WHEN kind = 'dead-letter' THEN 1 ELSE 0 END) AS dead_letters,
                    SUM(CASE WHEN kind = 'dead-letter' AND replayed_at IS NULL
                        THEN 1 ELSE 0 END) AS unreplayed,
                    SUM(CASE WHEN kind = 'audit' THEN 1 ELSE 0 END) AS audit,
                    MAX(CASE WHEN kind = 'dead-letter' THEN received_at END) AS last_dead
                FROM {TABLE} WHERE {where}
                GROUP BY namespace, name ORDER BY namespace, name""",
                params,
            ).fetchall()
            revisions = self._run(
                conn,
                f"""SELECT namespace, name, revision, COUNT(*) AS dead_letters,
                    SUM(CASE WHEN replayed_at IS NULL THEN 1 ELSE 0 END) AS unreplayed
                FROM {TABLE} WHERE kind = 'dead-letter' AND {where}
                GROUP BY namespace, name, revision ORDER BY namespace, name, revision""",
                params,
            ).fetchall()
        return (
            [
                ServiceCount(
                    r["namespace"],
                    r["name"],
                    int(r["dead_letters"]),
                    int(r["unreplayed"]),
                    int(r["audit"]),
                    _int(r["last_dead"]),
                )
                for r in services
            ],
            [
                RevisionCount(
                    r["namespace"],
                    r["name"],
                    r["revision"],
                    int(r["dead_letters"]),
                    int(r["unreplayed"]),
                )
                for r in revisions
            ],
        )

    # --- replay bookkeeping ---------------------------------------------------------

    def claim(
        self, flt: EventFilter, force: bool, limit: int, token: str, lease_us: int
    ) -> list[StoredEvent]:
        """Reserve up to ``limit`` dead letters for one replay run, oldest first.

        A record already claimed by a running replay is skipped, so two concurrent
        replays never send the same record; without ``force`` replayed ones are skipped.
        """
        replayed = None if force else False
        base = EventFilter(**{**flt.__dict__, "kind": "dead-letter", "replayed": replayed})
        where, params = self._where(base)
        now = now_us()
        with self.db.transaction() as conn:
            self._run(
                conn,
                f"""UPDATE {TABLE} SET claim = ?, claim_until = ?
                WHERE seq IN (
                    SELECT seq FROM {TABLE}
                    WHERE {where} AND (claim_until IS NULL OR claim_until < ?)
                    ORDER BY seq LIMIT ?)
                AND (claim_until IS NULL OR claim_until < ?)""",
                (token, now + lease_us, *params, now, limit, now),
            )
            rows = self._run(
                conn,
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE claim = ? ORDER BY seq",
                (token,),
            ).fetchall()
        return [self._record(r) for r in rows]

    def finish_replay(
        self,
        seq: int,
        token: str,
        status: int | None,
        error: str | None,
        new_count: int | None,
    ) -> None:
        """Record one replay attempt; ``new_count`` is set only when the target took it."""
        with self.db.transaction() as conn:
            if new_count is not None:
                self._run(
                    conn,
                    f"""UPDATE {TABLE} SET replay_count = ?,
                        replayed_at = CASE WHEN replay_failed_seen >= ? THEN NULL ELSE ? END,
                        last_replay_status = ?, last_replay_error = NULL,
                        claim = NULL, claim_until = NULL
                    WHERE seq = ? AND claim = ?""",
                    (new_count, new_count, now_us(), status, seq, token),
                )
            else:
                self._run(
                    conn,
                    f"""UPDATE {TABLE} SET last_replay_status = ?, last_replay_error = ?,
                        claim = NULL, claim_until = NULL
                    WHERE seq = ? AND claim = ?""",
                    (status, error, seq, token),
                )

    def release_claims(self, token: str, seqs: Sequence[int]) -> None:
        """Give back records a replay claimed but did not send (it was cancelled)."""
        with self.db.transaction() as conn:
            for seq in seqs:
                self._run(
                    conn,
                    f"UPDATE {TABLE} SET claim = NULL, claim_until = NULL "
                    "WHERE seq = ? AND claim = ?",
                    (seq, token),
                )

    # --- retention ------------------------------------------------------------------

    def delete_older_than(self, cutoff_us: int, batch: int) -> int:
        """Delete at most ``batch`` records first received before ``cutoff_us``."""
        with self.db.transaction() as conn:
            cur = self._run(
                conn,
                f"""DELETE FROM {TABLE} WHERE seq IN (
                    SELECT seq FROM {TABLE} WHERE received_at < ? ORDER BY seq LIMIT ?)""",
                (cutoff_us, batch),
            )
            return max(cur.rowcount, 0)

    def over_count(self, max_count: int) -> list[tuple[str, str, str]]:
        """(namespace, name, kind) groups holding more than ``max_count`` records."""
        with self.db.transaction(write=False) as conn:
            rows = self._run(
                conn,
                f"""SELECT namespace, name, kind FROM {TABLE}
                GROUP BY namespace, name, kind HAVING COUNT(*) > ?""",
                (max_count,),
            ).fetchall()
        return [(r["namespace"], r["name"], r["kind"]) for r in rows]

    def delete_beyond_count(
        self, namespace: str, name: str, kind: str, keep: int, batch: int
    ) -> int:
        """Delete up to ``batch`` of one group's oldest records beyond its newest ``keep``."""
        with self.db.transaction() as conn:
            row = self._run(
                conn,
                f"""SELECT seq FROM {TABLE} WHERE namespace = ? AND name = ? AND kind = ?
                ORDER BY seq DESC LIMIT 1 OFFSET ?""",
                (namespace, name, kind, keep),
            ).fetchone()
            if row is None:
                return 0
            cur = self._run(
                conn,
                f"""DELETE FROM {TABLE} WHERE seq IN (
                    SELECT seq FROM {TABLE} WHERE namespace = ? AND name = ? AND kind = ?
                    AND seq <= ? ORDER BY seq LIMIT ?)""",
                (namespace, name, kind, int(row["seq"]), batch),
            )
            return max(cur.rowcount, 0)


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None
