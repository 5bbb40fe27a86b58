"""Console sessions signed out before their cookie expired, kept in the store's database.

A session cookie is signed, not stored, so signing out used to forget it only in the
browser: a copy of the cookie stayed valid for its 12 hours. Each session now carries a
random id; signing out writes that id here, on the store's database, so every worker
process sees it and it survives a restart. Rows are dropped once the cookie they name
would have expired anyway.
"""

from __future__ import annotations

from typing import Final

from aiservice_functions.event_store.database import Database
from aiservice_functions.event_store.records import now_us

TABLE: Final = "aisvc_console_signouts"
LOCK_ID: Final = 7163550013


class SignOuts:
    """The signed-out session ids of one store."""

    def __init__(self, db: Database) -> None:
        self.db = db
        schema = (
            f"""CREATE TABLE IF NOT EXISTS {TABLE} (
                session_id TEXT PRIMARY KEY,
                expires_at BIGINT NOT NULL
            )""",
        )
        db.create(schema, LOCK_ID)

    def sign_out(self, session_id: str, max_age_s: int) -> None:
        """Refuse ``session_id`` from now on (until its cookie expires by itself)."""
        now = now_us()
        with self.db.transaction() as conn:
            self.db.execute(conn, f"DELETE FROM {TABLE} WHERE expires_at < ?", (now,))
            self.db.execute(
                conn,
                f"INSERT INTO {TABLE} (session_id, expires_at) VALUES (?, ?) "
                "ON CONFLICT (session_id) DO NOTHING",
                (session_id, now + max_age_s * 1_000_000),
            )

    def signed_out(self, session_id: str) -> bool:
        with self.db.transaction(write=False) as conn:
            row = self.db.execute(
                conn, f"SELECT 1 FROM {TABLE} WHERE session_id = ?", (session_id,)
            ).fetchone()
        return row is not None
