"""The event store's database connection: SQLite (default) or PostgreSQL, one API.

Both backends run the same statements (portable SQL: ``INSERT .. ON CONFLICT``,
``RETURNING``, ``CASE``); only the connection, the placeholder style and two column types
differ, and rows are read by column name on both. Every write is a short transaction
committed before the caller answers, so an acknowledged record survives a crash:

- SQLite runs in WAL mode with ``synchronous=FULL`` (a commit is fsync'ed) and
  ``busy_timeout``, one connection per thread; writers take ``BEGIN IMMEDIATE``.
- PostgreSQL uses psycopg 3, one connection per thread, default ``synchronous_commit``;
  a group of writes goes out as one pipeline (:meth:`Database.run_many`).

The tables (:mod:`.storage`, :mod:`.job_table`, :mod:`.decisions`) hold the SQL; this
module holds the connections, the transactions and the error that means "retry later".
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

R = TypeVar("R")


class StoreUnavailable(Exception):
    """The database could not be reached or refused the operation; worth retrying."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...

    def close(self) -> None: ...


class Database:
    """Connections (one per thread) and transactions over one database URL."""

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
        self._all: list[tuple[threading.Thread, Connection]] = []
        self._all_lock = threading.Lock()

    # --- connections ----------------------------------------------------------------

    def _connect(self) -> Connection:
        if self.backend == "sqlite":
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            return cast(Connection, conn)
        import psycopg
        from psycopg.rows import dict_row

        try:
            pg = psycopg.connect(
                self.url, autocommit=True, connect_timeout=10, row_factory=dict_row
            )
        except psycopg.Error as err:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {type(err).__name__}") from err
        return cast(Connection, pg)

    @property
    def open_connections(self) -> int:
        with self._all_lock:
            return len(self._all)

    def _conn(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
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
    def transaction(self, write: bool = True) -> Iterator[Connection]:
        """One transaction on this thread's connection; committed on exit (durably),
        rolled back on error. Connection failures become :class:`StoreUnavailable`."""
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

    def _rollback(self, conn: Connection) -> None:
        with suppress(Exception):  # nothing to roll back, or the connection is gone
            conn.execute("ROLLBACK")

    def execute(self, conn: Connection, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run ``sql`` with ``?`` placeholders on either backend."""
        return conn.execute(self._sql(sql), tuple(params))

    def run_many(
        self, conn: Connection, sql: str, rows: Sequence[Sequence[Any]]
    ) -> list[dict[str, Any] | None]:
        """Run one statement per parameter row in the open transaction; the first result
        row of each (``RETURNING``), in order. PostgreSQL sends them as one pipeline (one
        round trip for the group); SQLite runs in-process, where a statement costs
        microseconds."""
        if self.backend == "postgresql" and len(rows) > 1:
            sql = self._sql(sql)
            pg = cast(Any, conn)
            with pg.pipeline():
                cursors = [pg.execute(sql, tuple(params)) for params in rows]
            return [_first(c) for c in cursors]
        return [_first(self.execute(conn, sql, params)) for params in rows]

    def insert_many(
        self, conn: Connection, sql: str, rows: Sequence[Sequence[Any]]
    ) -> list[int | None]:
        """Run ``sql`` (an ``INSERT .. ON CONFLICT DO NOTHING`` into a table whose key is
        ``seq``) once per row; the new row's ``seq``, or None where it conflicted.
        PostgreSQL reads it from ``RETURNING`` in one pipeline; SQLite from the cursor
        (``RETURNING`` tripled the cost of an insert into the decision log's indexed table
        there: 78 against 29 µs of CPU a row, measured in groups of 200)."""
        if self.backend == "postgresql":
            returned = self.run_many(conn, f"{sql} RETURNING seq", rows)
            return [None if r is None else int(r["seq"]) for r in returned]
        out: list[int | None] = []
        for params in rows:
            cursor = cast(sqlite3.Cursor, self.execute(conn, sql, params))
            out.append(int(cursor.lastrowid or 0) if cursor.rowcount == 1 else None)
        return out

    def write_group(
        self,
        conn: Connection,
        records: Sequence[R],
        *,
        key: Callable[[R], tuple[str, ...]],
        insert: tuple[str, Callable[[R], Sequence[Any]]],
        redelivered: tuple[str, Callable[[R], Sequence[Any]]],
    ) -> list[tuple[int | None, bool]]:
        """Write a group of records in the open transaction: each is inserted (``insert``:
        an ``INSERT .. ON CONFLICT DO NOTHING`` and its parameters) or, when its key is
        taken, counted as a redelivery (``redelivered``: an ``UPDATE .. RETURNING seq``).
        ``(seq, created)`` for each, in order; seq is None for a redelivery whose record
        vanished meanwhile (deleted by retention). Inserts run in key order, so two store
        processes writing overlapping groups lock rows in the same order and cannot
        deadlock; a record twice in the group is created once and redelivered once."""
        order = sorted(range(len(records)), key=lambda i: key(records[i]))
        insert_sql, insert_params = insert
        inserted = self.insert_many(conn, insert_sql, [insert_params(records[i]) for i in order])
        results: list[tuple[int | None, bool]] = [(None, False)] * len(records)
        again = []
        for i, seq in zip(order, inserted, strict=True):
            if seq is not None:
                results[i] = (seq, True)
            else:
                again.append(i)
        if again:
            update_sql, update_params = redelivered
            updated = self.run_many(conn, update_sql, [update_params(records[i]) for i in again])
            for i, row in zip(again, updated, strict=True):
                results[i] = (int(row["seq"]) if row is not None else None, False)
        return results

    def create(self, statements: Sequence[str], lock_id: int) -> None:
        """Create tables and indexes if missing; on PostgreSQL under an advisory lock, as
        several store processes may start at once and ``CREATE .. IF NOT EXISTS`` races."""
        with self.transaction() as conn:
            if self.backend == "postgresql":
                conn.execute(f"SELECT pg_advisory_xact_lock({int(lock_id)})")
            for statement in statements:
                conn.execute(statement)

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        with self.transaction(write=False) as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for _, conn in conns:
            with suppress(Exception):  # closing at shutdown, best effort
                conn.close()
        self._local = threading.local()


def _first(cursor: Cursor) -> dict[str, Any] | None:
    row = cursor.fetchone()
    return None if row is None else dict(row)
