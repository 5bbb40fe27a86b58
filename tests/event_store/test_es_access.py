"""The access rules with no cluster: which namespaces a caller may read or replay in, the
review cache's expiry and bound, shared-token callers, and console cookies that carry a
Kubernetes identity (the cluster tier runs the same against the real API server)."""

from __future__ import annotations

from aiservice_functions.event_store import auth
from aiservice_functions.event_store.access import RULES, Caller, Identity, Rule, shown
from aiservice_functions.event_store.console.session import Access, Sessions, new_session
from aiservice_functions.event_store.kube_auth import TtlCache

ALICE = Identity("alice", "u-1", ("team-a",), (("scopes", ("x",)),))


def _caller(grants: set[tuple[str, str]]) -> tuple[Caller, list[tuple[Rule, str]]]:
    asked: list[tuple[Rule, str]] = []

    def check(identity: Identity, rule: Rule, namespace: str) -> bool:
        asked.append((rule, namespace))
        return (rule.verb + "/" + rule.subresource, namespace) in grants

    return Caller("alice", ALICE, check=check), asked


def test_a_caller_reads_and_replays_only_where_rbac_allows() -> None:
    caller, asked = _caller({("get/", "a"), ("create/replay", "a"), ("get/", "c")})
    assert caller.readable(lambda: ["a", "b", "c", ""]) == frozenset({"a", "c"})
    assert caller.permitted("replay", lambda: ["a", "b", "c"]) == frozenset({"a"})
    assert not caller.may("reprocess", "a")
    assert (RULES["read"], "") in asked  # every namespace is asked first
    assert RULES["replay"] == Rule("create", "replay")


def test_a_cluster_wide_reader_is_not_narrowed_and_namespaces_are_not_listed() -> None:
    caller, _ = _caller({("get/", "")})

    def never() -> list[str]:
        raise AssertionError("the namespaces are not needed")

    assert caller.readable(never) is None
    assert shown("anything", None) and not shown("b", frozenset({"a"}))


def test_shared_token_callers_keep_todays_rights() -> None:
    authenticator = auth.Authenticator("full", "look")
    full = authenticator.caller("Bearer full", need="replay")
    look = authenticator.caller("Bearer look")
    assert isinstance(full, Caller) and isinstance(look, Caller)
    assert full.may("replay", "x") and full.may("reprocess", "x") and full.readable(list) is None
    assert look.may("read", "x") and not look.may("replay", "x")
    refused = authenticator.caller("Bearer look", need="replay")
    assert refused == auth.Refusal(403, "this token allows reading only, not replay")
    assert authenticator.caller("Bearer nope") == auth.Refusal(403, "token not accepted")
    assert isinstance(authenticator.caller(None), auth.Refusal)


def test_the_review_cache_expires_and_is_bounded() -> None:
    now = [0.0]
    cache: TtlCache[str, bool] = TtlCache(10.0, 2, lambda: now[0])
    cache.put("a", True)
    cache.put("b", False)
    cache.put("c", True)  # over the bound: the oldest goes
    assert cache.get("a") is None and cache.get("b") is False and cache.get("c") is True
    now[0] = 10.0
    assert cache.get("c") is None


def test_an_identity_survives_the_cookie_and_is_refused_in_the_other_mode() -> None:
    assert Identity.from_json(ALICE.to_json()) == ALICE
    assert Identity.from_json({"username": ""}) is None
    assert Identity.from_json({"username": "x", "groups": "admins"}) is None
    kube = Access(auth.Authenticator(reviews=_Reviews()), session_key=b"k" * 32)  # type: ignore[arg-type]
    cookie = Sessions(kube).dump(new_session("replay", ALICE))
    loaded = Sessions(kube).load(cookie)  # another worker: the same key from the sink key
    assert loaded is not None and loaded.identity == ALICE and loaded.who == "alice"
    token_mode = Access(auth.Authenticator("full"))
    assert Sessions(token_mode).load(Sessions(token_mode).dump(new_session("replay"))) is not None
    other_key = Access(auth.Authenticator(reviews=_Reviews()), session_key=b"z" * 32)  # type: ignore[arg-type]
    assert Sessions(other_key).load(cookie) is None


class _Reviews:
    """Only marks the mode: these tests never ask the cluster."""
