"""Topic routing of reviews: MiniLM embeddings (shared with sentiment) and a linear head.

Entrypoint ``aiservice_functions.topic``; heads ``pkg://aiservice_functions.topic/
models/topic-v1.pt`` and ``.../topic-v2.pt`` (see this package's README.md).

``function`` is imported on first access so that ``data``, ``head`` and ``model`` can be
used without the CloudEvents runtime (the training script).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "function":
        from aiservice_functions.topic.hooks import function

        return function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
