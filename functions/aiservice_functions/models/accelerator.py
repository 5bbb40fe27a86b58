"""The few torch calls behind device placement: facts, moving a module, memory, faults.

Kept apart from ``device`` (pure rules) so that the rules are tested without torch or a
GPU, and kept small: each CUDA-only line here is one torch call, and everything that
decides what to do with its answer lives in ``device`` or the runtime.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiservice_functions.models.device import (
    CudaFacts,
    Device,
    Placement,
    Precision,
    check_fits,
    too_large,
)

if TYPE_CHECKING:
    import torch

MemoryInfo = Callable[[Device], tuple[int, int]]
"""(free, total) bytes of a device."""


def cuda_facts() -> CudaFacts:
    """What this process's torch sees. ``device_count`` asks NVML first, so calling it in
    the supervisor does not initialise CUDA before the workers fork."""
    import torch

    built = torch.version.cuda is not None
    return CudaFacts(built=built, count=torch.cuda.device_count() if built else 0)


def torch_dtype(precision: Precision) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def module_bytes(module: torch.nn.Module, precision: Precision) -> int:
    """Bytes ``module``'s floating-point parameters and buffers take in ``precision``."""
    size = torch_dtype(precision).itemsize
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        total += tensor.numel() * (size if tensor.is_floating_point() else tensor.element_size())
    return total


def cuda_memory(device: Device) -> tuple[int, int]:
    """(free, total) bytes on a CUDA device."""
    import torch

    free, total = torch.cuda.mem_get_info(device.index or 0)
    return int(free), int(total)


def place_module(
    module: torch.nn.Module, placement: Placement, *, memory: MemoryInfo = cuda_memory
) -> torch.nn.Module:
    """``module`` on ``placement``'s device in its precision, moved once, in place.

    On CUDA the size is checked against the free memory first, so a model that cannot fit
    fails start naming both sizes instead of a bare out-of-memory error halfway through.
    """
    import torch

    if not placement.device.is_cuda:
        return module.to(dtype=torch_dtype(placement.precision))
    needed = module_bytes(module, placement.precision)
    free, total = memory(placement.device)
    check_fits(needed, free, total, placement)
    try:
        return module.to(device=str(placement.device), dtype=torch_dtype(placement.precision))
    except torch.OutOfMemoryError as err:  # another process took the memory meanwhile
        raise too_large(needed, free, total, placement) from err


def is_out_of_memory(err: BaseException) -> bool:
    """torch ran out of device memory (the allocator's own error type)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(err, torch.OutOfMemoryError)


def is_device_fault(err: BaseException) -> bool:
    """A CUDA error that leaves the process's device context unusable (illegal memory
    access, device-side assert, a lost device): only a new process recovers."""
    torch = sys.modules.get("torch")
    accelerator_error = getattr(torch, "AcceleratorError", None) if torch else None
    if accelerator_error is not None and isinstance(err, accelerator_error):
        return True
    return isinstance(err, RuntimeError) and "CUDA error" in str(err)


def release_cached_memory() -> None:
    """Hand the caching allocator's unused blocks back after an out-of-memory batch."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def probe(device: Device) -> None:
    """A tiny round trip through ``device``: raises, or hangs, when the device is wedged."""
    import torch

    value = torch.ones(1, device=str(device)).add_(1).item()
    if value != 2.0:
        raise RuntimeError(f"{device} computed 1 + 1 = {value}")
