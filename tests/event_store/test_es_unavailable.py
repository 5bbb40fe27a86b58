"""When PostgreSQL goes away the store answers 503 (Knative retries) and never a 2xx for an
event it did not write; when the database is back, it reconnects by itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from aiservice_functions import contract
from aiservice_functions.event_store import create_app, open_store
from aiservice_functions.event_store.records import EventFilter

from tests.support.event_store import TOKEN, free_port, post_dead_letter, serving

POSTGRES_SH = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"


def _pg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POSTGRES_SH), *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.postgres
def test_database_outage_gives_503_then_recovers(tmp_path: Path) -> None:
    home = str(tmp_path / "pg")
    port = str(free_port())
    started = _pg("start", home, port)
    if started.returncode == 3:
        pytest.skip(f"PostgreSQL binaries not installed ({started.stderr.strip()})")
    assert started.returncode == 0, started.stderr
    store = open_store(started.stdout.strip())
    try:
        with serving(create_app(store, token=TOKEN)) as server, httpx.Client(timeout=30) as client:
            assert post_dead_letter(client, server, "before").status_code == 201
            assert _pg("stop", home).returncode == 0
            during = post_dead_letter(client, server, "during")
            assert during.status_code == 503
            assert "retry" in during.json()["error"]
            assert client.get(server + contract.PATH_READINESS).status_code == 503
            assert _pg("start", home, port).returncode == 0
            assert post_dead_letter(client, server, "after").status_code == 201
            assert client.get(server + contract.PATH_READINESS).status_code == 200
        ids = {r.event_id for r in store.events.page(EventFilter()).items}
        assert ids == {"before", "after"}
    finally:
        store.close()
        _pg("destroy", home)
