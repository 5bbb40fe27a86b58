"""The contract a function module fulfils, and how an entrypoint is resolved.

Splitting a function into ``decode`` / ``infer`` lets the runtime validate each event
on its own request thread (a bad payload is the sender's fault: 4xx, never retried)
and run ``infer`` on whole micro-batches on the one thread that owns torch. The reply
data comes back per item, so batching never changes an answer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiservice_functions.cloudevents_http import CloudEvent, data_json
from aiservice_functions.models.device import Placement


class Rejected(Exception):
    """The function refuses this event's payload (answered 4xx, not retried).

    Use 422 (the default) for data that parses but is not acceptable, 400 for data
    that cannot be read at all. ``field`` names the offending field when there is one.
    """

    def __init__(self, reason: str, status: int = 422, field: str | None = None) -> None:
        if not 400 <= status < 500:
            raise ValueError(f"a rejection is a 4xx status, not {status}")
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.field = field


@dataclass(frozen=True)
class BatchDefaults:
    """A function's own batching defaults; ``AISVC_BATCH_*`` override them.

    Batching pays for big models (one forward pass serves many events) and costs
    for tiny ones (the HTTP layer is the limit), so each function declares its own.
    """

    enabled: bool = False
    max_size: int = 32
    max_wait_ms: float = 5.0
    cuda_max_size: int | None = None
    """The max batch on a CUDA device (None: ``max_size``): a GPU's forward pass costs
    about the same for 128 texts as for 32, so bigger batches are nearly free there."""

    def default_max_size(self, on_cuda: bool) -> int:
        """The max batch size when ``AISVC_BATCH_MAX_SIZE`` is not set (1: no batching)."""
        if not self.enabled:
            return 1
        return (self.cuda_max_size or self.max_size) if on_cuda else self.max_size


@dataclass(frozen=True)
class ByReference:
    """An output too large for an event: ``infer`` returns it, and the runtime writes
    ``data`` to the claim-check bucket (``spec.function.claimCheck``, under the AIService's
    prefix) and replies with a ``dataref`` to it instead of the bytes."""

    data: bytes
    content_type: str = "application/octet-stream"


def _decode_json(event: CloudEvent) -> Any:
    return data_json(event)


@dataclass(frozen=True)
class Function:
    """What a function module exposes as its ``function`` attribute.

    - ``load(path, version)``: build the model from a local file (the runtime has
      already resolved the model URI and checked its sha256); runs once, in the
      background, before the service reports ready. The model runs on CPU in fp32.
    - ``load_on_device(path, version, placement)``, optional: ``load`` onto the device
      and precision of ``placement`` (``models.device``), chosen by the runtime from
      ``AISVC_DEVICE``/``AISVC_PRECISION``. A function without it runs on CPU only.
    - ``decode(event)``: turn one CloudEvent into one model input; raise
      :class:`Rejected` (or ``InvalidEvent``) for a payload the function cannot take.
      Runs on the request thread; keep it free of torch work.
    - ``infer(model, items)``: one output per input, in order; runs under
      ``torch.inference_mode()`` on a single inference thread when batching. An
      output is the reply event's JSON data, a :class:`ByReference` (large bytes,
      replied by reference), or ``None`` for "no reply". Raising fails the events (500,
      retried by the delivery); the device running out of memory fails them with 503
      (retried too).
    """

    name: str
    load: Callable[[Path, str], Any]
    infer: Callable[[Any, Sequence[Any]], Sequence[Any]]
    decode: Callable[[CloudEvent], Any] = _decode_json
    load_on_device: Callable[[Path, str, Placement], Any] | None = None
    default_model_uri: str | None = None
    batching: BatchDefaults = BatchDefaults()
    uses_torch: bool = True
    """Whether the runtime sets torch threads and inference mode (False skips importing torch)."""


def load_entrypoint(entrypoint: str) -> Function:
    """Import ``package.module`` (attribute ``function``) or ``package.module:attr``."""
    module_name, _, attr = entrypoint.partition(":")
    if not module_name:
        raise ValueError(f"entrypoint {entrypoint!r} names no module")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"entrypoint {entrypoint!r}: cannot import {module_name!r}: {err}"
        ) from err
    obj = getattr(module, attr or "function", None)
    if not isinstance(obj, Function):
        raise ValueError(
            f"entrypoint {entrypoint!r}: {module_name}.{attr or 'function'} must be an "
            "aiservice_functions.runtime.function.Function"
        )
    return obj
