"""Held-out digits as image files, for the digits function's tests and the claim-check's."""

from __future__ import annotations

import io

import numpy as np
from aiservice_functions.digits.train import split


def held_out(count: int) -> list[tuple[np.ndarray, int]]:
    """The first ``count`` held-out images (8x8, 0-16) with their labels."""
    _, x_test, _, y_test = split()
    return [(x_test[i], int(y_test[i])) for i in range(count)]


def as_image(pixels: np.ndarray, fmt: str = "PNG", scale: int = 4, inverted: bool = False) -> bytes:
    """``pixels`` as an image file of ``fmt``, ``scale`` times larger; ``inverted``: dark ink
    on white, as a photo of paper would be."""
    from PIL import Image

    grey = np.clip(np.rint(pixels * 255.0 / 16.0), 0, 255).astype(np.uint8)
    if inverted:
        grey = 255 - grey
    image = Image.fromarray(grey, mode="L").resize((8 * scale, 8 * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
