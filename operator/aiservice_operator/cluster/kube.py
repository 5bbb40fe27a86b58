"""The operator's only client of the Kubernetes API: read, apply and prune an AIService's children.

Apply is idempotent and write-shy: a child is created when missing and patched only when
what the operator owns in it (spec, its labels, annotations and ownerReferences) differs
from the live object, compared as "desired is contained in live" so fields the API server
or Knative's webhooks default do not count as drift. A reconcile that changes nothing
writes nothing. Patches carry a `test` of the resourceVersion the decision was made on, so
a concurrent change answers 409/422 instead of being overwritten; `ApiError.retryable`
tells the caller to try again.

RBAC registry: every method that sends a request is decorated with
`@api_call(group, resource, verb)`, which records the triple in `API_CALLS` — the
permissions this module needs. `FRAMEWORK_CALLS` lists what the operator framework itself
does (watching AIServices and owned children, patching AIService metadata, posting
Events). The chart's RBAC rules must cover `required_permissions()`, the union of both.
The same triple labels the request in the operator's metrics (`operator_metrics`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar, cast

import aiohttp

from aiservice_operator.cluster import operator_metrics
from aiservice_operator.core import features, names
from aiservice_operator.core.drift import needs_update, update_patch
from aiservice_operator.core.spec import API_GROUP, API_VERSION, PLURAL

P = ParamSpec("P")
R = TypeVar("R")
Obj = dict[str, Any]

SERVING_GROUP, SERVING_VERSION = "serving.knative.dev", "v1"
EVENTING_GROUP, EVENTING_VERSION = "eventing.knative.dev", "v1"

API_CALLS: set[tuple[str, str, str]] = set()
"""(API group, resource, verb) of every request this module can send."""

FRAMEWORK_CALLS: frozenset[tuple[str, str, str]] = frozenset(
    {
        (API_GROUP, PLURAL, "list"),
        (API_GROUP, PLURAL, "watch"),
        (API_GROUP, PLURAL, "patch"),  # the framework's own annotations (diff base, progress)
        (SERVING_GROUP, "services", "list"),
        (SERVING_GROUP, "services", "watch"),
        (EVENTING_GROUP, "triggers", "list"),
        (EVENTING_GROUP, "triggers", "watch"),
        ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
    }
)
"""What the operator framework (Kopf) requests on its own: watches, its annotations, Events."""


_CALL: ContextVar[tuple[str, str, str]] = ContextVar("aisvc_api_call", default=("", "", ""))
"""The (group, resource, verb) of the method whose request is in flight: its metric labels."""


def api_call(
    group: str, resource: str, verb: str
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Register the permission a method needs; its requests are counted under that triple."""

    def register(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        API_CALLS.add((group, resource, verb))
        call = (group, resource, verb)

        @functools.wraps(fn)
        async def labelled(*args: P.args, **kwargs: P.kwargs) -> R:
            token = _CALL.set(call)
            try:
                return await fn(*args, **kwargs)
            finally:
                _CALL.reset(token)

        labelled.__api_call__ = call  # type: ignore[attr-defined]
        return labelled

    return register


def required_permissions() -> list[tuple[str, str, str]]:
    """Every (group, resource, verb) the running operator needs, sorted."""
    return sorted(API_CALLS | FRAMEWORK_CALLS)


class ApiError(Exception):
    """A failed API request; `status` 0 means the server could not be reached."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Worth retrying: unreachable, conflict (409, failed resourceVersion test), throttled,
        or a server error. Other 4xx mean the request itself is wrong."""
        return self.status in (0, 409, 422, 429) or self.status >= 500


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate (from the framework's login)."""

    server: str
    token: str | None = None
    scheme: str | None = None
    """Authorization scheme of the token (default: Bearer)."""
    ca_path: str | None = None
    ca_data: str | None = None
    insecure: bool = False
    certificate_path: str | None = None
    certificate_data: str | None = None
    private_key_path: str | None = None
    private_key_data: str | None = None


def pem(data: str) -> str:
    """PEM text from kubeconfig-style data: PEM as is, or base64 of PEM (`*-data` fields)."""
    if data.lstrip().startswith("-----BEGIN "):
        return data
    try:
        return base64.b64decode(data, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise ValueError("certificate data is neither PEM nor base64-encoded PEM") from err


def _load_client_certificate(context: ssl.SSLContext, conn: Connection) -> None:
    """Load the client certificate and key into `context`, from their paths or their data.

    `ssl` reads a certificate chain only from files, so data (kubeconfig's `*-data`) is
    written to a private temporary directory and removed as soon as it is loaded: every
    login (and a 401 logs in again) leaves nothing behind."""
    cert, key = conn.certificate_path, conn.private_key_path
    if not (cert or conn.certificate_data):
        return
    with tempfile.TemporaryDirectory(prefix="aisvc-kube-") as private:
        if not cert and conn.certificate_data:
            cert = os.path.join(private, "client.crt")
            Path(cert).write_text(pem(conn.certificate_data), encoding="ascii")
        if not key and conn.private_key_data:
            key = os.path.join(private, "client.key")
            Path(key).write_text(pem(conn.private_key_data), encoding="ascii")
        context.load_cert_chain(cast(str, cert), key or None)


def _ssl(conn: Connection) -> ssl.SSLContext | bool:
    if conn.insecure:
        return False
    if not conn.server.startswith("https"):
        return True
    context = ssl.create_default_context(
        cafile=conn.ca_path, cadata=pem(conn.ca_data) if conn.ca_data else None
    )
    _load_client_certificate(context, conn)
    return context


@dataclass(frozen=True)
class Applied:
    """The result of applying one object."""

    action: Literal["created", "updated", "unchanged", "recreated", "deleted"]
    object: Obj


@dataclass
class Kube:
    """An async API client bound to one event loop (create it inside the loop that uses it)."""

    connection: Connection
    timeout: float = 30.0
    relogin: Callable[[], Awaitable[Connection | None]] | None = None
    """Fresh credentials after a 401: tokens expire (rotated service-account tokens,
    short-lived kubeconfig tokens) while the operator runs."""
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)
    _written: dict[tuple[str, str, str], str] = field(default_factory=dict, init=False)
    """(resource, namespace, name) -> resourceVersion this client's last write produced."""

    def _remember(self, resource: str, obj: Obj | None) -> Obj:
        meta = (obj or {}).get("metadata") or {}
        if meta.get("name") and meta.get("resourceVersion"):
            key = (resource, meta.get("namespace", ""), meta["name"])
            self._written[key] = meta["resourceVersion"]
        return obj or {}

    def forget(self, namespace: str, owner: str) -> None:
        """Drop what was remembered about the children of a deleted AIService (named after
        its Knative Service: the AIService's name, or its shortened form)."""
        prefixes = {owner, names.service_name(owner)}
        for key in [k for k in self._written if k[1] == namespace]:
            if any(key[2] == p or key[2].startswith(f"{p}-") for p in prefixes):
                del self._written[key]

    def is_own_write(self, resource: str, obj: Mapping[str, Any]) -> bool:
        """Whether `obj` (a watch event's object) is exactly the state this client's last
        write produced: the watch echoing our own change, which needs no reconcile."""
        meta = obj.get("metadata") or {}
        key = (resource, meta.get("namespace", ""), meta.get("name", ""))
        return bool(meta.get("resourceVersion")) and self._written.get(key) == meta.get(
            "resourceVersion"
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json", "User-Agent": "aiservice-operator"}
            if self.connection.token:
                scheme = self.connection.scheme or "Bearer"
                headers["Authorization"] = f"{scheme} {self.connection.token}"
            self._session = aiohttp.ClientSession(
                base_url=None,
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=_ssl(self.connection)),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj | None:
        """Send one request; None for 404 on reads, `ApiError` for every other failure.
        A 401 logs in again (`relogin`) and is sent once more with the new credentials."""
        try:
            return await self._send(
                method, path, params=params, body=body, content_type=content_type
            )
        except ApiError as err:
            if err.status != 401 or self.relogin is None:
                raise
            fresh = await self.relogin()
            if fresh is None:
                raise
        self.connection = fresh
        await self.close()  # the next session carries the new credentials
        return await self._send(method, path, params=params, body=body, content_type=content_type)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        body: Any,
        content_type: str,
    ) -> Obj | None:
        url = self.connection.server.rstrip("/") + path
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        started, code = time.perf_counter(), 0
        try:
            async with self._client().request(
                method, url, params=params, data=data, headers=headers
            ) as response:
                code = response.status
                text = await response.text()
                if response.status == 404 and method == "GET":
                    return None
                if response.status >= 400:
                    try:
                        status = json.loads(text)
                    except ValueError:
                        status = {}
                    raise ApiError(
                        response.status,
                        str(status.get("reason") or response.reason or ""),
                        str(status.get("message") or text[:500]),
                    )
                return json.loads(text) if text else {}
        except (TimeoutError, aiohttp.ClientError) as err:
            code = 0  # a status line without a readable body is still a failed request
            raise ApiError(0, "Unreachable", f"{method} {path}: {err!r}") from err
        finally:
            operator_metrics.api_request(*_CALL.get(), code, time.perf_counter() - started)

    # --- paths -----------------------------------------------------------------------

    @staticmethod
    def _path(group: str, version: str, plural: str, namespace: str, name: str = "") -> str:
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        path = f"{base}/namespaces/{urllib.parse.quote(namespace)}/{plural}"
        return f"{path}/{urllib.parse.quote(name)}" if name else path

    # --- AIServices ------------------------------------------------------------------

    @api_call(API_GROUP, PLURAL, "get")
    async def get_aiservice(self, namespace: str, name: str) -> Obj | None:
        return await self._request(
            "GET", self._path(API_GROUP, API_VERSION, PLURAL, namespace, name)
        )

    @api_call(API_GROUP, f"{PLURAL}/status", "patch")
    async def patch_aiservice_status(self, namespace: str, name: str, status: Obj) -> Obj:
        path = self._path(API_GROUP, API_VERSION, PLURAL, namespace, name) + "/status"
        result = await self._request(
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
        )
        return result or {}

    # --- Knative Serving's feature flags ----------------------------------------------

    @api_call("", "configmaps", "get")
    async def get_knative_features(
        self, namespace: str = features.NAMESPACE
    ) -> dict[str, str] | None:
        """`data` of Knative Serving's config-features (the one ConfigMap the role may
        read); None when it does not exist (Knative's defaults apply)."""
        path = self._path("", "v1", "configmaps", namespace, features.CONFIG_MAP)
        found = await self._request("GET", path)
        return (
            None
            if found is None
            else {str(k): str(v) for k, v in (found.get("data") or {}).items()}
        )

    # --- Knative Services and Revisions ------------------------------------------------

    def _service_path(self, namespace: str, name: str = "") -> str:
        return self._path(SERVING_GROUP, SERVING_VERSION, "services", namespace, name)

    @api_call(SERVING_GROUP, "services", "get")
    async def get_service(self, namespace: str, name: str) -> Obj | None:
        return await self._request("GET", self._service_path(namespace, name))

    @api_call(SERVING_GROUP, "services", "create")
    async def create_service(self, service: Obj) -> Obj:
        ns = service["metadata"]["namespace"]
        created = await self._request("POST", self._service_path(ns), body=service)
        return self._remember("services", created)

    @api_call(SERVING_GROUP, "services", "patch")
    async def patch_service(self, namespace: str, name: str, ops: Sequence[Obj]) -> Obj:
        result = await self._request(
            "PATCH",
            self._service_path(namespace, name),
            body=list(ops),
            content_type="application/json-patch+json",
        )
        return self._remember("services", result)

    @api_call(SERVING_GROUP, "revisions", "list")
    async def list_revisions(self, namespace: str, service: str) -> list[Obj]:
        path = self._path(SERVING_GROUP, SERVING_VERSION, "revisions", namespace)
        listing = await self._request(
            "GET", path, params={"labelSelector": f"serving.knative.dev/service={service}"}
        )
        return list((listing or {}).get("items") or [])

    async def apply_service(self, desired: Obj, live: Obj | None) -> Applied:
        """Create the Knative Service, or patch it where it drifted from `desired`."""
        meta = desired["metadata"]
        if live is None:
            return Applied("created", await self.create_service(desired))
        if not needs_update(live, desired):
            return Applied("unchanged", live)
        patched = await self.patch_service(
            meta["namespace"], meta["name"], update_patch(live, desired)
        )
        return Applied("updated", patched)

    # --- Brokers -----------------------------------------------------------------------

    def _broker_path(self, namespace: str, name: str = "") -> str:
        return self._path(EVENTING_GROUP, EVENTING_VERSION, "brokers", namespace, name)

    @api_call(EVENTING_GROUP, "brokers", "get")
    async def get_broker(self, namespace: str, name: str) -> Obj | None:
        return await self._request("GET", self._broker_path(namespace, name))

    @api_call(EVENTING_GROUP, "brokers", "create")
    async def create_broker(self, broker: Obj) -> Obj:
        ns = broker["metadata"]["namespace"]
        return await self._request("POST", self._broker_path(ns), body=broker) or {}

    @api_call(EVENTING_GROUP, "brokers", "patch")
    async def patch_broker(self, namespace: str, name: str, ops: Sequence[Obj]) -> Obj:
        result = await self._request(
            "PATCH",
            self._broker_path(namespace, name),
            body=list(ops),
            content_type="application/json-patch+json",
        )
        return result or {}

    async def apply_broker(self, desired: Obj | None, live: Obj | None) -> Applied | None:
        """The managed Broker: created when missing; when it is the operator's (its label)
        and of the class asked for, this AIService's ownerReference is added beside the
        others. A Broker of another class, or not the operator's, is never changed."""
        if desired is None:
            return None
        if live is None:
            return Applied("created", await self.create_broker(desired))
        lmeta, dmeta = live.get("metadata") or {}, desired["metadata"]
        wanted = dmeta.get("annotations", {}).get("eventing.knative.dev/broker.class")
        ours = (lmeta.get("labels") or {}).get("aiservice.dev/managed-broker") == "true"
        actual = (lmeta.get("annotations") or {}).get("eventing.knative.dev/broker.class")
        refs = list(lmeta.get("ownerReferences") or [])
        missing = [r for r in dmeta.get("ownerReferences") or [] if r not in refs]
        if not ours or actual != wanted or not missing:
            return Applied("unchanged", live)
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": lmeta["resourceVersion"]},
            {"op": "add", "path": "/metadata/ownerReferences", "value": [*refs, *missing]},
        ]
        return Applied("updated", await self.patch_broker(lmeta["namespace"], lmeta["name"], ops))

    # --- Triggers ----------------------------------------------------------------------

    def _trigger_path(self, namespace: str, name: str = "") -> str:
        return self._path(EVENTING_GROUP, EVENTING_VERSION, "triggers", namespace, name)

    @api_call(EVENTING_GROUP, "triggers", "list")
    async def list_triggers(self, namespace: str, selector: Mapping[str, str]) -> list[Obj]:
        labels = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        listing = await self._request(
            "GET", self._trigger_path(namespace), params={"labelSelector": labels}
        )
        return list((listing or {}).get("items") or [])

    @api_call(EVENTING_GROUP, "triggers", "create")
    async def create_trigger(self, trigger: Obj) -> Obj:
        ns = trigger["metadata"]["namespace"]
        created = await self._request("POST", self._trigger_path(ns), body=trigger)
        return self._remember("triggers", created)

    @api_call(EVENTING_GROUP, "triggers", "patch")
    async def patch_trigger(self, namespace: str, name: str, ops: Sequence[Obj]) -> Obj:
        result = await self._request(
            "PATCH",
            self._trigger_path(namespace, name),
            body=list(ops),
            content_type="application/json-patch+json",
        )
        return self._remember("triggers", result)

    @api_call(EVENTING_GROUP, "triggers", "delete")
    async def delete_trigger(self, namespace: str, name: str) -> None:
        self._written.pop(("triggers", namespace, name), None)
        try:
            await self._request("DELETE", self._trigger_path(namespace, name))
        except ApiError as err:
            if err.status != 404:  # already gone is what we wanted
                raise

    async def apply_triggers(
        self,
        namespace: str,
        selector: Mapping[str, str],
        desired: Iterable[Obj],
        listed: Sequence[Obj] | None = None,
    ) -> dict[str, Applied]:
        """Make the Triggers matching `selector` exactly `desired`: create, patch where
        drifted, recreate where the (immutable) broker changed, delete the rest.
        `listed`: the Triggers the caller already listed with `selector` (else listed here)."""
        if listed is None:
            listed = await self.list_triggers(namespace, selector)
        live = {t["metadata"]["name"]: t for t in listed}
        results: dict[str, Applied] = {}
        wanted = {t["metadata"]["name"]: t for t in desired}
        for name, trigger in wanted.items():
            current = live.get(name)
            if current is None:
                results[name] = Applied("created", await self.create_trigger(trigger))
            elif (current.get("spec") or {}).get("broker") != trigger["spec"].get("broker"):
                await self.delete_trigger(namespace, name)
                results[name] = Applied("recreated", await self.create_trigger(trigger))
            elif needs_update(current, trigger):
                patched = await self.patch_trigger(namespace, name, update_patch(current, trigger))
                results[name] = Applied("updated", patched)
            else:
                results[name] = Applied("unchanged", current)
        for name, current in live.items():
            if name not in wanted:
                await self.delete_trigger(namespace, name)
                results[name] = Applied("deleted", current)
        return results
