"""The chart grants the operator exactly what its code requests: no call left out, none extra.

The list of requests comes from the code (`kube.API_CALLS`, filled by the decorator on each
method that talks to the API server, plus the framework's own needs), not from this file.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiservice_operator.cluster import kube
from aiservice_operator.cluster.config import ENV_PEERING_NAME
from aiservice_operator.cluster.rbac import PEERING_CALLS, deployment_permissions

from tests.support.chart import NAMESPACE, Rendered, RenderFn

Permission = tuple[str, str, str]


def _granted_to_operator(rendered: Rendered, service_account: str) -> set[Permission]:
    """Every (group, resource, verb) the rendered roles grant the operator's ServiceAccount."""
    roles = {
        (o["kind"], o["metadata"]["name"]): o
        for o in rendered.objects
        if o["kind"].endswith("Role")
    }
    granted: set[Permission] = set()
    for binding in rendered.objects:
        if not binding["kind"].endswith("RoleBinding"):
            continue
        subjects = binding.get("subjects", [])
        if not any(
            s["kind"] == "ServiceAccount"
            and s["name"] == service_account
            and s["namespace"] == NAMESPACE
            for s in subjects
        ):
            continue
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for rule in role["rules"]:
            assert "resourceNames" not in rule or rule["resourceNames"]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        granted.add((group, resource, verb))
    return granted


def _operator_account(rendered: Rendered) -> str:
    name: str = rendered.deployment("operator")["spec"]["template"]["spec"]["serviceAccountName"]
    return name


def test_the_code_registers_its_api_calls() -> None:
    """The registry is filled from the decorated methods, so it cannot be empty or stale."""
    members = [
        m for obj in vars(kube).values() if isinstance(obj, type) for m in vars(obj).values()
    ]
    members += list(vars(kube).values())
    decorated = {getattr(m, "__api_call__", None) for m in members} - {None}
    assert decorated == kube.API_CALLS
    assert ("serving.knative.dev", "services", "create") in kube.API_CALLS


@pytest.mark.parametrize("peering", [True, False])
def test_rules_are_exactly_what_the_operator_requests(render: RenderFn, peering: bool) -> None:
    values: dict[str, Any] = {"operator": {"peering": {"enabled": peering}}}
    rendered = render(values)
    granted = _granted_to_operator(rendered, _operator_account(rendered))
    needed = set(deployment_permissions(peering=peering))
    assert not needed - granted, f"calls the chart does not allow: {sorted(needed - granted)}"
    assert not granted - needed, f"granted but never requested: {sorted(granted - needed)}"
    assert (granted >= PEERING_CALLS) is peering


def test_no_wildcards_and_no_secrets(render: RenderFn) -> None:
    for role in render().objects:
        if not role["kind"].endswith("Role"):
            continue
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], rule
            assert "secrets" not in rule["resources"], rule


def test_peering_replicas_use_the_object_the_role_allows(render: RenderFn) -> None:
    rendered = render({"operator": {"replicas": 2}})
    peering = rendered.one("ClusterKopfPeering")
    container = rendered.deployment("operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[ENV_PEERING_NAME] == peering["metadata"]["name"]


def test_event_store_in_token_mode_has_no_api_access(render: RenderFn) -> None:
    rendered = render({"eventStore": {"auth": {"mode": "token"}}})
    store = rendered.deployment("event-store")
    account = store["spec"]["template"]["spec"]["serviceAccountName"]
    assert account != _operator_account(rendered)
    assert store["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert _granted_to_operator(rendered, account) == set()
    env = {
        e["name"]: e.get("value") for e in store["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["AISVC_EVENT_STORE_AUTH_MODE"] == "token"


def test_event_store_in_kubernetes_mode_may_only_ask_for_reviews(render: RenderFn) -> None:
    """The default on install: the store's account creates TokenReviews and
    SubjectAccessReviews, nothing else; the operator reads the store as itself."""
    rendered = render()
    store = rendered.deployment("event-store")
    spec = store["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is True
    assert _granted_to_operator(rendered, spec["serviceAccountName"]) == {
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    }
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["AISVC_EVENT_STORE_AUTH_MODE"] == "kubernetes"
    operator = rendered.deployment("operator")["spec"]["template"]["spec"]["containers"][0]
    operator_env = {e["name"]: e.get("value") for e in operator["env"]}
    assert operator_env["AISVC_EVENT_STORE_TOKEN_FILE"] == (
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def _rules(role: dict[str, Any]) -> set[Permission]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_user_roles_read_and_replay_and_aggregate(render: RenderFn) -> None:
    rendered = render()
    roles = {o["metadata"]["name"]: o for o in rendered.objects if o["kind"] == "ClusterRole"}
    viewer, replayer = roles["aiservice-viewer"], roles["aiservice-operator-replayer"]
    read = {("aiservice.dev", "aiservices", v) for v in ("get", "list", "watch")}
    assert _rules(viewer) == read
    assert _rules(replayer) == read | {
        ("aiservice.dev", "aiservices/replay", "create"),
        ("aiservice.dev", "aiservices/reprocess", "create"),
    }
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    labels = replayer["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    off = render({"eventStore": {"auth": {"roles": {"aggregateToView": False, "create": True}}}})
    viewer = next(o for o in off.objects if o["metadata"]["name"] == "aiservice-viewer")
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in viewer["metadata"]["labels"]
    none = render({"eventStore": {"auth": {"roles": {"create": False}}}})
    assert not [
        o
        for o in none.objects
        if o["kind"] == "ClusterRole" and o["metadata"]["name"].startswith("aiservice-")
    ]
