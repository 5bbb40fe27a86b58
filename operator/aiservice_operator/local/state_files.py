"""The local run's state directory: kept private, and trusted only when it is the user's.

The directory holds event data (the broker log, the event store's database, the
processes' logs), so it is created 0700 and every file in it 0600, whatever the umask.
SQLite gives a database's ``-wal`` and ``-shm`` files the database file's permissions, so
creating the database file first is enough for them.

``local.json`` says where a running ``aisvc up`` listens; the CLI reads it to find the
run. It is believed only when this user owns it, it names a live process of this user,
and every URL in it is on loopback: a file planted in a directory (a cloned repository,
a shared /tmp) cannot send the CLI's requests anywhere else.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiservice_functions.loopback_hosts import is_loopback

STATE_FILE = "local.json"
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """`path`, created owner-only (0700) if it does not exist yet."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """`path`, created empty and owner-only (0600) if missing, else made owner-only."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.chmod(path, 0o600)
    return path


def private_database(path: Path) -> Path:
    """A SQLite database file made owner-only, with the companions an earlier run left."""
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(companion, 0o600)
    return private_file(path)


def write_state(state_dir: Path, state: Mapping[str, Any]) -> None:
    """Replace ``local.json`` atomically, owner-only."""
    path = state_dir / STATE_FILE
    tmp = private_file(path.with_suffix(".tmp"))
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def read_state(state_dir: Path = Path(".aisvc")) -> Mapping[str, Any] | None:
    """The running local executor's URLs (``local.json``), or None when no run of this
    user's is live there (no file, a stopped run, or a file not to be trusted)."""
    try:
        with (state_dir / STATE_FILE).open(encoding="utf-8") as handle:
            owner = os.fstat(handle.fileno()).st_uid
            state = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or owner != os.getuid():
        return None
    if not _live(state.get("pid")) or not all(_local_url(u) for u in _urls(state)):
        return None
    return state


def _live(pid: object) -> bool:
    """Whether `pid` is a running process this user may signal (its own)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (OSError, OverflowError):
        return False
    return True


def _urls(state: Mapping[str, Any]) -> list[object]:
    urls = [v for k, v in state.items() if k.endswith("Url") and v is not None]
    brokers = state.get("brokers") or {}
    return urls + (list(brokers.values()) if isinstance(brokers, dict) else [brokers])


def _local_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme == "http" and is_loopback(parts.hostname or "")
    except ValueError:
        return False
