"""A torch-free function for multi-worker tests: replies name the worker process.

``load`` lets the first worker of a container load at once and holds every later one
until the file ``open`` exists in ``$GATED_FN_DIR``, so a test can watch readiness
while one worker is loaded and another is not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiservice_functions.runtime.function import BatchDefaults, Function

GATE_DIR_ENV = "GATED_FN_DIR"


def _load(path: Path, version: str) -> str:
    gate = Path(os.environ[GATE_DIR_ENV])
    try:
        os.close(os.open(gate / "first", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        deadline = time.monotonic() + 120
        while not (gate / "open").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("gate never opened") from None
            time.sleep(0.05)
    return version


def _infer(model: str, items: Sequence[Any]) -> list[Any]:
    return [{"pid": os.getpid(), "model": model} for _ in items]


function = Function(
    name="gated",
    load=_load,
    infer=_infer,
    batching=BatchDefaults(enabled=False),
    uses_torch=False,
)
