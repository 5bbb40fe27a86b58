"""kube.py: drift comparison, the RBAC call registry, errors, and writes only on change
(against the API emulator over HTTP).

Why the emulator: the client's retry, conflict and re-login paths need a 409, 401 or 5xx at
a chosen request.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiservice_operator.cluster import kube
from aiservice_operator.cluster.config import Config, ConfigError
from aiservice_operator.core import drift

from tests.support.kubeemu import KSERVICES, TRIGGERS, EmulatorThread


def test_contains_treats_defaulted_fields_as_no_drift() -> None:
    desired = {"template": {"spec": {"containers": [{"image": "a"}]}}, "traffic": [{"p": 1}]}
    defaulted = {
        "template": {"spec": {"containers": [{"image": "a", "resources": {}}], "timeout": 300}},
        "traffic": [{"p": 1, "latestRevision": False}],
    }
    assert drift.contains(defaulted, desired)
    assert not drift.contains({**defaulted, "traffic": [{"p": 2}]}, desired)
    assert not drift.contains({**defaulted, "traffic": [{"p": 1}, {"p": 0}]}, desired)
    assert not drift.contains({"template": {"spec": {"containers": [{"image": "b"}]}}}, desired)


def test_update_patch_guards_the_resource_version_and_keeps_foreign_metadata() -> None:
    live = {
        "metadata": {
            "resourceVersion": "7",
            "labels": {"team": "x", "app.kubernetes.io/managed-by": "someone"},
            "ownerReferences": [{"uid": "other"}],
        },
        "spec": {"old": True},
    }
    desired = {
        "metadata": {
            "labels": {"app.kubernetes.io/managed-by": "aiservice-operator"},
            "ownerReferences": [{"uid": "mine"}],
        },
        "spec": {"new": True},
    }
    assert drift.needs_update(live, desired)
    ops = {op["path"]: op for op in drift.update_patch(live, desired)}
    assert ops["/metadata/resourceVersion"] == {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": "7",
    }
    assert ops["/spec"]["value"] == {"new": True}
    assert ops["/metadata/labels"]["value"] == {
        "team": "x",
        "app.kubernetes.io/managed-by": "aiservice-operator",
    }
    assert [r["uid"] for r in ops["/metadata/ownerReferences"]["value"]] == ["mine", "other"]


def test_every_request_sending_method_is_in_the_rbac_registry() -> None:
    senders = [
        (name, fn)
        for name, fn in inspect.getmembers(kube.Kube, inspect.iscoroutinefunction)
        if "self._request(" in inspect.getsource(fn)
    ]
    assert len(senders) >= 10
    missing = [name for name, fn in senders if not hasattr(fn, "__api_call__")]
    assert missing == []
    assert {fn.__api_call__ for _, fn in senders} == kube.API_CALLS
    needed = kube.required_permissions()
    assert ("serving.knative.dev", "services", "patch") in needed
    assert ("eventing.knative.dev", "triggers", "delete") in needed
    assert ("aiservice.dev", "aiservices/status", "patch") in needed
    assert ("", "events", "create") in needed


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (0, True),
        (409, True),
        (422, True),
        (429, True),
        (503, True),
        (400, False),
        (403, False),
        (404, False),
    ],
)
def test_which_errors_are_retried(status: int, retryable: bool) -> None:
    assert kube.ApiError(status, "r", "m").retryable is retryable


def test_config_from_env_names_the_bad_variable() -> None:
    config = Config.from_env(
        {
            "AISVC_WATCH_NAMESPACES": "a, b,",
            "AISVC_RETRY_DELAY_SECONDS": "0.5",
            "AISVC_EVENT_STORE_URL": "http://store:8080/",
        }
    )
    assert config.namespaces == ("a", "b") and config.retry_delay == 0.5
    assert config.compile_options.event_store_url == "http://store:8080"
    assert config.standalone and Config.from_env({"AISVC_PEERING_NAME": "p"}).standalone is False
    with pytest.raises(ConfigError, match="AISVC_RETRY_DELAY_SECONDS"):
        Config.from_env({"AISVC_RETRY_DELAY_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="AISVC_KUBE_SERVER"):
        Config.from_env({"AISVC_KUBE_SERVER": "localhost:6443"})
    with pytest.raises(ConfigError, match="AISVC_EVENT_STORE_URL"):
        Config.from_env({"AISVC_EVENT_STORE_URL": "store"})


def test_worker_limit_from_env() -> None:
    assert Config.from_env({}).worker_limit == 32
    assert Config.from_env({"AISVC_WORKER_LIMIT": "0"}).worker_limit == 0  # no limit
    with pytest.raises(ConfigError, match="AISVC_WORKER_LIMIT"):
        Config.from_env({"AISVC_WORKER_LIMIT": "-1"})


@pytest.fixture(scope="module")
def api() -> Iterator[EmulatorThread]:
    with EmulatorThread() as api:
        yield api


def _service(rev: str = "s-1") -> dict[str, Any]:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "k", "labels": {"aiservice.dev/name": "s"}},
        "spec": {"template": {"metadata": {"name": rev}, "spec": {"containers": [{}]}}},
    }


def _trigger(name: str, broker: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "k", "labels": {"aiservice.dev/name": "s"}},
        "spec": {"broker": broker, "filters": [{"exact": {"type": name}}]},
    }


def test_apply_writes_only_what_changed(api: EmulatorThread) -> None:
    async def scenario() -> list[list[str]]:
        client = kube.Kube(kube.Connection(server=api.url, insecure=True))
        actions: list[list[str]] = []
        try:
            selector = {"aiservice.dev/name": "s"}
            for service, triggers in (
                (_service(), [_trigger("a"), _trigger("b")]),
                (_service(), [_trigger("a"), _trigger("b")]),
                (_service("s-2"), [_trigger("a", broker="other"), _trigger("c")]),
            ):
                live = await client.get_service("k", "s")
                done = [(await client.apply_service(service, live)).action]
                applied = await client.apply_triggers("k", selector, triggers)
                actions.append(done + [f"{n}:{a.action}" for n, a in sorted(applied.items())])
        finally:
            await client.close()
        return actions

    api.clear_log()
    created, unchanged, changed = asyncio.run(scenario())
    assert created == ["created", "a:created", "b:created"]
    assert unchanged == ["unchanged", "a:unchanged", "b:unchanged"]
    assert changed == ["updated", "a:recreated", "b:deleted", "c:created"]
    writes = [(w.verb, w.plural, w.name) for w in api.writes()]
    assert writes == [
        ("create", "services", None),
        ("create", "triggers", None),
        ("create", "triggers", None),
        ("patch", "services", "s"),
        ("delete", "triggers", "a"),
        ("create", "triggers", None),
        ("create", "triggers", None),
        ("delete", "triggers", "b"),
    ]
    assert api.get(KSERVICES, "k", "s")["spec"]["template"]["metadata"]["name"] == "s-2"
    assert sorted(t["metadata"]["name"] for t in api.list(TRIGGERS, "k")) == ["a", "c"]


def test_a_stale_patch_is_a_retryable_conflict(api: EmulatorThread) -> None:
    api.create(KSERVICES, {**_service(), "metadata": {"name": "race", "namespace": "k"}})
    stale = api.get(KSERVICES, "k", "race")
    api.patch(KSERVICES, "k", "race", {"metadata": {"labels": {"someone": "else"}}})

    async def scenario() -> kube.ApiError:
        client = kube.Kube(kube.Connection(server=api.url, insecure=True))
        try:
            ops = drift.update_patch(stale, {**_service("s-9"), "metadata": {}})
            with pytest.raises(kube.ApiError) as err:
                await client.patch_service("k", "race", ops)
            return err.value
        finally:
            await client.close()

    error = asyncio.run(scenario())
    assert error.status == 422 and error.retryable
    assert api.get(KSERVICES, "k", "race")["spec"]["template"]["metadata"]["name"] == "s-1"


def test_kubeconfig_certificate_data_is_decoded_to_pem() -> None:
    text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert kube.pem(text) == text
    assert kube.pem(base64.b64encode(text.encode()).decode()) == text
    with pytest.raises(ValueError, match="neither PEM nor base64"):
        kube.pem("not a certificate!")


def test_an_expired_token_is_renewed_by_logging_in_again() -> None:
    """Service-account and kubeconfig tokens expire while the operator runs: a 401 logs in
    again (the framework re-reads the credentials) instead of failing every reconcile."""
    from aiohttp import web

    async def scenario() -> tuple[dict[str, Any] | None, list[str]]:
        seen: list[str] = []

        async def handle(request: web.Request) -> web.Response:
            seen.append(request.headers.get("Authorization", ""))
            if request.headers.get("Authorization") != "Bearer fresh":
                return web.json_response({"reason": "Unauthorized", "message": "no"}, status=401)
            return web.json_response({"metadata": {"name": "s"}})

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"

        async def relogin() -> kube.Connection:
            return kube.Connection(server=url, token="fresh")

        client = kube.Kube(kube.Connection(server=url, token="expired"), relogin=relogin)
        try:
            return await client.get_service("k", "s"), seen
        finally:
            await client.close()
            await runner.cleanup()

    got, seen = asyncio.run(scenario())
    assert got == {"metadata": {"name": "s"}}
    assert seen == ["Bearer expired", "Bearer fresh"]


def test_update_patch_keeps_a_same_named_template_as_knative_defaulted_it() -> None:
    """Knative defaults a revision template only on creation and refuses a later change
    without a new name (found against its real webhook): a traffic-only update keeps the
    stored template; a new template name replaces it."""
    stored = {
        "metadata": {"name": "s-v1-aaaa"},
        "spec": {"enableServiceLinks": False, "containers": [
            {"image": "i", "name": "user-container", "readinessProbe": {"successThreshold": 1}}]},
    }  # fmt: skip
    live = {"metadata": {"resourceVersion": "3"}, "spec": {"template": stored, "traffic": []}}
    template = {"metadata": {"name": "s-v1-aaaa"}, "spec": {"containers": [{"image": "i"}]}}
    traffic = [{"revisionName": "s-v1-aaaa", "percent": 100}]
    ops = {
        op["path"]: op
        for op in drift.update_patch(live, {"spec": {"template": template, "traffic": traffic}})
    }
    assert ops["/spec"]["value"] == {"template": stored, "traffic": traffic}
    renamed = {**template, "metadata": {"name": "s-v1-bbbb"}}
    ops = {op["path"]: op for op in drift.update_patch(live, {"spec": {"template": renamed}})}
    assert ops["/spec"]["value"] == {"template": renamed}


def _self_signed(directory: Path) -> tuple[str, str]:
    """A certificate and key for 127.0.0.1, made by the real openssl binary."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary to make a client certificate with")
    cert, key = directory / "c.pem", directory / "k.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert.read_text(), key.read_text()


def test_client_certificate_data_is_loaded_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubeconfig's `client-*-data` reach a real TLS server that requires a client
    certificate, and every login (three here, as after 401s) leaves no PEM file behind."""
    cert, key = _self_signed(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cadata=cert)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peers: list[Any] = []

    def serve_one() -> None:
        raw, _ = listener.accept()
        with server_ctx.wrap_socket(raw, server_side=True) as tls:
            peers.append(tls.getpeercert())

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    conn = kube.Connection(
        server=f"https://127.0.0.1:{port}",
        ca_data=base64.b64encode(cert.encode()).decode(),
        certificate_data=base64.b64encode(cert.encode()).decode(),
        private_key_data=key,
    )
    contexts = [kube._ssl(conn) for _ in range(3)]
    assert list(scratch.iterdir()) == []
    context = contexts[-1]
    assert isinstance(context, ssl.SSLContext)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass
    thread.join(10)
    listener.close()
    assert peers and peers[0]["subject"] == ((("commonName", "127.0.0.1"),),)
