"""State shared by the worker processes of one container: metrics files and readiness.

With more than one gunicorn worker, each worker holds its own model and its own
counters. prometheus_client's multiprocess mode keeps every worker's samples in files
under ``PROMETHEUS_MULTIPROC_DIR`` so that ``/metrics``, whichever worker answers it,
reports the sum over all of them. The same directory holds one ready marker per worker
whose model has loaded: readiness answers 200 only when every worker can serve, so the
pod never gets traffic that a still-loading worker would answer 503.

The directory is per container and scratch: the server empties it at start (files of
an earlier run would be summed in) and the master drops a dead worker's marker and live
gauges when gunicorn reaps it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client reads this name when it is imported; the server sets it before forking."""
_READY_PREFIX = "ready-"


def shared_dir() -> Path | None:
    """The directory shared by the workers of this container, when serving more than one."""
    raw = os.environ.get(ENV_MULTIPROC_DIR)
    return Path(raw) if raw else None


def prepare_shared_dir() -> tuple[Path, bool]:
    """Create (or empty) the shared directory and export it; returns it and whether we made it.

    An operator-set ``PROMETHEUS_MULTIPROC_DIR`` (e.g. an emptyDir) is used and emptied;
    otherwise a fresh directory under the temp dir (``TMPDIR``, else ``/tmp``) is made,
    and the caller removes it on exit.
    """
    given = os.environ.get(ENV_MULTIPROC_DIR)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for entry in path.iterdir():
            if entry.is_file() and (entry.suffix == ".db" or entry.name.startswith(_READY_PREFIX)):
                entry.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="aisvc-metrics-"))
    os.environ[ENV_MULTIPROC_DIR] = str(path)
    return path, True


def remove_shared_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def mark_ready(directory: Path, pid: int | None = None) -> None:
    """Record that this worker's model is loaded (called in the worker)."""
    (directory / f"{_READY_PREFIX}{pid or os.getpid()}").touch()


def mark_dead(directory: Path, pid: int) -> None:
    """Forget a worker that exited (called in the master, from gunicorn's ``child_exit``)."""
    # Imported here: the master must not import prometheus_client before the
    # directory is exported, or the workers it forks inherit single-process values.
    from prometheus_client import multiprocess

    (directory / f"{_READY_PREFIX}{pid}").unlink(missing_ok=True)
    multiprocess.mark_process_dead(pid, str(directory))


def ready_workers(directory: Path) -> int:
    """How many workers have loaded their model and are still running."""
    return sum(1 for entry in directory.glob(f"{_READY_PREFIX}*"))
