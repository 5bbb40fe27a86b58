"""The container's CPUs from its cgroup quota (v2 and v1), on cgroup files written here."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiservice_functions.runtime.cpus import container_cpus, quota_cpus


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


@pytest.mark.parametrize(
    ("files", "quota", "cpus"),
    [
        ({"cpu.max": "200000 100000"}, 2.0, 2),  # v2: limits.cpu 2
        ({"cpu.max": "150000 100000"}, 1.5, 2),  # 1500m rounds up
        ({"cpu.max": "50000 100000"}, 0.5, 1),
        ({"cpu.max": "max 100000"}, None, 64),  # no limit: the CPUs we may run on
        ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3.0, 3),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "1"}, None, 64),
        ({}, None, 64),  # no cgroup files at all
        ({"cpu.max": "garbage"}, None, 64),
    ],
)
def test_quota_sizes_the_workers_not_the_node(
    tmp_path: Path, files: dict[str, str], quota: float | None, cpus: int
) -> None:
    root = _write(tmp_path, files)
    assert quota_cpus(root) == quota
    assert container_cpus(root, affinity=64) == cpus


def test_a_quota_above_the_affinity_is_capped_by_it(tmp_path: Path) -> None:
    root = _write(tmp_path, {"cpu.max": "800000 100000"})
    assert container_cpus(root, affinity=2) == 2
