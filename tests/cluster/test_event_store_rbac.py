"""The event store in auth mode ``kubernetes`` against the real API server: its TokenReview
names the caller, its SubjectAccessReview (RBAC) decides per namespace.

The chart is installed with its defaults (kubernetes mode), and the store runs here with
the token of the chart's own event-store ServiceAccount, so the reviews it may make are
exactly those the chart grants. Two teams: alice reads ``team-a``, bob reads ``team-b``
(RoleBindings to ``aiservice-viewer``), carol may replay in ``team-a``
(``aiservice-operator-replayer``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiservice_functions.event_store import auth, create_app, open_store
from aiservice_functions.event_store.guard import TargetPolicy
from aiservice_functions.event_store.kube_auth import ApiServer, KubeReviews
from aiservice_functions.event_store.replay import ReplayOptions
from aiservice_operator.cli.dlq import app as dlq_app
from typer.testing import CliRunner

from tests.support.cluster import Cluster, wait_for
from tests.support.event_store import post_dead_letter, serving_front
from tests.support.operator_process import SYSTEM_NS

TTL_S = 2.0
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Teams:
    url: str
    a: str
    b: str
    tokens: dict[str, str]
    users: dict[str, str]
    received: list[str]


def _bind(cluster: Cluster, ns: str, who: str, role: str, sa_ns: str) -> None:
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{who}-{role}", "namespace": ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": who, "namespace": sa_ns}],
        }
    )


def _account(cluster: Cluster, ns: str, name: str) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": name, "namespace": ns}})  # fmt: skip


@pytest.fixture(scope="module")
def broker() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP endpoint standing in for the Broker ingress: the ids replayed to it."""
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            received.append(self.headers.get("ce-id", ""))
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def _store_account(cluster: Cluster) -> str:
    out = cluster.kubectl(
        "get", "serviceaccount", "-n", SYSTEM_NS,
        "-l", "app.kubernetes.io/component=event-store", "-o", "name",
    ).stdout.split()  # fmt: skip
    assert len(out) == 1, out
    return out[0].split("/", 1)[1]


def _decision(client: httpx.Client, url: str, ns: str, event_id: str) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "com.example.review.submitted",
        "ce-source": f"/{ns}/web",
        "ce-id": event_id,
        "ce-traceparent": TRACE,
        "content-type": "application/json",
    }
    path = f"/v1/namespaces/{ns}/aiservices/svc/decisions/inputs?data=true"
    response = client.post(url + path, headers=headers, content=b'{"text": "secret"}')
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def teams(
    cluster: Cluster,
    installed: None,
    tmp_path_factory: pytest.TempPathFactory,
    broker: tuple[str, list[str]],
) -> Iterator[Teams]:
    a, b = cluster.namespace("team-a"), cluster.namespace("team-b")
    for who, ns in (("alice", a), ("bob", b), ("carol", a)):
        _account(cluster, ns, who)
    _bind(cluster, a, "alice", "aiservice-viewer", a)
    _bind(cluster, b, "bob", "aiservice-viewer", b)
    _bind(cluster, a, "carol", "aiservice-operator-replayer", a)
    tokens = {"alice": cluster.token(a, "alice"), "bob": cluster.token(b, "bob"),
              "carol": cluster.token(a, "carol")}  # fmt: skip
    users = {"alice": f"system:serviceaccount:{a}:alice",
             "bob": f"system:serviceaccount:{b}:bob",
             "carol": f"system:serviceaccount:{a}:carol"}  # fmt: skip

    home = tmp_path_factory.mktemp("rbac-store")
    own = home / "store-token"
    own.write_text(cluster.token(SYSTEM_NS, _store_account(cluster)))
    reviews = KubeReviews(
        ApiServer(cluster.server, own, cluster.dir / "certs" / "ca.crt"), ttl_s=TTL_S
    )
    broker_url, received = broker
    app = create_app(
        open_store(f"sqlite:///{home / 'events.db'}"),
        authenticator=auth.Authenticator(reviews=reviews),
        replay_defaults=ReplayOptions(
            broker_url=broker_url, policy=TargetPolicy.parse(["127.0.0.0/8"])
        ),
    )
    with serving_front(app) as url, httpx.Client(timeout=30) as client:
        for ns in (a, b):
            for i in range(2):
                assert post_dead_letter(client, url, f"{ns}-{i}", namespace=ns).status_code == 201
            _decision(client, url, ns, f"{ns}-input")
        yield Teams(url, a, b, tokens, users, received)
    reviews.close()


def _get(teams: Teams, who: str, path: str, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {teams.tokens[who]}"} if who else {}
    return httpx.get(teams.url + path, headers=headers, params=params, timeout=30)


def _post(teams: Teams, who: str, path: str, body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {teams.tokens[who]}"}
    return httpx.post(teams.url + path, headers=headers, json=body, timeout=30)


def test_each_team_sees_only_its_own_namespace(teams: Teams) -> None:
    for who, mine, other in (("alice", teams.a, teams.b), ("bob", teams.b, teams.a)):
        listed = _get(teams, who, "/v1/events").json()["items"]
        assert {i["namespace"] for i in listed} == {mine}
        assert len(listed) == 2
        stats = _get(teams, who, "/v1/stats").json()
        assert [s["namespace"] for s in stats["services"]] == [mine]
        assert _get(teams, who, f"/v1/namespaces/{mine}/aiservices/sentiment/dead-letters") \
            .status_code == 200  # fmt: skip
        refused = _get(teams, who, f"/v1/namespaces/{other}/aiservices/sentiment/dead-letters")
        assert refused.status_code == 403
        assert teams.users[who] in refused.json()["error"]
        theirs = _get(teams, "alice" if who == "bob" else "bob", "/v1/events").json()["items"]
        assert _get(teams, who, f"/v1/events/{theirs[0]['seq']}").status_code == 404
        assert _get(teams, who, f"/v1/events/{listed[0]['seq']}").status_code == 200
        decisions = "/v1/namespaces/{}/aiservices/svc/decisions"
        assert _get(teams, who, decisions.format(mine)).json()["items"][0]["namespace"] == mine
        assert _get(teams, who, decisions.format(other)).status_code == 403
        assert _get(teams, who, decisions.format(other) + "/export").status_code == 403
        exported = _get(teams, who, decisions.format(mine) + "/export")
        assert exported.status_code == 200
        assert [json.loads(line)["id"] for line in exported.text.splitlines()] == [f"{mine}-input"]


def test_a_trace_across_namespaces_shows_only_the_callers_hops(teams: Teams) -> None:
    trace = _get(teams, "alice", "/v1/decisions/trace", id=TRACE).json()
    assert len(trace["records"]) == 2
    shown = [r for r in trace["records"] if not r.get("hidden")]
    assert [r["namespace"] for r in shown] == [teams.a]
    assert {"hidden": True} in trace["records"]


def _audited(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (str(getattr(r, "audit")), str(getattr(r, "by")))  # noqa: B009
        for r in caplog.records
        if hasattr(r, "audit")
    ]


def test_replay_needs_the_replay_permission(teams: Teams, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiservice_functions.event_store")
    body = {"filter": {"namespace": teams.a}}
    refused = _post(teams, "alice", "/v1/replay", body)
    assert refused.status_code == 403, refused.text
    assert "create aiservices/replay" in refused.json()["error"]
    assert teams.received == []
    # carol may replay in team-a only: not team-b's records, by filter or by seq.
    assert _post(teams, "carol", "/v1/replay", {"filter": {"namespace": teams.b}}).status_code \
        == 403  # fmt: skip
    b_seq = _get(teams, "bob", "/v1/events").json()["items"][0]["seq"]
    assert _post(teams, "carol", "/v1/replay", {"seqs": [b_seq]}).status_code == 403
    done = _post(teams, "carol", "/v1/replay", body)
    assert done.status_code == 200, done.text
    assert done.json()["replayed"] == 2
    assert sorted(teams.received) == [f"{teams.a}-0", f"{teams.a}-1"]
    assert _audited(caplog) == [("replay", teams.users["carol"])]
    job = _post(teams, "carol", "/v1/replays", {"all": True, "force": True})
    assert job.status_code == 202, job.text
    assert job.json()["request"]["by"] == teams.users["carol"]
    # the job is carol's: alice (who may not read every namespace) does not see it.
    assert _get(teams, "alice", f"/v1/replays/{job.json()['id']}").status_code == 404


def test_reprocessing_runs_need_the_reprocess_permission(
    teams: Teams, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiservice_functions.event_store")
    path = f"/v1/namespaces/{teams.a}/aiservices/svc/decisions/reprocessed?data=true&run=r1"
    headers = {
        "ce-specversion": "1.0", "ce-type": "com.example.review.scored",
        "ce-source": "/reprocess", "ce-id": "n-1", "content-type": "application/json",
    }  # fmt: skip
    for who, status in (("alice", 403), ("carol", 201)):
        response = httpx.post(
            teams.url + path,
            headers={**headers, "Authorization": f"Bearer {teams.tokens[who]}"},
            content=b'{"label": "x"}',
        )
        assert response.status_code == status, response.text
    assert _audited(caplog) == [("reprocess", teams.users["carol"])]
    exported = _get(teams, "carol", f"/v1/namespaces/{teams.a}/aiservices/svc/decisions/export")
    assert exported.status_code == 200
    assert _audited(caplog)[-1] == ("export", teams.users["carol"])


def test_forged_and_revoked_tokens_are_401(cluster: Cluster, teams: Teams) -> None:
    assert _get(teams, "", "/v1/events").status_code == 401
    header, payload, signature = teams.tokens["alice"].split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    response = httpx.get(teams.url + "/v1/events", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    _account(cluster, teams.b, "dave")
    _bind(cluster, teams.b, "dave", "aiservice-viewer", teams.b)
    dave = cluster.token(teams.b, "dave")
    ok = httpx.get(teams.url + "/v1/events", headers={"Authorization": f"Bearer {dave}"})
    assert ok.status_code == 200
    cluster.kubectl("delete", "serviceaccount", "dave", "-n", teams.b)
    # A token of a deleted ServiceAccount is refused by the cluster once the cache expires.
    wait_for(
        lambda: (
            httpx.get(
                teams.url + "/v1/events", headers={"Authorization": f"Bearer {dave}"}
            ).status_code
            == 401
            or None
        ),
        TTL_S * 5 + 10,
        "the revoked token refused",
    )


def test_revoking_a_rolebinding_takes_effect_within_the_cache_bound(
    cluster: Cluster, teams: Teams
) -> None:
    _account(cluster, teams.b, "erin")
    _bind(cluster, teams.b, "erin", "aiservice-viewer", teams.b)
    teams.tokens["erin"] = cluster.token(teams.b, "erin")
    assert len(_get(teams, "erin", "/v1/events").json()["items"]) == 2
    cluster.kubectl("delete", "rolebinding", "erin-aiservice-viewer", "-n", teams.b)
    wait_for(
        lambda: _get(teams, "erin", "/v1/events").json()["items"] == [] or None,
        TTL_S * 5 + 10,
        "the revoked RoleBinding in effect",
    )


def test_the_store_account_may_ask_for_reviews_and_nothing_else(
    cluster: Cluster, teams: Teams
) -> None:
    account = f"system:serviceaccount:{SYSTEM_NS}:{_store_account(cluster)}"

    def can(*args: str) -> bool:
        proc = cluster.kubectl("auth", "can-i", *args, "--as", account, check=False)
        return proc.stdout.strip() == "yes"

    assert can("create", "tokenreviews.authentication.k8s.io")
    assert can("create", "subjectaccessreviews.authorization.k8s.io")
    for verb, resource in (("get", "aiservices.aiservice.dev"), ("get", "secrets"),
                           ("list", "pods"), ("create", "aiservices.aiservice.dev")):  # fmt: skip
        assert not can(verb, resource, "-A"), (verb, resource)


@contextmanager
def _console_sign_in(teams: Teams, token: str) -> Iterator[httpx.Client]:
    """A browser-like client signed in to the console with ``token`` (the login form)."""
    with httpx.Client(base_url=teams.url, timeout=30) as client:
        form = client.get("/console/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        client.post(
            "/console/login", data={"csrf": csrf.group(1), "token": token, "next": "/console/"}
        )
        yield client


def test_the_console_signs_in_with_a_kubernetes_token_and_shows_only_its_namespace(
    teams: Teams,
) -> None:
    with _console_sign_in(teams, teams.tokens["alice"]) as console:
        overview = console.get("/console/")
        assert overview.status_code == 200
        assert f"signed in as {teams.users['alice']}" in overview.text
        counts = console.get("/console/api/counts").json()
        assert [s["namespace"] for s in counts["services"]] == [teams.a]
        assert counts["totals"]["deadLetters"] == 2
        listed = console.get("/console/dead-letters").text
        assert teams.a in listed and teams.b not in listed
        b_seq = _get(teams, "bob", "/v1/events").json()["items"][0]["seq"]
        assert console.get(f"/console/dead-letters/{b_seq}").status_code == 404
        assert console.get(f"/console/decisions/{teams.b}/svc").status_code == 403
        chain = console.get("/console/decisions", params={"q": TRACE}).text
        assert "1 more record(s) of this chain are in namespaces you may not read" in chain
    with _console_sign_in(teams, "not-a-token") as refused:
        assert refused.get("/console/api/counts").status_code == 401


def _exec_kubeconfig(cluster: Cluster, home: Path, token: str) -> Path:
    """A kubeconfig whose user is an exec credential plugin (as cloud providers ship)."""
    plugin = home / "credential-plugin"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    }
    plugin.write_text(f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
    plugin.chmod(0o700)
    path = cluster.token_kubeconfig(home / "exec-kubeconfig", "unused")
    cfg = yaml.safe_load(path.read_text())
    cfg["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "interactiveMode": "Never",
        }
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_cli_acts_with_the_kubeconfig_identity(
    cluster: Cluster, teams: Teams, tmp_path: Path
) -> None:
    runner = CliRunner()
    alice = cluster.token_kubeconfig(tmp_path / "alice", teams.tokens["alice"])
    bob = _exec_kubeconfig(cluster, tmp_path, teams.tokens["bob"])
    for kubeconfig, mine in ((alice, teams.a), (bob, teams.b)):
        env = {"KUBECONFIG": str(kubeconfig), "AISVC_EVENT_STORE_TOKEN": ""}
        listed = runner.invoke(dlq_app, ["list", "-o", "json", "--url", teams.url], env=env)
        assert listed.exit_code == 0, listed.output
        assert {i["namespace"] for i in json.loads(listed.stdout)["items"]} == {mine}
    env = {"KUBECONFIG": str(alice), "AISVC_EVENT_STORE_TOKEN": ""}
    refused = runner.invoke(dlq_app, ["replay", "--url", teams.url, "-n", teams.a], env=env)
    assert refused.exit_code == 1
    assert "create aiservices/replay" in refused.output
