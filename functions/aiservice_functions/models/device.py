"""Which device a model runs on, and in which precision (``AISVC_DEVICE``, ``AISVC_PRECISION``).

``auto`` (the default) is CUDA when torch sees a device, else CPU: a pod given a GPU uses it
without any other setting. ``cuda`` or ``cuda:N`` asked for where torch sees no such device
is refused at start, never answered on CPU instead: a revision that pays for a GPU and
silently runs on the CPU is a failure nobody would notice.

Precision defaults to ``fp32`` on CPU (half precision is slower there) and ``fp16`` on
CUDA (tensor cores, half the memory; in fp16 the shipped heads changed no label on their
held-out sets, ``benchmarks/README.md``, *GPU*).

Everything here is free of torch: the facts it decides from (:class:`CudaFacts`) are read
by ``accelerator`` in the process that serves, and passed in, so every rule is testable on
a machine without a GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from aiservice_functions import contract

DeviceKind = Literal["cpu", "cuda"]
RequestKind = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16")
DEVICE_SETTINGS = "auto, cpu, cuda or cuda:N"

_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d{1,3}))?$")


class DeviceError(ValueError):
    """A device or precision setting that cannot be honoured here; the message says why."""


@dataclass(frozen=True)
class DeviceRequest:
    """What ``AISVC_DEVICE`` asks for: ``auto``, ``cpu``, or ``cuda`` (``index`` None: any)."""

    kind: RequestKind = "auto"
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


@dataclass(frozen=True)
class Device:
    """A resolved device, as torch names it: ``cpu`` or ``cuda:N``."""

    kind: DeviceKind = "cpu"
    index: int | None = None

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index or 0}"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"


@dataclass(frozen=True)
class CudaFacts:
    """What torch reports about CUDA in this process."""

    built: bool = False
    """The installed torch is a CUDA build (``torch.version.cuda`` is set)."""
    count: int = 0
    """Devices it sees (``torch.cuda.device_count()``)."""


NO_CUDA = CudaFacts()


@dataclass(frozen=True)
class Placement:
    """Where a model runs and in which precision, as logged and exported at start."""

    device: Device = Device()
    precision: Precision = "fp32"

    def __str__(self) -> str:
        return f"{self.device} {self.precision}"


CPU_FP32 = Placement()
AUTO = DeviceRequest()


def parse_device(raw: str | None, setting: str = contract.ENV_DEVICE) -> DeviceRequest:
    """``auto`` (also empty), ``cpu``, ``cuda`` or ``cuda:N``; anything else names ``setting``."""
    value = (raw or "").strip().lower() or "auto"
    match = _DEVICE.match(value)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(f"{setting} must be {DEVICE_SETTINGS}; got {raw!r}")
    kinds: dict[str, RequestKind] = {"auto": "auto", "cpu": "cpu", "cuda": "cuda"}
    index = match.group(2)
    return DeviceRequest(kinds[match.group(1)], int(index) if index is not None else None)


def parse_precision(raw: str | None, setting: str = contract.ENV_PRECISION) -> Precision | None:
    """``fp32``, ``fp16`` or ``bf16`` (case-insensitive); empty means the device's default."""
    value = (raw or "").strip().lower()
    if not value:
        return None
    for precision in PRECISIONS:
        if value == precision:
            return precision
    raise DeviceError(f"{setting} must be one of {', '.join(PRECISIONS)}; got {raw!r}")


def default_precision(device: Device) -> Precision:
    """fp16 on CUDA (tensor cores, half the memory), fp32 on CPU (half precision is slower)."""
    return "fp16" if device.is_cuda else "fp32"


def resolve_device(request: DeviceRequest, cuda: CudaFacts) -> Device:
    """The device ``request`` names on a machine with ``cuda``; :class:`DeviceError` if none."""
    if request.kind == "cpu":
        return Device("cpu")
    if request.kind == "auto":
        return Device("cuda", 0) if cuda.count > 0 else Device("cpu")
    if not cuda.built:
        raise DeviceError(
            f"{contract.ENV_DEVICE}={request} but this torch is a CPU-only build: "
            "use the function image tagged <version>-cuda"
        )
    if cuda.count == 0:
        raise DeviceError(
            f"{contract.ENV_DEVICE}={request} but torch sees no CUDA device: is the pod "
            "given nvidia.com/gpu and the nvidia runtime class, and is the driver loaded?"
        )
    index = request.index or 0
    if index >= cuda.count:
        raise DeviceError(
            f"{contract.ENV_DEVICE}={request} but torch sees {cuda.count} CUDA device(s) "
            f"(cuda:0 to cuda:{cuda.count - 1})"
        )
    return Device("cuda", index)


def resolve_placement(
    request: DeviceRequest,
    precision: Precision | None,
    cuda: CudaFacts,
    *,
    on_device: bool = True,
    function: str = "function",
) -> Placement:
    """The placement of a process's model; ``on_device`` False: the function runs on CPU
    only (it takes no placement), so ``cuda`` asked for explicitly is refused."""
    if not on_device:
        if request.kind == "cuda":
            raise DeviceError(
                f"{contract.ENV_DEVICE}={request}: the {function} function runs on CPU only"
            )
        if precision not in (None, "fp32"):
            raise DeviceError(
                f"{contract.ENV_PRECISION}={precision}: the {function} function runs in fp32 only"
            )
        return CPU_FP32
    device = resolve_device(request, cuda)
    return Placement(device, precision or default_precision(device))


def format_bytes(size: float) -> str:
    """``1.5 GiB``: the unit GPU memory is sold in."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def too_large(needed: int, free: int, total: int, placement: Placement) -> DeviceError:
    """The start failure of a model that does not fit, naming the sizes."""
    return DeviceError(
        f"the model needs {format_bytes(needed)} on {placement.device} in "
        f"{placement.precision} but only {format_bytes(free)} of {format_bytes(total)} "
        "is free: use a GPU with more memory, a smaller precision, or fewer workers"
    )


def check_fits(needed: int, free: int, total: int, placement: Placement) -> None:
    """:func:`too_large` when ``needed`` bytes do not fit in ``free``."""
    if needed > free:
        raise too_large(needed, free, total, placement)
