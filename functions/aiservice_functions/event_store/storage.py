"""Durable storage of events: one SQL schema, on SQLite (default) or PostgreSQL.

Both backends run the same statements (portable SQL: ``INSERT .. ON CONFLICT``,
``RETURNING``, ``CASE``); only the connection, the placeholder style and two column types
differ. Every write is one short transaction that is committed before the caller
answers, so an acknowledged event survives a crash of the store process:

- SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is fsync'ed) and
  ``busy_timeout``, one connection per thread; writers take ``BEGIN IMMEDIATE``.
- PostgreSQL uses psycopg 3, one connection per thread, default ``synchronous_commit``.

De-duplication is a unique key on (kind, namespace, AIService, source, id): a redelivered
event is stored once; its ``receipts`` counter says how often it came.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final, Protocol, cast
from urllib.parse import urlsplit

from aiservice_functions.cloudevents_http import json_text
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
JOBS: Final = "aisvc_replay_jobs"
_JOB_COLUMNS: Final = (
    "id, state, request, selected, replayed, failed, cancelled, cancel_requested, error, "
    "results, created_at, updated_at, finished_at"
)

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
        f"""CREATE TABLE IF NOT EXISTS {JOBS} (
            id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            request TEXT NOT NULL,
            selected INTEGER NOT NULL DEFAULT 0,
            replayed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            cancelled INTEGER NOT NULL DEFAULT 0,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            results TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            finished_at BIGINT
        )""",
        f"CREATE INDEX IF NOT EXISTS {JOBS}_created ON {JOBS} (created_at)",
    ]


class StoreUnavailable(Exception):
    """The database could not be reached or refused the operation; worth retrying."""


class _Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class _Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> _Cursor: ...

    def close(self) -> None: ...


class SqlStore:
    """The event store's database. Thread-safe: each thread gets its own connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            self.backend = "sqlite"
            path = url[len("sqlite://") :] if url.startswith("sqlite://") else url[7:]
            if not path or path in ("/", "/:memory:", ":memory:"):
                raise ValueError("sqlite URL needs a file path: sqlite:///var/lib/store.db")
            self._path = Path(path)
        elif parts.scheme in ("postgresql", "postgres"):
            self.backend = "postgresql"
            self._path = Path()
        else:
            raise ValueError(
                f"database URL scheme {parts.scheme!r} is not supported: "
                "use sqlite:///path or postgresql://..."
            )
        self._local = threading.local()
        # Every open connection and the thread it belongs to; those of finished threads
        # are closed when the next one opens (servers that start a thread per request).
        self._all: list[tuple[threading.Thread, _Connection]] = []
        self._all_lock = threading.Lock()
        self._migrate()

    # --- connections ----------------------------------------------------------------

    def _connect(self) -> _Connection:
        if self.backend == "sqlite":
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            return cast(_Connection, conn)
        import psycopg

        try:
            pg = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as err:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {type(err).__name__}") from err
        return cast(_Connection, pg)

    @property
    def open_connections(self) -> int:
        with self._all_lock:
            return len(self._all)

    def _conn(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._all_lock:
                stale = [c for t, c in self._all if not t.is_alive()]
                self._all = [(t, c) for t, c in self._all if t.is_alive()]
                self._all.append((threading.current_thread(), conn))
            for old in stale:
                with suppress(Exception):
                    old.close()
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._all_lock:
                self._all = [(t, c) for t, c in self._all if c is not conn]
            with suppress(Exception):  # a broken connection may fail to close
                conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.backend == "postgresql" else sql

    def _errors(self) -> tuple[type[BaseException], ...]:
        if self.backend == "postgresql":
            import psycopg

            return (psycopg.OperationalError, psycopg.InterfaceError)
        return (sqlite3.OperationalError,)

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[_Connection]:
        """One transaction; committed on exit (durably), rolled back on error."""
        begin = "BEGIN IMMEDIATE" if self.backend == "sqlite" and write else "BEGIN"
        for attempt in (1, 2):
            # A pooled thread's connection may have died with a database restart; nothing
            # has been done yet, so one fresh connection is a safe retry.
            try:
                conn = self._conn()
                conn.execute(begin)
                break
            except self._errors() as err:
                self._drop()
                if attempt == 2:
                    raise StoreUnavailable(f"database unavailable: {type(err).__name__}") from err
        try:
            yield conn
            conn.execute("COMMIT")
        except self._errors() as err:
            self._rollback(conn)
            self._drop()
            raise StoreUnavailable(f"database unavailable: {type(err).__name__}") from err
        except BaseException:
            self._rollback(conn)
            raise

    def _rollback(self, conn: _Connection) -> None:
        with suppress(Exception):  # nothing to roll back, or the connection is gone
            conn.execute("ROLLBACK")

    def _run(self, conn: _Connection, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        return conn.execute(self._sql(sql), tuple(params))

    def _migrate(self) -> None:
        if self.backend == "sqlite":
            statements = _schema("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB")
        else:
            statements = _schema("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BYTEA")
        with self._tx() as conn:
            if self.backend == "postgresql":
                # Several workers may start at once; CREATE .. IF NOT EXISTS races in PG.
                conn.execute("SELECT pg_advisory_xact_lock(7163550010)")
            for statement in statements:
                conn.execute(statement)

    # --- for the store's other tables (the decision log, :mod:`.decisions`) ------------

    def transaction(self, write: bool = True) -> contextlib.AbstractContextManager[_Connection]:
        """One transaction on this thread's connection, as the dead-letter writes use."""
        return self._tx(write)

    def execute(self, conn: _Connection, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        """Run ``sql`` with ``?`` placeholders on either backend."""
        return self._run(conn, sql, params)

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        with self._tx(write=False) as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for _, conn in conns:
            with suppress(Exception):  # closing at shutdown, best effort
                conn.close()
        self._local = threading.local()

    # --- ingest ---------------------------------------------------------------------

    def add(self, event: NewEvent) -> tuple[int, bool]:
        """Store ``event`` durably; ``(seq, created)`` — ``created`` is False for a redelivery.

        A redelivery that carries an ``aisvcreplay`` count at least the record's replay
        count means a replayed event failed again: the record is un-marked as replayed
        and takes the new error details.
        """
        key = (event.kind, event.namespace, event.name, event.source, event.event_id)
        document = json_text(event.document)
        with self._tx() as conn:
            row = self._run(
                conn,
                f"""INSERT INTO {TABLE} (kind, namespace, name, source, event_id, type,
                    document, error_dest, error_code, error_data, revision, received_at,
                    last_received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (kind, namespace, name, source, event_id) DO NOTHING
                RETURNING seq""",
                (
                    *key,
                    event.type,
                    document,
                    event.error_dest,
                    event.error_code,
                    event.error_data,
                    event.revision,
                    event.received_at,
                    event.received_at,
                ),
            ).fetchone()
            if row is not None:
                return int(row[0]), True
            failed_again = "(? > 0 AND ? >= replay_count)"
            row = self._run(
                conn,
                f"""UPDATE {TABLE} SET
                    receipts = receipts + 1,
                    last_received_at = ?,
                    replay_failed_seen = CASE WHEN ? > replay_failed_seen THEN ?
                        ELSE replay_failed_seen END,
                    replayed_at = CASE WHEN {failed_again} THEN NULL ELSE replayed_at END,
                    error_dest = CASE WHEN {failed_again} THEN ? ELSE error_dest END,
                    error_code = CASE WHEN {failed_again} THEN ? ELSE error_code END,
                    error_data = CASE WHEN {failed_again} THEN ? ELSE error_data END,
                    revision = CASE WHEN {failed_again} THEN ? ELSE revision END
                WHERE kind = ? AND namespace = ? AND name = ? AND source = ? AND event_id = ?
                RETURNING seq""",
                (
                    event.received_at,
                    event.replay_seen,
                    event.replay_seen,
                    event.replay_seen,
                    event.replay_seen,
                    event.replay_seen,
                    event.replay_seen,
                    event.error_dest,
                    event.replay_seen,
                    event.replay_seen,
                    event.error_code,
                    event.replay_seen,
                    event.replay_seen,
                    event.error_data,
                    event.replay_seen,
                    event.replay_seen,
                    event.revision,
                    *key,
                ),
            ).fetchone()
            if row is None:  # deleted by retention between the two statements
                raise StoreUnavailable("record vanished while being updated; retry")
            return int(row[0]), False

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
        return (" AND ".join(conds) or "1 = 1"), params

    @staticmethod
    def _record(row: Sequence[Any]) -> StoredEvent:
        return StoredEvent(
            seq=int(row[0]),
            kind=row[1],
            namespace=row[2],
            name=row[3],
            source=row[4],
            event_id=row[5],
            type=row[6],
            document=json.loads(row[7]),
            error_dest=row[8],
            error_code=row[9],
            error_data=bytes(row[10]) if row[10] is not None else None,
            revision=row[11],
            received_at=int(row[12]),
            last_received_at=int(row[13]),
            receipts=int(row[14]),
            replay_count=int(row[15]),
            replayed_at=int(row[16]) if row[16] is not None else None,
            last_replay_status=row[17],
            last_replay_error=row[18],
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
        with self._tx(write=False) as conn:
            rows = self._run(
                conn,
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE {where} ORDER BY seq DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        items = [self._record(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, str(items[-1].seq) if more and items else None)

    def get(self, seq: int) -> StoredEvent | None:
        with self._tx(write=False) as conn:
            row = self._run(
                conn, f"SELECT {_COLUMNS} FROM {TABLE} WHERE seq = ?", (seq,)
            ).fetchone()
        return self._record(row) if row is not None else None

    def count(self, flt: EventFilter) -> int:
        where, params = self._where(flt)
        with self._tx(write=False) as conn:
            row = self._run(conn, f"SELECT COUNT(*) FROM {TABLE} WHERE {where}", params).fetchone()
        return int(row[0])

    def stats(self, flt: EventFilter) -> tuple[list[ServiceCount], list[RevisionCount]]:
        """Counts per AIService (dead letters, un-replayed, audit) and per revision."""
        where, params = self._where(flt)
        with self._tx(write=False) as conn:
            services = self._run(
                conn,
                f"""SELECT namespace, name,
                    SUM(CASE WHEN kind = 'dead-letter' THEN 1 ELSE 0 END),
                    SUM(CASE WHEN kind = 'dead-letter' AND replayed_at IS NULL
                        THEN 1 ELSE 0 END),
                    SUM(CASE WHEN kind = 'audit' THEN 1 ELSE 0 END),
                    MAX(CASE WHEN kind = 'dead-letter' THEN received_at END)
                FROM {TABLE} WHERE {where}
                GROUP BY namespace, name ORDER BY namespace, name""",
                params,
            ).fetchall()
            revisions = self._run(
                conn,
                f"""SELECT namespace, name, revision, COUNT(*),
                    SUM(CASE WHEN replayed_at IS NULL THEN 1 ELSE 0 END)
                FROM {TABLE} WHERE kind = 'dead-letter' AND {where}
                GROUP BY namespace, name, revision ORDER BY namespace, name, revision""",
                params,
            ).fetchall()
        return (
            [
                ServiceCount(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), _int(r[5]))
                for r in services
            ],
            [RevisionCount(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in revisions],
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
        with self._tx() as conn:
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
        with self._tx() as conn:
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
        with self._tx() as conn:
            for seq in seqs:
                self._run(
                    conn,
                    f"UPDATE {TABLE} SET claim = NULL, claim_until = NULL "
                    "WHERE seq = ? AND claim = ?",
                    (seq, token),
                )

    # --- replay jobs ----------------------------------------------------------------

    def create_job(self, job_id: str, request: str) -> None:
        now = now_us()
        with self._tx() as conn:
            self._run(
                conn,
                f"INSERT INTO {JOBS} (id, state, request, created_at, updated_at) "
                "VALUES (?, 'running', ?, ?, ?)",
                (job_id, request, now, now),
            )

    def update_job(
        self,
        job_id: str,
        *,
        selected: int,
        replayed: int,
        failed: int,
        state: str | None = None,
        cancelled: int = 0,
        error: str | None = None,
        results: str | None = None,
    ) -> bool:
        """Record a job's progress (a heartbeat too); True when a cancel was requested."""
        now = now_us()
        finished = now if state is not None and state != "running" else None
        with self._tx() as conn:
            self._run(
                conn,
                f"""UPDATE {JOBS} SET selected = ?, replayed = ?, failed = ?, cancelled = ?,
                    state = COALESCE(?, state), error = COALESCE(?, error),
                    results = COALESCE(?, results), updated_at = ?,
                    finished_at = COALESCE(?, finished_at)
                WHERE id = ?""",
                (
                    selected,
                    replayed,
                    failed,
                    cancelled,
                    state,
                    error,
                    results,
                    now,
                    finished,
                    job_id,
                ),
            )
            row = self._run(
                conn, f"SELECT cancel_requested FROM {JOBS} WHERE id = ?", (job_id,)
            ).fetchone()
        return bool(row and row[0])

    def request_cancel(self, job_id: str) -> bool:
        """Ask a running job to stop; False when there is no such job."""
        with self._tx() as conn:
            cur = self._run(conn, f"UPDATE {JOBS} SET cancel_requested = 1 WHERE id = ?", (job_id,))
            return cur.rowcount > 0

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self._tx(write=False) as conn:
            row = self._run(
                conn, f"SELECT {_JOB_COLUMNS} FROM {JOBS} WHERE id = ?", (job_id,)
            ).fetchone()
        return _job(row) if row else None

    def list_jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._tx(write=False) as conn:
            rows = self._run(
                conn,
                f"SELECT {_JOB_COLUMNS} FROM {JOBS} ORDER BY created_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_job(r) for r in rows]

    # --- retention ------------------------------------------------------------------

    def delete_older_than(self, cutoff_us: int, batch: int) -> int:
        """Delete at most ``batch`` records first received before ``cutoff_us``."""
        with self._tx() as conn:
            cur = self._run(
                conn,
                f"""DELETE FROM {TABLE} WHERE seq IN (
                    SELECT seq FROM {TABLE} WHERE received_at < ? ORDER BY seq LIMIT ?)""",
                (cutoff_us, batch),
            )
            return max(cur.rowcount, 0)

    def over_count(self, max_count: int) -> list[tuple[str, str, str]]:
        """(namespace, name, kind) groups holding more than ``max_count`` records."""
        with self._tx(write=False) as conn:
            rows = self._run(
                conn,
                f"""SELECT namespace, name, kind FROM {TABLE}
                GROUP BY namespace, name, kind HAVING COUNT(*) > ?""",
                (max_count,),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def delete_beyond_count(
        self, namespace: str, name: str, kind: str, keep: int, batch: int
    ) -> int:
        """Delete up to ``batch`` of one group's oldest records beyond its newest ``keep``."""
        with self._tx() as conn:
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
                (namespace, name, kind, int(row[0]), batch),
            )
            return max(cur.rowcount, 0)


def _job(row: Sequence[Any]) -> dict[str, Any]:
    keys = [c.strip() for c in _JOB_COLUMNS.split(",")]
    return dict(zip(keys, row, strict=True))


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def open_store(url: str) -> SqlStore:
    """Open (and create the schema of) the store at ``sqlite:///path`` or ``postgresql://``."""
    return SqlStore(url)
