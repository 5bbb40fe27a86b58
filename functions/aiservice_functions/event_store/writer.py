"""Group commit: every ingest request is committed before it is answered, but the
requests that arrive while one commit runs share the next transaction.

One writer thread owns the writes of ingest. A request submits its record and waits on a
future; the writer takes everything queued (at most ``max_group``), writes it in one
transaction through each table's ``add_all`` (the same per-record statements as a single
write, so idempotency, receipts and replay bookkeeping keep their exact meaning), commits
once — one fsync on SQLite, one round trip of a pipeline on PostgreSQL — and resolves each
future with its own outcome. Latency grows by at most one commit; throughput grows with
concurrency, since the commit's cost is shared by the whole group.

One bad record never fails its neighbours: when a group's transaction fails for a reason
other than an unreachable database, the writer rolls it back and writes each record of
the group in a transaction of its own, so only the culprit's request gets its error.

The queue is bounded: past ``max_pending`` waiting records :meth:`GroupWriter.submit`
raises :class:`Overloaded`, which ingest answers ``429`` with ``Retry-After`` (Knative's
delivery retries it) instead of letting requests pile up until they time out.

Hand-written rather than taken from a library: the pattern is thirty lines around a
condition variable, and its semantics (outcome per record, fallback per record, bound)
are the point.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aiservice_functions.event_store.database import Connection, Database, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_MAX_GROUP: Final = 500
"""Records per transaction at most: big enough to amortise a commit, small enough that
one group's statements never hold the database for long."""
DEFAULT_MAX_PENDING: Final = 5000
"""Records waiting for the writer at most; past this ingest answers 429."""


class Overloaded(Exception):
    """The writer's queue is full: the database is not keeping up. Retry later."""


class RecordRefused(Exception):
    """The database refused this one record (not the connection): a client error."""


class GroupTable(Protocol):
    """A table that can add several records in an open transaction."""

    def add_all(self, conn: Connection, records: Sequence[Any]) -> list[tuple[int, bool]]:
        """Write ``records`` in order; ``(seq, created)`` for each."""
        ...


@dataclass
class _Pending:
    table: GroupTable
    record: Any
    future: Future[tuple[int, bool]]
    queued_at: float = field(default_factory=time.perf_counter)


GroupObserver = Callable[[int, float, Sequence[float]], None]
"""Called after each commit: (records, commit seconds, each record's wait in seconds)."""


class GroupWriter:
    """The writer thread of one store process, over one :class:`Database`."""

    def __init__(
        self,
        db: Database,
        *,
        max_group: int = DEFAULT_MAX_GROUP,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_group: GroupObserver | None = None,
    ) -> None:
        self.db = db
        self.max_group = max(1, max_group)
        self.max_pending = max(1, max_pending)
        self._on_group = on_group
        self._queue: deque[_Pending] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._writing = 0
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Records waiting for the writer now."""
        return len(self._queue)

    @property
    def writing(self) -> int:
        """Records the writer has taken and not yet answered (its current group)."""
        return self._writing

    def start(self) -> GroupWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="group-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, table: GroupTable, record: Any) -> Future[tuple[int, bool]]:
        """Queue ``record`` for ``table``; the future gives ``(seq, created)`` once committed,
        or raises :class:`StoreUnavailable` / :class:`RecordRefused`."""
        future: Future[tuple[int, bool]] = Future()
        with self._ready:
            if self._stopping:
                raise StoreUnavailable("the store is shutting down")
            if len(self._queue) >= self.max_pending:
                raise Overloaded(f"{len(self._queue)} records waiting for the database")
            self._queue.append(_Pending(table, record, future))
            self._ready.notify()
        if self._thread is None:
            self.start()
        return future

    def add(self, table: GroupTable, record: Any, timeout: float | None = None) -> tuple[int, bool]:
        """Submit and wait: for callers on a thread of their own (the WSGI app)."""
        return self.submit(table, record).result(timeout)

    # --- the writer thread ----------------------------------------------------------

    def _take(self) -> list[_Pending]:
        with self._ready:
            while not self._queue and not self._stopping:
                self._ready.wait()
            count = min(len(self._queue), self.max_group)
            self._writing = count
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            group = self._take()
            if not group:
                return  # stopping, and nothing left
            started = time.perf_counter()
            try:
                outcomes = self._write(group)
            except BaseException as err:  # never let the thread die with requests waiting
                log.exception("group writer failed")
                outcomes = [StoreUnavailable(f"writer failed: {err!r:.200}")] * len(group)
            if self._on_group is not None:  # observed before anyone is answered
                done = time.perf_counter()
                self._on_group(len(group), done - started, [done - p.queued_at for p in group])
            for p, outcome in zip(group, outcomes, strict=True):
                _resolve(p.future, outcome)
            self._writing = 0

    def _write(self, group: list[_Pending]) -> list[tuple[int, bool] | BaseException]:
        """Each record's outcome: ``(seq, created)`` or the error for its request."""
        try:
            return list(self._transaction(group))
        except StoreUnavailable as err:
            return [err] * len(group)
        except Exception:
            # Find the culprit: each record in a transaction of its own.
            return [self._write_alone(p) for p in group]

    def _write_alone(self, p: _Pending) -> tuple[int, bool] | BaseException:
        try:
            (result,) = self._transaction([p])
        except StoreUnavailable as err:
            return err
        except Exception as err:
            log.info("record refused by the database: %s", type(err).__name__)
            return RecordRefused(f"the database refused this record ({type(err).__name__})")
        return result

    def _transaction(self, group: list[_Pending]) -> list[tuple[int, bool]]:
        """One transaction over the group, table by table, results in submission order."""
        by_table: dict[int, tuple[GroupTable, list[int]]] = {}
        for index, p in enumerate(group):
            by_table.setdefault(id(p.table), (p.table, []))[1].append(index)
        results: list[tuple[int, bool] | None] = [None] * len(group)
        with self.db.transaction() as conn:
            for table, indexes in by_table.values():
                written = table.add_all(conn, [group[i].record for i in indexes])
                for i, result in zip(indexes, written, strict=True):
                    results[i] = result
        return [r for r in results if r is not None]


def _resolve(future: Future[tuple[int, bool]], outcome: tuple[int, bool] | BaseException) -> None:
    """Give a request its outcome, unless it stopped waiting (its sender timed out and was
    answered 503: the record, committed after all, is a redelivery when it is retried)."""
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:
        pass
