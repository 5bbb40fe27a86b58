"""torch threading and inference mode, set on purpose.

One intra-op thread per process is the default: on shared CPUs torch with two
threads collapsed when another process held a core, while one thread stayed stable;
scale with processes (pods) instead. ``AISVC_TORCH_THREADS`` overrides it (read by
``runtime.config``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

DEFAULT_TORCH_THREADS = 1


def configure_torch(threads: int) -> None:
    """Import torch and fix its thread pools (call before the model is loaded)."""
    # Threads created later (the inference thread, request threads) start from the
    # OpenMP default, so set that too while torch is not yet imported.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    # Inter-op parallelism only helps graphs with independent branches; the pool can
    # be sized only once per process, before first use.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


@contextlib.contextmanager
def inference_context() -> Iterator[None]:
    """``torch.inference_mode()`` when torch is in use, nothing otherwise."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    with torch.inference_mode():
        yield
