"""Device and precision: parsing, resolution from what torch sees, per-device defaults,
the start failure of ``cuda`` without a device, and the memory check of placement.

Device facts are injected (``CudaFacts``) so every rule runs on a machine without a GPU;
the start-failure tests use this machine's real torch, which sees no CUDA device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from aiservice_functions.models import accelerator, minilm
from aiservice_functions.models.device import (
    CPU_FP32,
    CudaFacts,
    Device,
    DeviceError,
    DeviceRequest,
    Placement,
    check_fits,
    parse_device,
    parse_precision,
    resolve_device,
    resolve_placement,
)
from aiservice_functions.models.minilm import MiniLMEncoder
from aiservice_functions.runtime.config import ConfigError, RuntimeConfig
from aiservice_functions.runtime.function import BatchDefaults, load_entrypoint

ROOT = Path(__file__).resolve().parents[2]
NONE = CudaFacts(built=True, count=0)
CPU_BUILD = CudaFacts(built=False, count=0)
TWO = CudaFacts(built=True, count=2)
TEXT = BatchDefaults(enabled=True, max_size=32, max_wait_ms=5, cuda_max_size=128)
CUDA0_FP16 = Placement(Device("cuda", 0), "fp16")
no_gpu_here = pytest.mark.skipif(
    accelerator.cuda_facts().count > 0, reason="this machine has a CUDA device"
)


# --- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, DeviceRequest("auto")),
        ("", DeviceRequest("auto")),
        (" AUTO ", DeviceRequest("auto")),
        ("cpu", DeviceRequest("cpu")),
        ("cuda", DeviceRequest("cuda")),
        ("cuda:1", DeviceRequest("cuda", 1)),
    ],
)
def test_device_settings_are_read(raw: str | None, expected: DeviceRequest) -> None:
    assert parse_device(raw) == expected


@pytest.mark.parametrize("raw", ["gpu", "cpu:0", "auto:1", "cuda:", "cuda:x", "cuda:-1", "mps"])
def test_bad_device_settings_are_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(DeviceError, match=r"AISVC_DEVICE must be auto, cpu, cuda or cuda:N"):
        parse_device(raw)


def test_precision_settings() -> None:
    assert parse_precision(None) is None and parse_precision(" ") is None
    assert [parse_precision(p) for p in ("fp32", "FP16", "bf16")] == ["fp32", "fp16", "bf16"]
    with pytest.raises(DeviceError, match=r"AISVC_PRECISION must be one of fp32, fp16, bf16"):
        parse_precision("half")


# --- resolution ----------------------------------------------------------------------


def test_auto_is_cuda_when_torch_sees_a_device_else_cpu() -> None:
    auto = DeviceRequest()
    assert resolve_device(auto, TWO) == Device("cuda", 0)
    assert resolve_device(auto, NONE) == Device("cpu")
    assert resolve_device(auto, CPU_BUILD) == Device("cpu")
    assert resolve_device(DeviceRequest("cpu"), TWO) == Device("cpu")
    assert resolve_device(DeviceRequest("cuda", 1), TWO) == Device("cuda", 1)
    assert str(Device("cuda", 1)) == "cuda:1" and str(Device()) == "cpu"


@pytest.mark.parametrize(
    ("request_", "facts", "reason"),
    [
        (DeviceRequest("cuda"), CPU_BUILD, "CPU-only build: use the function image tagged"),
        (DeviceRequest("cuda"), NONE, "torch sees no CUDA device"),
        (DeviceRequest("cuda", 0), NONE, "torch sees no CUDA device"),
        (DeviceRequest("cuda", 2), TWO, r"sees 2 CUDA device\(s\) \(cuda:0 to cuda:1\)"),
    ],
)
def test_cuda_without_that_device_is_refused_never_run_on_cpu(
    request_: DeviceRequest, facts: CudaFacts, reason: str
) -> None:
    with pytest.raises(DeviceError, match=f"AISVC_DEVICE={request_}.*{reason}"):
        resolve_device(request_, facts)


def test_precision_defaults_to_fp32_on_cpu_and_fp16_on_cuda() -> None:
    auto = DeviceRequest()
    assert resolve_placement(auto, None, NONE) == CPU_FP32
    assert resolve_placement(auto, None, TWO) == CUDA0_FP16
    assert resolve_placement(auto, "bf16", NONE) == Placement(Device("cpu"), "bf16")
    assert resolve_placement(auto, "fp32", TWO) == Placement(Device("cuda", 0), "fp32")


def test_a_function_that_cannot_be_placed_runs_on_cpu_and_refuses_cuda() -> None:
    assert resolve_placement(DeviceRequest(), None, TWO, on_device=False) == CPU_FP32
    with pytest.raises(DeviceError, match="the fraud function runs on CPU only"):
        resolve_placement(DeviceRequest("cuda"), None, TWO, on_device=False, function="fraud")
    with pytest.raises(DeviceError, match="AISVC_PRECISION=fp16: the fraud function runs in fp32"):
        resolve_placement(DeviceRequest(), "fp16", TWO, on_device=False, function="fraud")


# --- settings per device -------------------------------------------------------------


def test_a_gpu_gets_bigger_batches_and_the_same_single_torch_thread() -> None:
    cpu = RuntimeConfig.from_env(TEXT, env={}, cuda=TWO, on_device=False)
    gpu = RuntimeConfig.from_env(TEXT, env={}, cuda=TWO, on_device=True)
    assert (cpu.placement, cpu.batch_max_size, cpu.torch_threads) == (CPU_FP32, 32, 1)
    assert (gpu.placement, gpu.batch_max_size, gpu.torch_threads) == (CUDA0_FP16, 128, 1)
    on_cpu = RuntimeConfig.from_env(TEXT, env={"AISVC_DEVICE": "cpu"}, cuda=TWO, on_device=True)
    assert on_cpu.batch_max_size == 32
    explicit = RuntimeConfig.from_env(
        TEXT, env={"AISVC_BATCH_MAX_SIZE": "48"}, cuda=TWO, on_device=True
    )
    assert explicit.batch_max_size == 48
    assert RuntimeConfig.from_env(BatchDefaults(), env={}, cuda=TWO).batch_max_size == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AISVC_DEVICE": "tpu"}, "AISVC_DEVICE must be"),
        ({"AISVC_PRECISION": "int4"}, "AISVC_PRECISION must be"),
        ({"AISVC_DEVICE": "cuda"}, "AISVC_DEVICE=cuda but torch sees no CUDA device"),
        ({"AISVC_QUANTIZE": "int8", "AISVC_PRECISION": "bf16"}, "int8 runs on CPU in fp32 only"),
    ],
)
def test_device_settings_that_cannot_run_stop_the_config(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RuntimeConfig.from_env(TEXT, env=env, cuda=NONE, on_device=True)


def test_int8_on_a_gpu_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"runs on cuda:0 fp16"):
        RuntimeConfig.from_env(TEXT, env={"AISVC_QUANTIZE": "int8"}, cuda=TWO, on_device=True)


def test_shipped_functions_say_which_can_be_placed() -> None:
    sentiment = load_entrypoint("aiservice_functions.sentiment")
    fraud = load_entrypoint("aiservice_functions.fraud")
    assert sentiment.load_on_device is not None and fraud.load_on_device is None
    assert RuntimeConfig.for_function(fraud, env={}).placement == CPU_FP32


@no_gpu_here
def test_cuda_asked_for_on_this_machine_is_refused_by_the_config() -> None:
    sentiment = load_entrypoint("aiservice_functions.sentiment")
    with pytest.raises(ConfigError, match="AISVC_DEVICE=cuda but torch sees no CUDA device"):
        RuntimeConfig.for_function(sentiment, env={"AISVC_DEVICE": "cuda"})
    assert RuntimeConfig.for_function(sentiment, env={}).placement == CPU_FP32


@no_gpu_here
def test_cuda_without_a_device_is_a_clear_start_failure() -> None:
    """The server stops before binding or loading anything, with the reason on stderr."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'functions'}",
        "AISVC_DEVICE": "cuda",
        "AISVC_HOST": "127.0.0.1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "aiservice_functions.runtime", "serve", "aiservice_functions.topic"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "error: AISVC_DEVICE=cuda but torch sees no CUDA device" in done.stderr


# --- memory --------------------------------------------------------------------------


def test_a_model_too_large_for_the_free_memory_names_the_sizes() -> None:
    with pytest.raises(DeviceError) as caught:
        check_fits(3 * 2**30, 2**30, 16 * 2**30, CUDA0_FP16)
    assert str(caught.value).startswith(
        "the model needs 3.0 GiB on cuda:0 in fp16 but only 1.0 GiB of 16.0 GiB is free"
    )
    check_fits(2**30, 2**30, 16 * 2**30, CUDA0_FP16)  # exactly fits


def test_placement_checks_the_size_in_the_target_precision_before_moving() -> None:
    module = torch.nn.Linear(1024, 512)  # 524,800 parameters
    assert accelerator.module_bytes(module, "fp32") == 524_800 * 4
    assert accelerator.module_bytes(module, "fp16") == 524_800 * 2
    asked: list[Device] = []

    def memory(device: Device) -> tuple[int, int]:
        asked.append(device)
        return 2**19, 80 * 2**30  # 512 KiB free

    with pytest.raises(DeviceError, match=r"needs 1.0 MiB on cuda:0 in fp16 but only 512.0 KiB"):
        accelerator.place_module(module, CUDA0_FP16, memory=memory)
    assert asked == [Device("cuda", 0)]
    assert module.weight.device.type == "cpu" and module.weight.dtype == torch.float32


def test_cpu_placement_casts_in_place_without_asking_for_memory() -> None:
    module = torch.nn.Linear(4, 2)

    def memory(device: Device) -> tuple[int, int]:
        raise AssertionError("CPU memory is not checked")

    placed = accelerator.place_module(module, Placement(Device("cpu"), "bf16"), memory=memory)
    assert placed is module and module.weight.dtype == torch.bfloat16


def test_out_of_memory_and_device_faults_are_told_apart() -> None:
    assert accelerator.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory."))
    assert not accelerator.is_out_of_memory(RuntimeError("CUDA out of memory."))
    illegal = RuntimeError("CUDA error: an illegal memory access was encountered")
    assert accelerator.is_device_fault(illegal)
    assert not accelerator.is_device_fault(RuntimeError("shape mismatch"))
    assert not accelerator.is_device_fault(ValueError("CUDA error: not a runtime error"))


# --- the encoder in half precision ---------------------------------------------------


def test_a_bf16_encoder_gives_fp32_embeddings_close_to_the_fp32_ones() -> None:
    texts = ["The battery died after two days.", "Lovely staff and a quiet room."]
    fp32 = MiniLMEncoder().encode(texts)
    bf16_encoder = MiniLMEncoder(placement=Placement(Device("cpu"), "bf16"))
    assert next(bf16_encoder.model.parameters()).dtype == torch.bfloat16
    bf16 = bf16_encoder.encode(texts)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=1)
    assert bool((cosine > 0.99).all()), cosine
    with pytest.raises(ValueError, match="int8 quantization runs on CPU in fp32 only"):
        MiniLMEncoder(quantize="int8", placement=Placement(Device("cpu"), "bf16"))


def test_a_batch_travels_to_the_device_as_one_stacked_tensor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder = MiniLMEncoder()
    batch = dict(
        encoder.tokenizer(["a short one", "and a longer text"], padding=True, return_tensors="pt")
    )
    copies: list[tuple[int, ...]] = []
    original = torch.Tensor.to

    def counting_to(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        copies.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    moved = minilm.move_batch(batch, "cpu")
    monkeypatch.undo()
    assert copies == [(len(batch), *batch["input_ids"].shape)]  # one copy, all three tensors
    assert list(moved) == list(batch)
    for name, tensor in batch.items():
        assert torch.equal(moved[name], tensor)
