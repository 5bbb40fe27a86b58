"""Smoke test of the serving benchmark's load generator and report (not the benchmark).

The benchmark itself (``benchmarks/serving.py``) is run by hand; this checks, in about
a second, that its wrk script sends binary-mode CloudEvents that a real server accepts,
that wrk's summary is parsed, and that the ratios are computed ours/baseline.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import serving  # noqa: E402


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 that records CloudEvent headers and JSON bodies."""
    seen: list[dict[str, Any]] = []

    @Request.application
    def app(request: Request) -> Response:
        seen.append({"headers": dict(request.headers), "data": json.loads(request.data)})
        return Response('{"label": "positive", "score": 0.9}', content_type="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/models/sentiment:predict", seen
    finally:
        server.shutdown()
        thread.join(5)


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (benchmarks/setup.sh)"
)
def test_wrk_sends_binary_cloudevents_and_its_summary_is_parsed(
    recorder: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, seen = recorder
    server = serving.Server("probe", "ours", url, url, [], {})
    script = serving.wrk_script("sentiment", server, tmp_path)
    run = serving.run_wrk(url, script, connections=2, seconds=1)
    assert run["errors"] == 0
    assert 0 < run["requests"] <= len(seen)  # requests cut off at the end are not counted
    assert run["rps"] > 0 and 0 < run["p50_ms"] <= run["p99_ms"]
    first = seen[0]
    assert first["headers"]["Ce-Specversion"] == "1.0"
    assert first["headers"]["Content-Type"] == "application/json"
    ids = [s["headers"]["Ce-Id"] for s in seen]
    assert len(set(ids)) == len(ids) and all(i.startswith("bench-") for i in ids)
    payload_texts = {p["text"] for p in serving.bench_models.SENTIMENT_PAYLOADS}
    assert {s["data"]["text"] for s in seen} <= payload_texts


def test_report_gives_medians_and_ratios_ours_over_baseline() -> None:
    def run(
        server: str, c: int, rps: float, p50: float, p99: float, rnd: int, load: float = 0.5
    ) -> dict[str, Any]:
        cpu = 1000 / rps  # as if each server used one core
        return {
            "server": server,
            "c": c,
            "round": rnd,
            "rps": rps,
            "p50_ms": p50,
            "p99_ms": p99,
            "cpu_ms_per_req": cpu,
            "errors": 0,
            "load1": load,
            "noisy": load > 1.5,
        }

    result = {
        "model": "sentiment",
        "ceiling": {"1": 100.0},
        "ceiling_cpu_ms": {"1": 10.0},
        "runs": [
            run("ours", 8, 90.0, 80.0, 120.0, 0),
            run("ours", 8, 70.0, 100.0, 140.0, 1),
            run("ours", 8, 80.0, 90.0, 130.0, 2),
            run("kserve-1w", 8, 40.0, 180.0, 260.0, 0),
            run("kserve-1w", 8, 40.0, 180.0, 260.0, 1),
            run("mlserver-1w", 8, 80.0, 90.0, 130.0, 0, load=3.0),
        ],
    }
    text = serving.report(result, [8])
    assert "| ours | 8 | 80.0 | 90.0 | 130.0 | 12.50 | 0 |" in text
    # Ratio of the medians, then each round's ratio; quiet runs are not flagged.
    row = "| ours | kserve-1w | 8 | 2.00x (2.25, 1.75) | 0.50 | 0.50 | 0.50 | 80% | 80% | 0.5 |"
    assert row in text
    # A ratio with a run that started above the quiet load is flagged.
    assert "| ours | mlserver-1w | 8 | 1.00x (1.12) |" in text
    assert text.splitlines()[-1].endswith("| 3.0 **noisy** |")


def test_a_gpu_run_serves_each_precision_on_the_gpu_next_to_the_cpu() -> None:
    """``--device cuda``: ours per precision and on CPU, KServe per precision, each with the
    device settings the runtime (and ``bench_models`` for KServe) reads, on distinct ports."""
    args = serving.parse_args(
        ["--device", "cuda", "--servers", "ours,kserve", "--kserve-workers", "1"]
    )
    devices = [{"AISVC_DEVICE": "cuda", "AISVC_PRECISION": p} for p in args.precisions]
    servers = serving.servers_for("sentiment", args, devices)
    labels = [s.label for s in servers]
    assert labels == [
        "ours-cuda-fp32",
        "ours-cuda-fp16",
        "ours-cpu",
        "kserve-1w-cuda-fp32",
        "kserve-1w-cuda-fp16",
    ]
    env = {s.label: (s.env.get("AISVC_DEVICE"), s.env.get("AISVC_PRECISION")) for s in servers}
    assert env["ours-cuda-fp16"] == env["kserve-1w-cuda-fp16"] == ("cuda", "fp16")
    assert env["ours-cpu"] == ("cpu", None)
    assert len({s.url.split("/")[2] for s in servers}) == len(servers)
    cpu_only = serving.parse_args(["--servers", "ours,kserve", "--kserve-workers", "1"])
    assert [s.env.get("AISVC_DEVICE") for s in serving.servers_for("fraud", cpu_only, [])] == [
        "cpu",
        "cpu",
    ]
