"""Who a request is and what it may do: the decision rules, with no I/O.

Two ways to authenticate (``auth.mode`` in the chart):

- ``token``: the shared bearer token may do everything everywhere, the read token may read
  everywhere (:mod:`.auth` compares them);
- ``kubernetes``: the caller's own Kubernetes token, checked by the cluster
  (:mod:`.kube_auth`), and every action asked of RBAC for the namespace it concerns
  (:data:`RULES`): reading an AIService's records is ``get aiservices``, replaying its dead
  letters ``create aiservices/replay``, logging a reprocessing run ``create
  aiservices/reprocess``.

Lists are filtered rather than refused: :meth:`Caller.readable` narrows a query to the
namespaces the caller may read (``None``: every namespace).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

Action = Literal["read", "replay", "reprocess"]

API_GROUP: Final = "aiservice.dev"
RESOURCE: Final = "aiservices"


@dataclass(frozen=True)
class Rule:
    """The RBAC request one action makes (on ``aiservices`` of ``aiservice.dev``)."""

    verb: str
    subresource: str = ""


RULES: Final[dict[Action, Rule]] = {
    "read": Rule("get"),
    "replay": Rule("create", "replay"),
    "reprocess": Rule("create", "reprocess"),
}


@dataclass(frozen=True)
class Identity:
    """A user as the cluster's TokenReview names them (what a SubjectAccessReview needs)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "username": self.username,
            "uid": self.uid,
            "groups": list(self.groups),
            "extra": {k: list(v) for k, v in self.extra},
        }

    @classmethod
    def from_json(cls, data: object) -> Identity | None:
        """The identity in ``data`` (a session cookie's), or ``None`` when malformed."""
        if not isinstance(data, dict):
            return None
        username, uid = data.get("username"), data.get("uid", "")
        groups, extra = data.get("groups", []), data.get("extra", {})
        if not isinstance(username, str) or not username or not isinstance(uid, str):
            return None
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            return None
        if not isinstance(extra, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in extra.values()
        ):
            return None
        return cls(
            username,
            uid,
            tuple(groups),
            tuple(sorted((str(k), tuple(v)) for k, v in extra.items())),
        )


Check = Callable[[Identity, Rule, str], bool]
"""Whether ``identity`` may do ``rule`` in a namespace (``""``: in every namespace)."""


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request.

    ``identity`` is set in ``kubernetes`` mode and every permission is asked of ``check``;
    in ``token`` mode ``scope`` says what the shared token allows, in every namespace.
    """

    name: str
    """Who, for audit logs: the Kubernetes username, or which shared token."""
    identity: Identity | None = None
    scope: Literal["read", "replay"] = "read"
    check: Check | None = field(default=None, compare=False, repr=False)

    def may(self, action: Action, namespace: str) -> bool:
        """Whether this caller may do ``action`` on AIServices of ``namespace``."""
        if self.identity is None or self.check is None:
            return action == "read" or self.scope == "replay"
        return self.check(self.identity, RULES[action], namespace)

    def everywhere(self, action: Action) -> bool:
        """Whether ``action`` is allowed in every namespace (a ClusterRoleBinding)."""
        return self.may(action, "")

    def permitted(
        self, action: Action, namespaces: Callable[[], Iterable[str]]
    ) -> frozenset[str] | None:
        """The namespaces among ``namespaces()`` (only asked for when needed) where
        ``action`` is allowed; ``None`` when it is allowed in every namespace."""
        if self.everywhere(action):
            return None
        return frozenset(ns for ns in set(namespaces()) if ns and self.may(action, ns))

    def readable(self, namespaces: Callable[[], Iterable[str]]) -> frozenset[str] | None:
        """The namespaces whose records this caller may see (``None``: all)."""
        return self.permitted("read", namespaces)


def shown(namespace: str, readable: frozenset[str] | None) -> bool:
    """Whether a record of ``namespace`` is shown to a caller who may read ``readable``."""
    return readable is None or namespace in readable


TOKEN_CALLER: Final = Caller("token", scope="replay")
READ_TOKEN_CALLER: Final = Caller("read-token", scope="read")
OPEN_CALLER: Final = Caller("unauthenticated", scope="replay")
