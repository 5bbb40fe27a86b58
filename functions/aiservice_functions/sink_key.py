"""Loading the ingest-credential key (see :func:`aiservice_functions.contract.sink_credential`).

The operator, ``aisvc render`` and the event store read it the same way: an explicit value
or file, else ``AISVC_EVENT_STORE_SINK_KEY_FILE``, else ``AISVC_EVENT_STORE_SINK_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from aiservice_functions import contract


def load_sink_key(
    value: str | None = None,
    key_file: str | None = None,
    env: Mapping[str, str] | None = None,
) -> bytes | None:
    """The configured key, or ``None``; a key shorter than 16 bytes raises ``ValueError``."""
    environ = os.environ if env is None else env
    text: str | None = value
    source = "the sink key"
    if not text:
        path = key_file or environ.get(contract.ENV_EVENT_STORE_SINK_KEY_FILE, "")
        if path:
            text = Path(path).read_text(encoding="utf-8")
            source = f"sink key file {path}"
        else:
            text = environ.get(contract.ENV_EVENT_STORE_SINK_KEY, "")
            source = contract.ENV_EVENT_STORE_SINK_KEY
    key = (text or "").strip().encode("utf-8")
    if not key:
        if text is not None and source.startswith("sink key file"):
            raise ValueError(f"{source} is empty")
        return None
    if len(key) < contract.MIN_SINK_KEY_BYTES:
        raise ValueError(f"{source} must be at least {contract.MIN_SINK_KEY_BYTES} bytes")
    return key
