"""Bearer-token auth for the query and replay API (ingest stays open inside the cluster).

Two modes (:class:`Authenticator`): ``kubernetes``, where the bearer token is the
caller's own Kubernetes token (:mod:`.kube_auth` asks the cluster who it is and what
they may do), and ``token``, the shared tokens described here.

The token comes from ``--token-file`` / ``AISVC_EVENT_STORE_TOKEN_FILE`` (the chart mounts
it from a Secret) or ``AISVC_EVENT_STORE_TOKEN``. Without a token the query API refuses
every request unless the server was started with ``--allow-unauthenticated``.

A second, optional read token (``--read-token-file`` / ``AISVC_EVENT_STORE_READ_TOKEN_FILE``)
lists and shows records but cannot replay: for people who only need to look (the console
is read-only with it), since a replay token can send events into the cluster.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from aiservice_functions import contract
from aiservice_functions.event_store.access import (
    OPEN_CALLER,
    READ_TOKEN_CALLER,
    TOKEN_CALLER,
    Caller,
)
from aiservice_functions.event_store.kube_auth import KubeReviews, ReviewUnavailable

Mode = Literal["token", "kubernetes"]
MODES: Final[tuple[Mode, ...]] = ("kubernetes", "token")
ENV_AUTH_MODE: Final = "AISVC_EVENT_STORE_AUTH_MODE"

Scope = Literal["read", "replay"]
"""What a token allows: ``read`` lists and shows; ``replay`` also replays."""

ENV_READ_TOKEN_FILE: Final = "AISVC_EVENT_STORE_READ_TOKEN_FILE"


def load_read_token(token_file: str | None = None) -> str | None:
    """The optional read-only token: ``token_file``, else ``$AISVC_EVENT_STORE_READ_TOKEN_FILE``."""
    path = token_file or os.environ.get(ENV_READ_TOKEN_FILE)
    if not path:
        return None
    value = Path(path).read_text(encoding="utf-8").strip()
    if not value:
        raise ValueError(f"read token file {path} is empty")
    return value


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


def scope_of(given: str, expected: str | None, read_token: str | None = None) -> Scope | None:
    """The scope ``given`` grants, or ``None`` when it is no configured token (constant time)."""
    value = given.strip().encode("utf-8")
    granted: Scope | None = None
    # Both comparisons always run, so timing tells nothing about which token matched.
    if expected is not None and hmac.compare_digest(value, expected.encode("utf-8")):
        granted = "replay"
    if read_token is not None and hmac.compare_digest(value, read_token.encode("utf-8")):
        granted = granted or "read"
    return granted


def check(
    expected: str | None,
    allow_unauthenticated: bool,
    header: str | None,
    *,
    read_token: str | None = None,
    need: Scope = "read",
) -> Refusal | None:
    """``None`` when the request may pass; else why not (401: no/bad header, 403: wrong
    token, or a read token where ``need`` is ``replay``)."""
    if expected is None:
        if allow_unauthenticated:
            return None
        return Refusal(403, "query API disabled: the server has no token configured")
    if not header:
        return Refusal(401, "missing Authorization: Bearer <token>")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return Refusal(401, "Authorization must be 'Bearer <token>'")
    granted = scope_of(given, expected, read_token)
    if granted is None:
        return Refusal(403, "token not accepted")
    if need == "replay" and granted != "replay":
        return Refusal(403, "this token allows reading only, not replay")
    return None


def bearer(header: str | None) -> str | Refusal:
    """The token of an ``Authorization: Bearer`` header, or the 401 that refuses it."""
    if not header:
        return Refusal(401, "missing Authorization: Bearer <token>")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return Refusal(401, "Authorization must be 'Bearer <token>'")
    return given.strip()


@dataclass(frozen=True)
class Authenticator:
    """Who a request is, in the store's mode: :meth:`caller`."""

    token: str | None = None
    read_token: str | None = None
    allow_unauthenticated: bool = False
    reviews: KubeReviews | None = None
    """Set: ``kubernetes`` mode (the shared tokens are then not accepted)."""

    @property
    def mode(self) -> Mode:
        return "kubernetes" if self.reviews is not None else "token"

    def caller(self, header: str | None, need: Scope = "read") -> Caller | Refusal:
        """The caller ``header`` authenticates, or why not (401 unknown, 403 a token
        without ``need``, 503 when the cluster cannot be asked)."""
        if self.reviews is None:
            refusal = check(
                self.token,
                self.allow_unauthenticated,
                header,
                read_token=self.read_token,
                need=need,
            )
            if refusal is not None:
                return refusal
            if self.token is None:
                return OPEN_CALLER
            given = bearer(header)
            assert isinstance(given, str)  # check() refused every other header
            return TOKEN_CALLER if scope_of(given, self.token) else READ_TOKEN_CALLER
        return self.kube_caller(bearer(header))

    def kube_caller(self, given: str | Refusal) -> Caller | Refusal:
        """The Kubernetes user of token ``given`` (``kubernetes`` mode)."""
        if isinstance(given, Refusal):
            return given
        assert self.reviews is not None
        try:
            identity = self.reviews.who(given)
        except ReviewUnavailable as err:
            return Refusal(503, str(err))
        if identity is None:
            return Refusal(401, "token not accepted by the cluster (expired, revoked or forged)")
        return Caller(identity.username, identity, check=self.reviews.allowed)
