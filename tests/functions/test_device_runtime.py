"""The runtime on a device, through real HTTP: out of memory, device faults, a wedged
device, a model too large for the GPU, and what readiness and metrics report.

No GPU is needed: a function injects the errors torch raises on one (its own
``torch.OutOfMemoryError``, a ``CUDA error`` RuntimeError), the configuration names a CUDA
placement, and the readiness probe of the device is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import torch
from aiservice_functions.cloudevents_http import CloudEvent, data_json
from aiservice_functions.models import accelerator
from aiservice_functions.models.batching import BatchFailure, MicroBatcher
from aiservice_functions.models.device import Device, Placement
from aiservice_functions.runtime.app import FunctionService, create_app
from aiservice_functions.runtime.device_health import DeviceHealth
from aiservice_functions.runtime.function import BatchDefaults, Function

from tests.support.runtime import config_for, metric_value, post_binary, serving, wait_ready

CUDA0 = Placement(Device("cuda", 0), "fp16")
FAULTS: list[str] = []
"""What the next forward passes raise, in order ("oom", "fault"); empty: they answer."""
CALLS: list[int] = []
"""The size of each batch ``infer`` was called with."""


def _load(path: Path, version: str) -> str:
    return path.read_text()


def _decode(event: CloudEvent) -> str:
    return str(data_json(event)["text"])


def _infer(model: str, texts: Sequence[str]) -> list[dict[str, Any]]:
    CALLS.append(len(texts))
    fault = FAULTS.pop(0) if FAULTS else None
    if fault == "oom":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    if fault == "fault":
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    return [{"echo": text} for text in texts]


def _too_large(path: Path, version: str, placement: Placement) -> torch.nn.Module:
    def memory(device: Device) -> tuple[int, int]:
        return 2**19, 80 * 2**30  # 512 KiB of 80 GiB free

    return accelerator.place_module(torch.nn.Linear(1024, 512), placement, memory=memory)


single = Function(name="gpu", load=_load, decode=_decode, infer=_infer, uses_torch=False)
batched = replace(single, batching=BatchDefaults(enabled=True, max_size=4, max_wait_ms=2000))


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.txt"
    path.write_text("m")
    return path


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    FAULTS.clear()
    CALLS.clear()
    yield
    FAULTS.clear()


def _app(function: Function, model_file: Path, probe: Callable[[], None] | None = None) -> Any:
    cfg = config_for(function, model_uri=model_file.as_uri(), placement=CUDA0)
    return create_app(function, cfg, device_probe=probe or (lambda: None))


def test_out_of_memory_fails_its_batch_with_503_frees_the_cache_and_serves_on(
    model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[bool] = []
    monkeypatch.setattr(accelerator, "release_cached_memory", lambda: released.append(True))
    FAULTS.append("oom")
    with serving(_app(batched, model_file)) as url:
        wait_ready(url)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: post_binary(url, {"text": f"t{i}"}), range(4)))
        failed = [a for a in answers if a.status_code == 503]
        assert {a.status_code for a in answers} <= {200, 503}
        assert len(failed) == CALLS[0] > 1, CALLS  # the whole first batch, at once
        assert sum(CALLS) == 4  # its events were not retried one by one
        assert "cuda:0 ran out of memory on a batch of" in failed[0].json()["error"]
        assert failed[0].json()["revision"] == "echo-00002"  # names the revision, like every 5xx
        assert released == [True]
        assert post_binary(url, {"text": "after"}).json() == {"echo": "after"}
        assert requests.get(f"{url}/health/readiness").status_code == 200
        metrics = requests.get(f"{url}/metrics").text
        assert metric_value(metrics, "aisvc_function_events_total", outcome="out_of_memory") == len(
            failed
        )


def test_out_of_memory_without_batching_is_503_too(model_file: Path) -> None:
    FAULTS.append("oom")
    with serving(_app(single, model_file)) as url:
        wait_ready(url)
        assert post_binary(url, {"text": "a"}).status_code == 503
        assert post_binary(url, {"text": "b"}).status_code == 200


def test_a_device_fault_fails_readiness_and_liveness_for_good(model_file: Path) -> None:
    FAULTS.append("fault")
    with serving(_app(single, model_file)) as url:
        wait_ready(url)
        answer = post_binary(url, {"text": "a"})
        assert answer.status_code == 500
        readiness = requests.get(f"{url}/health/readiness")
        assert readiness.status_code == 503
        assert readiness.json()["status"] == "device_unavailable"
        assert "illegal memory access" in readiness.json()["error"]
        liveness = requests.get(f"{url}/health/liveness")
        assert liveness.status_code == 500 and liveness.json()["status"] == "device_failed"


def test_a_fault_on_a_cpu_placement_is_just_a_failed_event(model_file: Path) -> None:
    FAULTS.append("fault")
    cfg = config_for(single, model_uri=model_file.as_uri())
    with serving(create_app(single, cfg)) as url:
        wait_ready(url)
        assert post_binary(url, {"text": "a"}).status_code == 500
        assert requests.get(f"{url}/health/readiness").status_code == 200


def test_a_wedged_device_fails_readiness_until_it_answers(model_file: Path) -> None:
    answering = threading.Event()
    with serving(_app(single, model_file, probe=lambda: answering.wait(60) and None)) as url:
        wedged = _readiness_until(url, "device_unavailable")
        assert "has not answered a probe for over 5s" in wedged["error"]
        assert requests.get(f"{url}/health/liveness").status_code == 200
        answering.set()
        wait_ready(url)


def test_a_failing_device_probe_fails_readiness(model_file: Path) -> None:
    def probe() -> None:
        raise RuntimeError("CUDA driver is shutting down")

    with serving(_app(single, model_file, probe=probe)) as url:
        readiness = _readiness_until(url, "device_unavailable")
        assert readiness["error"].startswith("device probe failed: RuntimeError: CUDA driver")


def test_a_model_too_large_for_the_gpu_fails_start_naming_the_sizes(model_file: Path) -> None:
    function = replace(single, load_on_device=_too_large)
    app = _app(function, model_file)
    service = app.extensions["aisvc"]
    assert isinstance(service, FunctionService)
    service._loader.join(30)
    with serving(app) as url:
        readiness = requests.get(f"{url}/health/readiness").json()
        assert readiness["status"] == "failed"
        assert (
            "needs 1.0 MiB on cuda:0 in fp16 but only 512.0 KiB of 80.0 GiB" in (readiness["error"])
        )
        assert requests.get(f"{url}/health/liveness").status_code == 500


def test_readiness_and_metrics_name_the_device_and_precision(model_file: Path) -> None:
    with serving(_app(single, model_file)) as url:
        wait_ready(url)
        ready = requests.get(f"{url}/health/readiness").json()
        assert (ready["device"], ready["precision"]) == ("cuda:0", "fp16")
        metrics = requests.get(f"{url}/metrics").text
        info = {"model_version": "v2", "device": "cuda:0", "precision": "fp16"}
        assert metric_value(metrics, "aisvc_function_model_info", **info) == 1


def _readiness_until(url: str, status: str) -> dict[str, Any]:
    """Readiness's body once it reports ``status`` (probes report at a later check)."""
    body: dict[str, Any] = {}
    for _ in range(600):
        body = requests.get(f"{url}/health/readiness", timeout=10).json()
        if body["status"] == status:
            return body
        time.sleep(0.05)
    raise AssertionError(f"readiness never reported {status}: {body}")


# --- the device health and the batcher on their own ------------------------------------


def test_a_hung_probe_makes_the_device_unavailable_and_is_not_started_again() -> None:
    calls: list[bool] = []
    release, finished = threading.Event(), threading.Event()

    def probe() -> None:
        calls.append(True)
        release.wait(30)
        finished.set()

    health = DeviceHealth(probe, timeout_s=0.5, wait_s=0.01)
    problem = health.problem()  # the first probe is still running: nothing known yet
    for _ in range(200):
        if problem is not None:
            break
        time.sleep(0.05)
        problem = health.problem()
    assert problem == "the device has not answered a probe for over 0.5s"
    assert calls == [True]
    release.set()
    assert finished.wait(10)
    for _ in range(200):  # the next check starts a new probe, which answers
        problem = health.problem()
        if problem is None:
            break
        time.sleep(0.05)
    assert problem is None and len(calls) >= 2
    health.mark_broken("CUDA error: device-side assert triggered")
    health.mark_broken("a later error")
    assert health.problem() == health.fault == "CUDA error: device-side assert triggered"
    assert DeviceHealth(None).problem() is None


def _blocking_batcher(
    keep_busy: bool, fail_second: bool = False
) -> tuple[MicroBatcher[str, str], threading.Event, threading.Event, list[list[str]]]:
    entered, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def infer(items: Sequence[str]) -> list[str]:
        batches.append(list(items))
        if len(batches) == 1:
            entered.set()
            release.wait(30)
        elif fail_second:
            raise BatchFailure("out of memory")
        return [i.upper() for i in items]

    batcher = MicroBatcher(infer, max_size=2, max_wait_s=60.0, keep_busy=keep_busy)
    return batcher, entered, release, batches


def test_keep_busy_runs_what_queued_during_a_batch_at_once() -> None:
    batcher, entered, release, batches = _blocking_batcher(keep_busy=True)
    try:
        first = [batcher.submit("a"), batcher.submit("b")]  # a full batch: runs at once
        assert entered.wait(10)
        late: Future[str] = batcher.submit("c")  # queued while the device is busy
        release.set()
        assert [f.result(10) for f in first] == ["A", "B"]
        # Without keep_busy it would wait up to 60 s for a batch mate.
        assert late.result(10) == "C"
        assert batches == [["a", "b"], ["c"]]
    finally:
        release.set()
        batcher.close()


def test_a_batch_failure_fails_all_its_items_without_retrying_them_alone() -> None:
    batcher, entered, release, batches = _blocking_batcher(keep_busy=True, fail_second=True)
    try:
        batcher.submit("a"), batcher.submit("b")
        assert entered.wait(10)
        late = [batcher.submit("c"), batcher.submit("d")]
        release.set()
        for future in late:
            with pytest.raises(BatchFailure, match="out of memory"):
                future.result(10)
        assert batches == [["a", "b"], ["c", "d"]]
    finally:
        release.set()
        batcher.close()
