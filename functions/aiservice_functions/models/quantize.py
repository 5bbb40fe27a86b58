"""Optional int8 dynamic quantization of the text encoder (``AISVC_QUANTIZE``).

Dynamic quantization keeps every ``nn.Linear`` weight as int8 and quantizes the
activations batch by batch, so a CPU forward pass does integer matrix products; the
embeddings move a little, and so do a few answers (``benchmarks/README.md``, *int8*,
has the accuracy change next to the speed-up). As the activation scale comes from the
whole batch, an int8 answer can depend on the other texts in its batch. Weights are
quantized per output channel: per tensor (torch's default) moved the embeddings further
(lowest cosine to fp32 0.87 against 0.95) and cost two points of held-out accuracy.

torch 2.13 still ships ``torch.ao.quantization.quantize_dynamic`` and its fbgemm/x86
int8 kernels, but marks the module deprecated in favour of the separate torchao
package; its deprecation warnings are silenced for this one call, nothing else.

Parsing stays free of torch, so the runtime can refuse a bad value at start-up.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from aiservice_functions import contract

if TYPE_CHECKING:
    import torch

Quantize = Literal["none", "int8"]
QUANTIZE_MODES: tuple[Quantize, ...] = ("none", "int8")
DEFAULT_QUANTIZE: Quantize = "none"
"""Off: int8 lost more than half a point of held-out accuracy with three of the four
shipped heads, and its answers depend on the batch."""


class QuantizeError(ValueError):
    """The quantization setting names no supported mode."""


def parse_quantize(raw: str | None, setting: str = contract.ENV_QUANTIZE) -> Quantize:
    """``none`` (also empty) or ``int8``, case-insensitive; anything else names ``setting``."""
    value = (raw or "").strip().lower() or DEFAULT_QUANTIZE
    for mode in QUANTIZE_MODES:
        if value == mode:
            return mode
    raise QuantizeError(f"{setting} must be one of {', '.join(QUANTIZE_MODES)}; got {raw!r}")


def quantize_from_env(env: Mapping[str, str] | None = None) -> Quantize:
    """The process's setting, from ``AISVC_QUANTIZE``."""
    return parse_quantize((os.environ if env is None else env).get(contract.ENV_QUANTIZE))


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its ``nn.Linear`` layers swapped for int8 dynamically quantized ones."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_\w+.* are deprecated")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # In place: a copy would hold a second fp32 model in memory while it is made.
        return quantize_dynamic(
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True
        )


def quantized_linear_layers(model: torch.nn.Module) -> int:
    """How many of ``model``'s modules are int8 dynamically quantized linear layers."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return sum(isinstance(m, DynamicLinear) for m in model.modules())
