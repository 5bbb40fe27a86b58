"""The console's session: who is signed in (the token's scope) and the CSRF token.

The session is a signed cookie, so any worker process of the store can read it. It never
holds the bearer token itself: only the scope the token granted, a random CSRF token and
a random session id, which signing out records on the database (:mod:`.signouts`) so that
a copy of the cookie is refused afterwards. The signing key is derived from the
configured tokens, so changing a token signs everyone out; without tokens
(``--allow-unauthenticated``, local runs) the key is random per process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from itsdangerous import BadSignature, URLSafeTimedSerializer

from aiservice_functions.event_store import auth

COOKIE: Final = "aisvc_console"
MAX_AGE_S: Final = 12 * 3600
"""A session lasts a working shift; then the token is asked for again."""


@dataclass(frozen=True)
class Access:
    """How the console lets people in: the API's own token(s) and the open mode."""

    token: str | None
    read_token: str | None = None
    allow_unauthenticated: bool = False

    @property
    def open(self) -> bool:
        """No token configured and the store runs unauthenticated: everyone may replay."""
        return self.token is None and self.allow_unauthenticated

    @property
    def disabled(self) -> bool:
        return self.token is None and not self.allow_unauthenticated

    def scope_of(self, given: str) -> auth.Scope | None:
        return auth.scope_of(given, self.token, self.read_token)


@dataclass(frozen=True)
class Session:
    scope: auth.Scope | None
    """``None``: not signed in yet (the login form's CSRF token is all it carries)."""
    csrf: str
    id: str
    """Random per sign-in: what signing out revokes."""

    @property
    def can_replay(self) -> bool:
        return self.scope == "replay"


def new_session(scope: auth.Scope | None) -> Session:
    return Session(scope, secrets.token_urlsafe(32), secrets.token_urlsafe(16))


class Sessions:
    """Signs and reads session cookies with a key bound to the configured tokens."""

    def __init__(self, access: Access) -> None:
        if access.token is None and access.read_token is None:
            key = secrets.token_bytes(32)
        else:
            material = f"{access.token or ''}\0{access.read_token or ''}".encode()
            key = hmac.new(b"aisvc-console-session", material, hashlib.sha256).digest()
        self._serializer = URLSafeTimedSerializer(key, salt="aisvc-console")

    def dump(self, session: Session) -> str:
        return self._serializer.dumps({"s": session.scope, "c": session.csrf, "i": session.id})

    def load(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``, or ``None`` when absent, forged or expired."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=MAX_AGE_S)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        scope, csrf, session_id = data.get("s"), data.get("c"), data.get("i")
        if scope not in (None, "read", "replay") or not isinstance(csrf, str) or not csrf:
            return None
        if not isinstance(session_id, str) or not session_id:
            return None
        return Session(scope, csrf, session_id)


def csrf_ok(session: Session | None, given: str | None) -> bool:
    """The request carries its session's CSRF token (constant-time comparison)."""
    if session is None or not given:
        return False
    return hmac.compare_digest(session.csrf.encode(), given.encode())
