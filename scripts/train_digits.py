#!/usr/bin/env python3
"""Train the digits CNN on scikit-learn's bundled 8x8 digits and write it into the package
(deterministic; needs scikit-learn, which the served function does not)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from aiservice_functions.digits.train import build

OUT = Path(__file__).resolve().parent.parent / "functions/aiservice_functions/digits/models"

if __name__ == "__main__":
    started = time.perf_counter()
    out = (Path(sys.argv[1]) if len(sys.argv) > 1 else OUT) / "digits-v1.pt"
    accuracy = build(out)
    print(f"digits-v1: held-out accuracy {accuracy:.4f} ({out.stat().st_size} bytes)")
    print(f"trained in {time.perf_counter() - started:.1f}s")
