"""State shared by the worker processes of one server: metrics files and readiness.

Used by both servers (the function runtime and the event store). With more than one
worker process, each worker holds its own model (or connections) and its own
counters. prometheus_client's multiprocess mode keeps every worker's samples in files
under ``PROMETHEUS_MULTIPROC_DIR`` so that ``/metrics``, whichever worker answers it,
reports the sum over all of them. The same directory holds one ready marker per worker
whose model has loaded: readiness answers 200 only when every worker can serve, so the
pod never gets traffic that a still-loading worker would answer 503.

The directory belongs to one server: the master makes a new one under the temp dir
(``TMPDIR``, else ``/tmp``) named after its pid, exports it to the workers it forks and
removes it at exit; an inherited ``PROMETHEUS_MULTIPROC_DIR`` is replaced, since the
function processes of a local run share one environment and would sum (and empty) each
other's files. At start it removes the directories of servers that are gone (killed
before they could clean up). The master drops a dead worker's marker and live gauges
when it reaps it; the worker's counts stay, as counters never go down.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client reads this name when it is imported; the server sets it before forking."""
_READY_PREFIX = "ready-"
_DIR_PREFIX = "aisvc-metrics-"


def shared_dir() -> Path | None:
    """The directory shared by the workers of this container, when serving more than one."""
    raw = os.environ.get(ENV_MULTIPROC_DIR)
    return Path(raw) if raw else None


def prepare_shared_dir() -> Path:
    """Make this server's directory, export it, and remove those of servers that are gone."""
    base = Path(tempfile.gettempdir())
    me = os.getpid()
    for old in base.glob(f"{_DIR_PREFIX}*"):
        owner = old.name[len(_DIR_PREFIX) :].split("-", 1)[0]
        # Our own pid on an old directory: a previous container reused it (pid 1 is common).
        if owner.isdigit() and (int(owner) == me or not _alive(int(owner))):
            shutil.rmtree(old, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{me}-", dir=base))
    os.environ[ENV_MULTIPROC_DIR] = str(path)
    return path


def drop_inherited_dir() -> None:
    """One worker keeps its metrics in memory: ignore a directory set by someone else."""
    os.environ.pop(ENV_MULTIPROC_DIR, None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_shared_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def use_shared_values() -> Path | None:
    """The shared directory, with prometheus_client switched to its files when one is set.

    prometheus_client picks its value store when first imported; if something imported it
    before the server exported the directory, the switch happens here, before any metric
    is made."""
    from prometheus_client import values

    directory = shared_dir()
    if directory is not None and not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()
    return directory


def render(registry: CollectorRegistry, directory: Path | None) -> bytes:
    """The exposition text: ``registry`` alone, or the sum over all workers' files."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if directory is None:
        return generate_latest(registry)
    summed = CollectorRegistry()
    multiprocess.MultiProcessCollector(summed, str(directory))
    return generate_latest(summed)


def mark_ready(directory: Path, pid: int | None = None) -> None:
    """Record that this worker's model is loaded (called in the worker)."""
    (directory / f"{_READY_PREFIX}{pid or os.getpid()}").touch()


def mark_dead(directory: Path, pid: int) -> None:
    """Forget a worker that exited (called in the supervisor when it reaps the worker)."""
    # Imported here: the master must not import prometheus_client before the
    # directory is exported, or the workers it forks inherit single-process values.
    from prometheus_client import multiprocess

    (directory / f"{_READY_PREFIX}{pid}").unlink(missing_ok=True)
    multiprocess.mark_process_dead(pid, str(directory))


def ready_workers(directory: Path) -> int:
    """How many workers have loaded their model and are still running."""
    return sum(1 for entry in directory.glob(f"{_READY_PREFIX}*"))
