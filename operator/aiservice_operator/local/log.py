"""The broker's durable event log (SQLite, WAL).

Every event the broker accepts is committed here before the sender gets its 202, and
every delivery outcome (with the reply it produced) is committed in one transaction, so
a broker killed at any moment restarts with exactly the deliveries still owed.

Durability: WAL with ``synchronous=FULL``: a commit is fsynced before it is
acknowledged, so an accepted event survives a power cut, not only a process crash.
The fsync is paid once per *group* of commits: one writer thread takes every write
queued while the previous commit ran and commits them together (group commit), so its
cost is shared by all concurrent senders.

Duplicates: an event from outside is identified by (broker, source, id, replay count),
as CloudEvents defines identity; a reply by the delivery that caused it. Sending the
same event twice, or a redelivery after a crash producing a second reply, therefore
logs one event, not two.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  broker TEXT NOT NULL,
  source TEXT NOT NULL,
  id TEXT NOT NULL,
  replay TEXT NOT NULL DEFAULT '',
  cause TEXT UNIQUE,
  event TEXT NOT NULL,
  accepted_at REAL NOT NULL,
  done INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS events_identity
  ON events (broker, source, id, replay) WHERE cause IS NULL;
CREATE INDEX IF NOT EXISTS events_pending ON events (done) WHERE done = 0;
CREATE TABLE IF NOT EXISTS deliveries (
  seq INTEGER NOT NULL,
  trigger TEXT NOT NULL,
  outcome TEXT NOT NULL,
  status INTEGER,
  attempts INTEGER NOT NULL,
  at REAL NOT NULL,
  PRIMARY KEY (seq, trigger)
);
"""

PROBES = (
    "SELECT seq, broker, source, id, replay, cause, event, accepted_at, done FROM events LIMIT 0",
    "SELECT seq, trigger, outcome, status, attempts, at FROM deliveries LIMIT 0",
)
"""Reads that fail on a log written by something else (the columns this version uses)."""


class BrokerLogError(ValueError):
    """The broker log file cannot be used: not SQLite, or not a broker log."""


OUTCOMES = ("delivered", "dead-lettered", "dead-letter-failed", "dropped", "filtered")


@dataclass(frozen=True)
class Pending:
    """An accepted event with deliveries still owed after a restart."""

    seq: int
    broker: str
    event: dict[str, Any]
    settled: frozenset[str]
    """Triggers whose delivery already has an outcome."""


@dataclass(frozen=True)
class Record:
    """An event as logged: its identity and its structured-mode JSON text."""

    source: str
    id: str
    text: str
    replay: str = ""


@dataclass(frozen=True)
class Reply:
    broker: str
    record: Record
    done: bool = False
    """No Trigger matches the reply: it is logged with no delivery owed."""


_Op = Callable[[sqlite3.Connection], Any]
MAX_GROUP = 512
"""Writes committed together at most: bounds how long one group holds the writer."""
BUSY_TIMEOUT_S = 30.0
"""How long a write waits for another connection's lock on the file (e.g. a sqlite3 shell)."""


class LogUnavailable(Exception):
    """The log could not commit (disk full, file locked too long): nothing was accepted."""


class EventLog:
    """Append-only event log with outcomes; writes go through one group-committing thread."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
        )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(SCHEMA)
            for probe in PROBES:
                self._db.execute(probe)
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise BrokerLogError(
                f"{path} is not a broker log this version can read ({err}); move it away to "
                "start with an empty log (the events it holds are then not delivered)"
            ) from None
        self._queue: queue.SimpleQueue[tuple[_Op, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.submitted = 0
        """Writes handed to the writer so far (committed or still waiting)."""
        self.groups = 0
        """Transactions committed (each one fsync with ``synchronous=FULL``)."""
        self.writes = 0
        """Writes committed in them: ``writes / groups`` is the mean group size."""
        self.largest_group = 0

    # --- reads at start-up (before the writer runs) ---------------------------------

    def pending(self) -> list[Pending]:
        """Accepted events not yet fully delivered, oldest first."""
        rows = self._db.execute(
            "SELECT seq, broker, event FROM events WHERE done = 0 ORDER BY seq"
        ).fetchall()
        settled: dict[int, set[str]] = {}
        for seq, trigger in self._db.execute(
            "SELECT d.seq, d.trigger FROM deliveries d JOIN events e ON e.seq = d.seq "
            "WHERE e.done = 0"
        ):
            settled.setdefault(seq, set()).add(trigger)
        return [
            Pending(seq, broker, json.loads(event), frozenset(settled.get(seq, ())))
            for seq, broker, event in rows
        ]

    def counts(self) -> dict[str, int]:
        """Totals so far: events accepted and deliveries per outcome."""
        out = {"accepted": self._db.execute("SELECT count(*) FROM events").fetchone()[0]}
        for outcome, n in self._db.execute(
            "SELECT outcome, count(*) FROM deliveries GROUP BY outcome"
        ):
            out[outcome] = n
        return out

    # --- the writer -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._write_loop, name="event-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
        self._db.close()

    def _write_loop(self) -> None:
        assert self._loop is not None
        loop = self._loop
        stop = False
        while not stop:
            item = self._queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                if len(batch) >= MAX_GROUP:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            else:
                stop = True
            if not batch:
                continue
            try:
                results = self._commit_group(batch)
            except sqlite3.Error as err:  # the transaction itself failed: none of it is kept
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                failed: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = [
                    (future, None, LogUnavailable(f"broker log: {err}")) for _, future in batch
                ]
                loop.call_soon_threadsafe(_settle_all, failed)
                continue
            self.groups += 1
            self.writes += len(batch)
            self.largest_group = max(self.largest_group, len(batch))
            # One wake-up of the event loop per group, not per write.
            loop.call_soon_threadsafe(_settle_all, results)

    def _commit_group(
        self, batch: list[tuple[_Op, asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """Run every write of the group in one transaction and commit once.

        Fast path: the writes run back to back. Should one raise, the whole group is
        rolled back and run again with a savepoint per write, so a bad write fails only
        its own sender and the others still commit, each all or nothing.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            values = [op(self._db) for op, _ in batch]
        except Exception:
            self._db.execute("ROLLBACK")
        else:
            self._db.execute("COMMIT")
            return [(future, value, None) for (_, future), value in zip(batch, values, strict=True)]
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._db.execute("BEGIN IMMEDIATE")
        for op, future in batch:
            self._db.execute("SAVEPOINT op")
            try:
                results.append((future, op(self._db), None))
                self._db.execute("RELEASE op")
            except Exception as err:  # one bad write must not fail the whole group
                self._db.execute("ROLLBACK TO op")
                self._db.execute("RELEASE op")
                results.append((future, None, err))
        self._db.execute("COMMIT")
        return results

    async def _run(self, op: _Op) -> Any:
        assert self._loop is not None, "EventLog.start() was not called"
        future: asyncio.Future[Any] = self._loop.create_future()
        self.submitted += 1
        self._queue.put((op, future))
        return await future

    # --- writes -----------------------------------------------------------------------

    async def append(
        self, broker: str, record: Record, *, cause: str | None = None, done: bool = False
    ) -> int | None:
        """Log an event durably; its sequence number, or None if it was logged before.

        ``done``: no Trigger matches it, so no delivery is owed (it is still logged).
        """
        now = time.time()
        row = (broker, record.source, record.id, record.replay, cause, record.text, now, int(done))

        def op(db: sqlite3.Connection) -> int | None:
            cursor = db.execute(
                "INSERT OR IGNORE INTO events (broker, source, id, replay, cause, event, "
                "accepted_at, done) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return cursor.lastrowid if cursor.rowcount else None

        result: int | None = await self._run(op)
        return result

    async def settle(
        self,
        seq: int,
        trigger: str,
        outcome: str,
        *,
        status: int | None = None,
        attempts: int = 0,
        reply: Reply | None = None,
        finish: bool = False,
    ) -> int | None:
        """Record one delivery's outcome and its reply together; the reply's seq if logged.

        ``finish``: this was the event's last owed delivery (see `finish`).
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        now = time.time()

        def op(db: sqlite3.Connection) -> int | None:
            db.execute(
                "INSERT OR REPLACE INTO deliveries (seq, trigger, outcome, status, attempts, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (seq, trigger, outcome, status, attempts, now),
            )
            if finish:
                db.execute("UPDATE events SET done = 1 WHERE seq = ?", (seq,))
            if reply is None:
                return None
            cursor = db.execute(
                "INSERT OR IGNORE INTO events (broker, source, id, replay, cause, event, "
                "accepted_at, done) VALUES (?, ?, ?, '', ?, ?, ?, ?)",
                (
                    reply.broker,
                    reply.record.source,
                    reply.record.id,
                    f"{seq}:{trigger}",
                    reply.record.text,
                    now,
                    int(reply.done),
                ),
            )
            return cursor.lastrowid if cursor.rowcount else None

        result: int | None = await self._run(op)
        return result

    async def finish(self, seq: int) -> None:
        """Mark an event as owing no more deliveries."""

        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE events SET done = 1 WHERE seq = ?", (seq,))

        await self._run(op)


def _settle_all(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
