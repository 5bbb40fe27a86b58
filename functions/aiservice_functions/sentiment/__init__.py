"""Sentiment of short texts: all-MiniLM-L6-v2 embeddings and a shipped linear head.

Entrypoint ``aiservice_functions.sentiment``; heads ``pkg://aiservice_functions.sentiment/
models/head-v1.pt`` and ``.../head-v2.pt`` (see this package's README.md).

``function`` is imported on first access so that ``data``, ``encoder``, ``head`` and
``model`` can be used without the CloudEvents runtime (training script, and servers
that bring their own HTTP layer, such as the serving benchmark's baseline).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "function":
        from aiservice_functions.sentiment.hooks import function

        return function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
