"""The console's session: who is signed in and the CSRF token.

The session is a signed cookie, so any worker process of the store can read it. It never
holds the bearer token itself: only what the token granted (a shared token's scope, or
in ``kubernetes`` mode the Kubernetes identity the cluster named for it), a random CSRF
token and a random session id, which signing out records on the database
(:mod:`.signouts`) so that a copy of the cookie is refused afterwards. RBAC is asked on
every page, so a revoked RoleBinding takes effect at once; a Kubernetes session lasts
at most :data:`KUBE_MAX_AGE_S`, as a ``kubectl create token`` token does by default.

The signing key is derived from the configured tokens (``token`` mode) or from the sink
key (``kubernetes`` mode), so changing them signs everyone out; without either
(``--allow-unauthenticated``, local runs) the key is random per process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final

from itsdangerous import BadSignature, URLSafeTimedSerializer

from aiservice_functions.event_store import auth
from aiservice_functions.event_store.access import (
    OPEN_CALLER,
    READ_TOKEN_CALLER,
    TOKEN_CALLER,
    Caller,
    Identity,
)

COOKIE: Final = "aisvc_console"
MAX_AGE_S: Final = 12 * 3600
"""A session lasts a working shift; then the token is asked for again."""
KUBE_MAX_AGE_S: Final = 3600
"""A session signed in with a Kubernetes token lasts an hour."""


@dataclass(frozen=True)
class Access:
    """How the console lets people in: the store's :class:`~.auth.Authenticator` (its
    mode and tokens) and, in ``kubernetes`` mode, the key its cookies are signed with."""

    authenticator: auth.Authenticator
    session_key: bytes | None = None

    @property
    def kubernetes(self) -> bool:
        return self.authenticator.mode == "kubernetes"

    @property
    def open(self) -> bool:
        """No token configured and the store runs unauthenticated: everyone may replay."""
        a = self.authenticator
        return not self.kubernetes and a.token is None and a.allow_unauthenticated

    @property
    def disabled(self) -> bool:
        a = self.authenticator
        return not self.kubernetes and a.token is None and not a.allow_unauthenticated

    def sign_in(self, given: str) -> Session | str:
        """A new session for the token ``given``, or why it is refused."""
        if self.kubernetes:
            found = self.authenticator.kube_caller(auth.bearer(f"Bearer {given.strip()}"))
            if isinstance(found, auth.Refusal):
                if found.status == 503:
                    return "The cluster cannot be asked about this token now; try again."
                return "That token is not accepted by the cluster."
            return new_session("replay", found.identity)
        scope = auth.scope_of(given, self.authenticator.token, self.authenticator.read_token)
        return new_session(scope) if scope is not None else "That token is not accepted here."

    def caller(self, session: Session) -> Caller:
        """Who a signed-in session acts as (RBAC asked afresh on every request)."""
        if session.identity is not None:
            reviews = self.authenticator.reviews
            check = reviews.allowed if reviews is not None else None
            return Caller(session.identity.username, session.identity, check=check)
        if self.open:
            return OPEN_CALLER
        return TOKEN_CALLER if session.scope == "replay" else READ_TOKEN_CALLER


@dataclass(frozen=True)
class Session:
    scope: auth.Scope | None
    """``None``: not signed in yet (the login form's CSRF token is all it carries)."""
    csrf: str
    id: str
    """Random per sign-in: what signing out revokes."""
    identity: Identity | None = None
    """The Kubernetes user signed in (``kubernetes`` mode)."""

    @property
    def can_replay(self) -> bool:
        """Whether replay is offered (in ``kubernetes`` mode RBAC decides per namespace)."""
        return self.scope == "replay"

    @property
    def who(self) -> str | None:
        """The name shown as signed in."""
        return self.identity.username if self.identity is not None else None


def new_session(scope: auth.Scope | None, identity: Identity | None = None) -> Session:
    return Session(scope, secrets.token_urlsafe(32), secrets.token_urlsafe(16), identity)


class Sessions:
    """Signs and reads session cookies with a key bound to the configured tokens."""

    def __init__(self, access: Access) -> None:
        a = access.authenticator
        if access.kubernetes and access.session_key:
            key = hmac.new(b"aisvc-console-session", access.session_key, hashlib.sha256).digest()
        elif access.kubernetes or (a.token is None and a.read_token is None):
            key = secrets.token_bytes(32)
        else:
            material = f"{a.token or ''}\0{a.read_token or ''}".encode()
            key = hmac.new(b"aisvc-console-session", material, hashlib.sha256).digest()
        self._serializer = URLSafeTimedSerializer(key, salt="aisvc-console")
        self._kubernetes = access.kubernetes

    def dump(self, session: Session) -> str:
        data: dict[str, object] = {"s": session.scope, "c": session.csrf, "i": session.id}
        if session.identity is not None:
            data["u"] = session.identity.to_json()
        return self._serializer.dumps(data)

    def load(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or ``None`` when absent, forged or expired."""
        if not cookie:
            return None
        try:
            data, signed_at = self._serializer.loads(
                cookie, max_age=MAX_AGE_S, return_timestamp=True
            )
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        scope, csrf, session_id = data.get("s"), data.get("c"), data.get("i")
        if scope not in (None, "read", "replay") or not isinstance(csrf, str) or not csrf:
            return None
        if not isinstance(session_id, str) or not session_id:
            return None
        identity = None
        if "u" in data:
            identity = Identity.from_json(data["u"])
            if identity is None or time.time() - signed_at.timestamp() > KUBE_MAX_AGE_S:
                return None
        if scope is not None and (identity is not None) != self._kubernetes:
            return None  # signed in under the other auth mode
        return Session(scope, csrf, session_id, identity)


def csrf_ok(session: Session | None, given: str | None) -> bool:
    """The request carries its session's CSRF token (constant-time comparison)."""
    if session is None or not given:
        return False
    return hmac.compare_digest(session.csrf.encode(), given.encode())
