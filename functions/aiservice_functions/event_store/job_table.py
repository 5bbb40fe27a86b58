"""The replay jobs table: one row per replay job, its progress, results and cancel flag,
so any store process (or replica, on PostgreSQL) answers for a job another one runs
(:mod:`.jobs` runs them)."""

from __future__ import annotations

from typing import Any, Final

from aiservice_functions.event_store.database import Database
from aiservice_functions.event_store.records import now_us

TABLE: Final = "aisvc_replay_jobs"
LOCK_ID: Final = 7163550012
_COLUMNS: Final = (
    "id, state, request, selected, replayed, failed, cancelled, cancel_requested, error, "
    "results, created_at, updated_at, finished_at"
)
_SCHEMA: Final = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
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
    f"CREATE INDEX IF NOT EXISTS {TABLE}_created ON {TABLE} (created_at)",
)


class ReplayJobTable:
    """The replay jobs table over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.create(_SCHEMA, LOCK_ID)

    def create(self, job_id: str, request: str) -> None:
        now = now_us()
        with self.db.transaction() as conn:
            self.db.execute(
                conn,
                f"INSERT INTO {TABLE} (id, state, request, created_at, updated_at) "
                "VALUES (?, 'running', ?, ?, ?)",
                (job_id, request, now, now),
            )

    def update(
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
        with self.db.transaction() as conn:
            self.db.execute(
                conn,
                f"""UPDATE {TABLE} SET selected = ?, replayed = ?, failed = ?, cancelled = ?,
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
            row = self.db.execute(
                conn, f"SELECT cancel_requested FROM {TABLE} WHERE id = ?", (job_id,)
            ).fetchone()
        return bool(row and row["cancel_requested"])

    def request_cancel(self, job_id: str) -> bool:
        """Ask a running job to stop; False when there is no such job."""
        with self.db.transaction() as conn:
            cur = self.db.execute(
                conn, f"UPDATE {TABLE} SET cancel_requested = 1 WHERE id = ?", (job_id,)
            )
            return cur.rowcount > 0

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.db.transaction(write=False) as conn:
            row = self.db.execute(
                conn, f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = ?", (job_id,)
            ).fetchone()
        return dict(row) if row else None

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.db.transaction(write=False) as conn:
            rows = self.db.execute(
                conn,
                f"SELECT {_COLUMNS} FROM {TABLE} ORDER BY created_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(r) for r in rows]
