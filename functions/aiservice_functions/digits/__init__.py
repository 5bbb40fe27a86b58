"""Handwritten digits: a PNG or JPEG image in, the digit and the model's confidence out.

The image arrives as the event's bytes (binary mode with ``Content-Type: image/png`` or
``image/jpeg``, ``data_base64`` in structured mode, or fetched by the runtime from a
``dataref``) or inline as JSON ``{"image": "<base64>"}``. Any size and colour: it is
turned to grey, shrunk to the 8x8 grid the model was trained on, and inverted when the
ink is dark on a light background. Reply data: ``{"digit": 7, "confidence": 0.98}``.
A payload that is not a PNG or JPEG image is answered 422, naming ``data``.

The model, a small CNN trained on scikit-learn's bundled 8x8 digits by
``scripts/train_digits.py``, ships in this package
(``pkg://aiservice_functions.digits/models/digits-v1.pt``, TorchScript).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiservice_functions.cloudevents_http import CloudEvent
from aiservice_functions.runtime.function import BatchDefaults, Function, Rejected

MODEL_V1 = "pkg://aiservice_functions.digits/models/digits-v1.pt"
EXTRA_FILE = "aisvc.json"
SIDE = 8
MAX_LEVEL = 16.0
"""The data set's pixels run 0 (background) to 16 (ink)."""
MAX_PIXELS = 4096 * 4096
"""Larger images are refused before decoding (a small file can expand to gigabytes)."""
FORMATS = frozenset({"PNG", "JPEG"})


@dataclass(frozen=True)
class DigitsModel:
    module: Any  # torch.jit.ScriptModule
    trained_version: str


def load(path: Path, version: str) -> DigitsModel:
    import torch

    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript, as fraud's models
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    module.eval()
    try:
        meta = json.loads(extra[EXTRA_FILE])
    except ValueError as err:
        raise ValueError(f"{path} is not a digits model: missing {EXTRA_FILE} metadata") from err
    return DigitsModel(module, str(meta.get("version", version)))


def pixels(image_bytes: bytes) -> list[float]:
    """The 64 model inputs (0-16, ink high) of a PNG or JPEG image; :class:`Rejected` else."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image_bytes)) as image:
            if image.format not in FORMATS:
                raise Rejected(f"data is a {image.format} image; send PNG or JPEG", field="data")
            if image.width * image.height > MAX_PIXELS:
                raise Rejected(
                    f"image of {image.width}x{image.height} pixels is too large "
                    f"(at most {MAX_PIXELS} pixels)",
                    field="data",
                )
            grey = image.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX)
            values = list(grey.tobytes())
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise Rejected(f"data is not a readable PNG or JPEG image: {err}", field="data") from None
    if sum(values) / len(values) > 127.5:  # dark ink on light paper: the data set is inverse
        values = [255 - v for v in values]
    return [v * MAX_LEVEL / 255.0 for v in values]


def decode(event: CloudEvent) -> list[float]:
    data = event.get_data()
    if isinstance(data, (bytes, bytearray)):
        return pixels(bytes(data))
    if isinstance(data, dict) and isinstance(data.get("image"), str):
        try:
            raw = base64.b64decode(data["image"], validate=True)
        except (binascii.Error, ValueError):
            raise Rejected("image must be base64", field="image") from None
        return pixels(raw)
    raise Rejected(
        'send a PNG or JPEG image as the event data, or JSON {"image": "<base64>"}',
        field="data",
    )


def infer(model: DigitsModel, items: Sequence[list[float]]) -> list[dict[str, Any]]:
    import torch

    x = torch.tensor(items, dtype=torch.float32).view(len(items), 1, SIDE, SIDE)
    probs = torch.softmax(model.module(x), dim=1)
    confidence, digit = probs.max(dim=1)
    return [
        {"digit": int(d), "confidence": round(float(c), 6)}
        for d, c in zip(digit.tolist(), confidence.tolist(), strict=True)
    ]


function = Function(
    name="digits",
    load=load,
    decode=decode,
    infer=infer,
    default_model_uri=MODEL_V1,
    batching=BatchDefaults(enabled=True, max_size=32, max_wait_ms=2.0),
)
