"""The Kubernetes API's answers to "who is this token?" and "may they?", briefly cached.

The store asks the API server with its own ServiceAccount token (which the chart allows
``create`` on ``tokenreviews`` and ``subjectaccessreviews``, nothing else): a TokenReview
names the user behind a bearer token, a SubjectAccessReview asks RBAC about one action
(:data:`.access.RULES`). Answers are kept for ``ttl_s`` seconds (a revoked RoleBinding
takes effect within that) in caches of bounded size; only a hash of a token is kept.

In a pod the API server, the store's token and the CA come from the ServiceAccount mount
and ``KUBERNETES_SERVICE_HOST``/``_PORT``; a test or an out-of-cluster store names them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import httpx

from aiservice_functions.event_store.access import API_GROUP, RESOURCE, Identity, Rule

log = logging.getLogger(__name__)

SA_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_TTL_S: Final = 10.0
DEFAULT_MAX_ENTRIES: Final = 4096
TIMEOUT_S: Final = 5.0

K = TypeVar("K")
V = TypeVar("V")


class ReviewUnavailable(RuntimeError):
    """The API server could not be asked (the request is answered 503, never allowed)."""


class TtlCache(Generic[K, V]):
    """A thread-safe map whose entries live ``ttl_s`` seconds, at most ``max_entries``
    of them (the oldest go first)."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float]) -> None:
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if found[0] <= self.clock():
                del self._items[key]
                return None
            return found[1]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (self.clock() + self.ttl_s, value)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)


@dataclass(frozen=True)
class ApiServer:
    """Where the API server is and how the store authenticates to it."""

    url: str
    token_file: Path
    ca_file: Path | None

    @classmethod
    def in_cluster(cls) -> ApiServer:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ValueError(
                "auth mode kubernetes needs the API server: run in a pod (KUBERNETES_SERVICE_HOST) "
                "or pass --kube-api-url"
            )
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", SA_DIR / "token", SA_DIR / "ca.crt")


def _identity(user: dict[str, Any]) -> Identity | None:
    username = user.get("username")
    if not isinstance(username, str) or not username:
        return None
    extra = user.get("extra") or {}
    return Identity(
        username=username,
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in user.get("groups") or ()),
        extra=tuple(sorted((str(k), tuple(str(s) for s in v or ())) for k, v in extra.items())),
    )


class KubeReviews:
    """TokenReview and SubjectAccessReview against one API server, cached."""

    def __init__(
        self,
        server: ApiServer,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        verify: Any = (
            ssl.create_default_context(cafile=str(server.ca_file)) if server.ca_file else True
        )
        self._client = httpx.Client(base_url=server.url, verify=verify, timeout=TIMEOUT_S)
        self._tokens: TtlCache[str, Identity | None] = TtlCache(ttl_s, max_entries, clock)
        self._decisions: TtlCache[tuple[Any, ...], bool] = TtlCache(ttl_s, max_entries, clock)

    def close(self) -> None:
        self._client.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        # Read on every call: the kubelet rotates a projected ServiceAccount token.
        try:
            own = self.server.token_file.read_text(encoding="utf-8").strip()
            response = self._client.post(
                path, json=body, headers={"Authorization": f"Bearer {own}"}
            )
        except (OSError, httpx.HTTPError) as err:
            log.warning("cannot reach the Kubernetes API for %s: %s", path, err)
            raise ReviewUnavailable("cannot reach the Kubernetes API to check access") from None
        if response.status_code != 201 and response.status_code != 200:
            log.warning("the Kubernetes API answered %s to %s", response.status_code, path)
            raise ReviewUnavailable(
                f"the Kubernetes API refused the store's review ({response.status_code})"
            )
        data: dict[str, Any] = response.json()
        return data

    def who(self, token: str) -> Identity | None:
        """The user ``token`` authenticates, or ``None`` (forged, expired, revoked)."""
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        cached = self._tokens.get(key)
        if cached is not None:
            return cached
        status = self._post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
        ).get("status", {})
        found = _identity(status.get("user") or {}) if status.get("authenticated") else None
        if found is not None:  # a refusal is not kept: a token may become valid (clock skew)
            self._tokens.put(key, found)
        return found

    def allowed(self, identity: Identity, rule: Rule, namespace: str) -> bool:
        """Whether RBAC lets ``identity`` do ``rule`` on AIServices in ``namespace``
        (``""``: in every namespace)."""
        key = (identity, rule, namespace)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        attributes = {
            "group": API_GROUP,
            "resource": RESOURCE,
            "verb": rule.verb,
            "subresource": rule.subresource,
            "namespace": namespace,
        }
        spec: dict[str, Any] = {
            "user": identity.username,
            "groups": list(identity.groups),
            "resourceAttributes": attributes,
        }
        if identity.uid:
            spec["uid"] = identity.uid
        if identity.extra:
            spec["extra"] = {k: list(v) for k, v in identity.extra}
        status = self._post(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": spec,
            },
        ).get("status", {})
        allowed = bool(status.get("allowed")) and not status.get("denied")
        self._decisions.put(key, allowed)
        return allowed
