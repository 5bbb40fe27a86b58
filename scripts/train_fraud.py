#!/usr/bin/env python3
"""Train the two fraud models and write them into the fraud package (deterministic)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from aiservice_functions.fraud.train import build_all

OUT = Path(__file__).resolve().parent.parent / "functions/aiservice_functions/fraud/models"

if __name__ == "__main__":
    started = time.perf_counter()
    aucs = build_all(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
    for version, score in aucs.items():
        print(f"fraud-{version}: held-out AUC {score:.4f}")
    print(f"trained in {time.perf_counter() - started:.1f}s")
