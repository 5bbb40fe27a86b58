"""Bearer-token auth for the query and replay API (ingest stays open inside the cluster).

The token comes from ``--token-file`` / ``AISVC_EVENT_STORE_TOKEN_FILE`` (the chart mounts
it from a Secret) or ``AISVC_EVENT_STORE_TOKEN``. Without a token the query API refuses
every request unless the server was started with ``--allow-unauthenticated``.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from aiservice_functions import contract


def load_token(token: str | None = None, token_file: str | None = None) -> str | None:
    """The configured token: explicit value, then file, then the environment."""
    if token:
        return token.strip() or None
    path = token_file or os.environ.get(contract.ENV_EVENT_STORE_TOKEN_FILE)
    if path:
        value = Path(path).read_text(encoding="utf-8").strip()
        if not value:
            raise ValueError(f"token file {path} is empty")
        return value
    return os.environ.get(contract.ENV_EVENT_STORE_TOKEN, "").strip() or None


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


def check(expected: str | None, allow_unauthenticated: bool, header: str | None) -> Refusal | None:
    """``None`` when the request may pass; else why not (401: no/bad header, 403: wrong)."""
    if expected is None:
        if allow_unauthenticated:
            return None
        return Refusal(403, "query API disabled: the server has no token configured")
    if not header:
        return Refusal(401, "missing Authorization: Bearer <token>")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return Refusal(401, "Authorization must be 'Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8")):
        return Refusal(403, "token not accepted")
    return None
