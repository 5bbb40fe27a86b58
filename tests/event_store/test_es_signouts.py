"""Console sign-outs on the store's database, on SQLite and PostgreSQL (the HTTP side,
cookies and workers, is in tests/console/test_console_http.py)."""

from __future__ import annotations

from aiservice_functions.event_store.console.signouts import TABLE, SignOuts
from aiservice_functions.event_store.service import EventStore


def test_a_signed_out_session_stays_out_and_expired_rows_are_dropped(store: EventStore) -> None:
    signouts = SignOuts(store.db)
    SignOuts(store.db)  # a second worker creating the table finds it there
    assert not signouts.signed_out("a")
    signouts.sign_out("a", 3600)
    signouts.sign_out("a", 3600)  # twice is once
    assert signouts.signed_out("a") and not signouts.signed_out("b")
    signouts.sign_out("old", -1)  # a cookie that has expired by itself
    signouts.sign_out("b", 3600)  # each sign-out sweeps what has expired
    with store.db.transaction(write=False) as conn:
        rows = store.db.execute(conn, f"SELECT session_id FROM {TABLE} ORDER BY 1").fetchall()
    assert [r["session_id"] for r in rows] == ["a", "b"]
