"""How many CPUs this container may use: its cgroup CPU quota, not the node's cores.

``os.cpu_count()`` in a pod reports the node (64 on a 64-core node) even when the pod
is limited to 2 CPUs; sizing worker processes from it would start 64 copies of the
model. The quota is read from cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``) and rounded up; without a quota, the CPUs this process may run
on (its affinity mask, which ``taskset`` and cpusets narrow).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_quota(root: Path) -> float | None:
    text = _read(root / "cpu.max")
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(root: Path) -> float | None:
    for folder in (root / "cpu,cpuacct", root / "cpu"):
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        try:
            q, p = int(quota), int(period)
        except ValueError:
            return None
        return q / p if q > 0 and p > 0 else None  # -1: no quota
    return None


def quota_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in CPUs (e.g. 1.5), or None when the cgroup sets none."""
    v2 = _v2_quota(root)
    return v2 if v2 is not None else _v1_quota(root)


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def container_cpus(root: Path = CGROUP_ROOT, affinity: int | None = None) -> int:
    """Whole CPUs to size worker processes by: the quota rounded up, at most the affinity."""
    available = affinity if affinity is not None else affinity_cpus()
    quota = quota_cpus(root)
    if quota is None:
        return max(1, available)
    return max(1, min(available, math.ceil(quota - 1e-9)))
