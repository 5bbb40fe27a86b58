"""The scale benchmark's harness on a handful of AIServices: it starts the API server and the
operator as processes, produces a complete report, and a restarted operator writes nothing.

No figure is asserted (timings belong in benchmarks/README.md, not in a test); what is
asserted is that every number the report promises is there and was actually observed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.operator_scale import Settings, run_scale, summary

N = 6
PROBES = 2


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir: Path = tmp_path_factory.mktemp("operator-scale")
    settings = Settings(n=N, namespaces=2, workers=4, probes=PROBES, timeout=60, workdir=workdir)
    return run_scale(settings)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["baseline", "operator"])
def test_every_phase_converges_and_is_measured(report: dict, mode: str) -> None:
    phases = report[mode]["phases"]
    for phase, count in (("create", N), ("probe", PROBES), ("update", N)):
        figures = phases[phase]
        assert figures["objects"] == count, phase
        assert figures["unmatched"] == 0, phase
        latency = figures["children_latency"]
        assert all(latency[k] is not None and latency[k] >= 0 for k in latency), phase
        assert figures["converge_seconds"] > 0
        assert figures["objects_per_second"] > 0
        assert figures["cpu"]["apiserver_cpu_seconds"] >= 0
        driver = figures["requests"]["driver"]
        verb = "patch" if phase == "update" else "create"
        assert driver["by_verb"][f"{verb} aiservices"] == count
    assert report[mode]["apiserver"]["peak_rss_mb"] > 0


@pytest.mark.slow
def test_operator_figures_and_ratios(report: dict) -> None:
    operator = report["operator"]
    create = operator["phases"]["create"]
    assert create["requests"]["operator"]["writes"] > 0  # writes are counted per client
    assert create["requests"]["operator"]["per_aiservice"] > 0
    assert create["status_ready_latency"]["p95_ms"] is not None
    assert operator["first_process"]["peak_rss_mb"] > 0
    assert operator["first_process"]["cpu_seconds"] > 0
    for phase in ("create", "probe", "update"):
        assert report["ratios"][phase]["converge_seconds"] is not None
    assert set(report["targets"]) == {
        "probe_p95_ms_under_100",
        "create_converge_ratio_at_most_1.5",
        "peak_rss_mb_under_150",
        "resync_writes_zero",
    }
    assert f"N={N}" in summary(report)


@pytest.mark.slow
def test_restarted_operator_revisits_everything_and_writes_nothing(report: dict) -> None:
    resync = report["operator"]["phases"]["resync"]["requests"]["operator"]
    assert resync["by_verb"]["get aiservices"] >= N + PROBES  # it did look at every one
    assert resync["writes"] == 0, resync["by_verb"]
    assert report["operator"]["resync_writes"] == 0
