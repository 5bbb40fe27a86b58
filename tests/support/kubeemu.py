"""A Kubernetes API server for tests: KMock's emulator with the API semantics operators rely on.

KMock 0.8's `KubernetesEmulator` serves discovery, errors and an object store over real HTTP,
but its store lacks what Kopf and this operator depend on (see the project notes on Kopf on
KMock): resourceVersion/uid/generation, 409 on stale writes, 422 on failed JSON-patch tests,
PUT, generateName, a separate status subresource, label selectors, ownerReference garbage
collection, watches from a resourceVersion, and a JSON watch content type. `Emulator` keeps
KMock's server, discovery and resource registry and replaces the stateful part for resource
URLs with a store that has those semantics. The path parsing is its own, because KMock's
parser fails on `/api/v1/namespaces`.

It is pinned to kmock==0.8: it overrides `RawHandler.__call__`.

Usage (a server on a loopback port, in its own thread and event loop)::

    with EmulatorThread() as kube:
        kube.create(AISERVICES, manifest)
        kube.url  # http://127.0.0.1:PORT for the operator

The pieces a test or a benchmark combines:

- `EmulatorThread`: the server; synchronous `create/get/find/list/patch/delete` on its
  store (not logged), `requests()` / `writes(...)` / `clear_log()` for the HTTP requests
  clients made (method, verb, resource, namespace, name, status code), `inject_fault(...)`
  to answer chosen requests with 409/429/5xx.
- `tests.support.knative.KnativeServing`: Knative Serving's controller and webhook.
- `tests.support.operator.OperatorThread`: the real operator (Kopf) pointed at it.

Not emulated: server-side apply, CRD schema validation and defaulting, admission other
than the registered validators, namespace existence checks, namespace cascade deletion,
protobuf, watch bookmarks.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import copy
import datetime
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp.web
import jsonpatch
import kmock

T = TypeVar("T")
Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """One served resource type."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False

    @classmethod
    def from_crd(cls, crd: Mapping[str, Any]) -> Kind:
        """The served kind of a CustomResourceDefinition (its storage version)."""
        spec = crd["spec"]
        version = next(v for v in spec["versions"] if v.get("storage"))
        return cls(
            group=spec["group"],
            version=version["name"],
            plural=spec["names"]["plural"],
            kind=spec["names"]["kind"],
            namespaced=spec["scope"] == "Namespaced",
            status_subresource="status" in (version.get("subresources") or {}),
        )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)


NAMESPACES = Kind("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True)
EVENTS = Kind("", "v1", "events", "Event")
CONFIGMAPS = Kind("", "v1", "configmaps", "ConfigMap")
CORE_EVENTS = Kind("events.k8s.io", "v1", "events", "Event")
CRDS = Kind(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
    status_subresource=True,
)
AISERVICES = Kind("aiservice.dev", "v1alpha1", "aiservices", "AIService", status_subresource=True)
KSERVICES = Kind("serving.knative.dev", "v1", "services", "Service", status_subresource=True)
REVISIONS = Kind("serving.knative.dev", "v1", "revisions", "Revision", status_subresource=True)
TRIGGERS = Kind("eventing.knative.dev", "v1", "triggers", "Trigger", status_subresource=True)
BROKERS = Kind("eventing.knative.dev", "v1", "brokers", "Broker", status_subresource=True)
KOPF_PEERINGS = Kind("kopf.dev", "v1", "kopfpeerings", "KopfPeering")
KOPF_CLUSTER_PEERINGS = Kind(
    "kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False
)

DEFAULT_KINDS = (
    NAMESPACES,
    EVENTS,
    CONFIGMAPS,
    CORE_EVENTS,
    CRDS,
    AISERVICES,
    KSERVICES,
    REVISIONS,
    TRIGGERS,
    BROKERS,
    KOPF_PEERINGS,
    KOPF_CLUSTER_PEERINGS,
)

Validator = Callable[["Emulator", Kind, Obj], list[str]]
"""Admission check of a resource write: returns the reasons to deny it (empty: allowed)."""


class ApiStatusError(Exception):
    """A request the API server answers with a `Status` failure."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message

    def body(self) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(frozen=True)
class LoggedRequest:
    """One HTTP request to a resource URL, for assertions on what a client did."""

    method: str
    verb: str
    """get, list, watch, create, update, patch, delete."""
    group: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    content_type: str
    query: Mapping[str, str] = field(default_factory=dict)
    code: int = 0


@dataclass
class _Watcher:
    kind: Kind
    namespace: str | None
    selector: Callable[[Obj], bool]
    queue: asyncio.Queue[Obj | None]


# --- Selectors -----------------------------------------------------------------------

_SET_REQ = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    depth, current = 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _requirement(req: str) -> Callable[[Mapping[str, str]], bool]:
    """One requirement of a label selector as a predicate."""
    if match := _SET_REQ.match(req):
        key, op = match.group(1), match.group(2)
        allowed = {v.strip() for v in match.group(3).split(",")}
        return lambda labels: (labels.get(key) in allowed) == (op == "in")
    if "!=" in req:
        key, value = (s.strip() for s in req.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in req:
        key, value = (s.strip() for s in req.replace("==", "=").split("=", 1))
        return lambda labels: labels.get(key) == value
    if req.startswith("!"):
        absent = req[1:].strip()
        return lambda labels: absent not in labels
    return lambda labels: req in labels


def label_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate on labels for a `labelSelector` (equality- and set-based)."""
    checks = [_requirement(req) for req in _split_selector(text)]
    return lambda labels: all(check(labels) for check in checks)


def field_selector(text: str) -> Callable[[Obj], bool]:
    """A predicate for a `fieldSelector` on metadata.name / metadata.namespace."""
    checks: list[Callable[[Obj], bool]] = []
    for req in _split_selector(text):
        negate = "!=" in req
        key, value = (s.strip() for s in re.split(r"!=|==|=", req, maxsplit=1))
        path = key.split(".")

        def check(obj: Obj, p: list[str] = path, v: str = value, n: bool = negate) -> bool:
            current: Any = obj
            for part in p:
                current = current.get(part) if isinstance(current, dict) else None
            return (str(current) == v) != n

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


# --- The emulator --------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: Obj) -> Obj:
    """What `metadata.generation` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Emulator(kmock.KubernetesEmulator):
    """KMock's Kubernetes emulator with a store that behaves like kube-apiserver's.

    All state changes happen synchronously on the server's event loop (no awaits inside a
    write), so a write and its watch event are atomic. In-process methods (`create`,
    `patch`, ...) are what the HTTP layer uses too; in-process calls are not logged.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.kinds: dict[tuple[str, str, str], Kind] = {}
        self.store: dict[tuple[tuple[str, str, str], str | None, str], Obj] = {}
        # Indexes, so lists and garbage collection cost what they return, not the store size.
        self._by_kind: dict[tuple[str, str, str], dict[tuple[str | None, str], Obj]] = (
            collections.defaultdict(dict)
        )
        self._by_namespace: dict[tuple[tuple[str, str, str], str | None], dict[str, Obj]] = (
            collections.defaultdict(dict)
        )
        self._live_uids: set[str] = set()
        self._dependents: dict[str, set[tuple[tuple[str, str, str], str | None, str]]] = (
            collections.defaultdict(set)
        )
        self.validators: dict[tuple[str, str, str], list[Validator]] = collections.defaultdict(list)
        self.log: collections.deque[LoggedRequest] = collections.deque(maxlen=50_000)
        self.history: collections.deque[tuple[int, Kind, Obj]] = collections.deque(maxlen=20_000)
        self._watchers: set[int] = set()
        self._watcher_objs: dict[int, _Watcher] = {}
        self._rv = itertools.count(1)
        self.faults: list[tuple[Callable[[LoggedRequest], bool], ApiStatusError, list[int]]] = []
        self.last_rv = 0
        for kind in DEFAULT_KINDS:
            self.register(kind)

    # --- registry ----------------------------------------------------------------

    def register(self, kind: Kind) -> None:
        """Serve a resource type (and announce it in discovery)."""
        self.kinds[kind.key] = kind
        self.resources[f"{kind.group}/{kind.version}/{kind.plural}"] = kmock.ResourceInfo(
            kind=kind.kind,
            singular=kind.kind.lower(),
            namespaced=kind.namespaced,
            subresources={"status"} if kind.status_subresource else set(),
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        )

    def add_validator(self, kind: Kind, validator: Validator) -> None:
        self.validators[kind.key].append(validator)

    def inject_fault(
        self,
        match: Callable[[LoggedRequest], bool],
        code: int = 409,
        reason: str = "Conflict",
        *,
        times: int = 1,
    ) -> None:
        """Answer the next `times` HTTP requests matching `match` with an error, unprocessed."""
        error = ApiStatusError(code, reason, f"injected {code} {reason}")
        self.faults.append((match, error, [times]))

    def _fault(self, entry: LoggedRequest) -> ApiStatusError | None:
        for match, error, left in self.faults:
            if left[0] > 0 and match(entry):
                left[0] -= 1
                return error
        return None

    # --- reads -------------------------------------------------------------------

    def fetch(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        obj = self.store.get((kind.key, self._ns(kind, namespace), name))
        if obj is None:
            raise ApiStatusError(404, "NotFound", f'{kind.plural} "{name}" not found')
        return copy.deepcopy(obj)

    def find(self, kind: Kind, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.fetch(kind, namespace, name)
        except ApiStatusError:
            return None

    def select(
        self,
        kind: Kind,
        namespace: str | None = None,
        labels: str = "",
        fields: str = "",
    ) -> list[Obj]:
        match = self._matcher(labels, fields)
        candidates: Iterable[tuple[tuple[str | None, str], Obj]]
        if namespace is None:
            candidates = self._by_kind[kind.key].items()
        else:  # one namespace's objects only: a list costs what the namespace holds
            objects = self._by_namespace.get((kind.key, namespace), {})
            candidates = (((namespace, name), obj) for name, obj in objects.items())
        found = [(key, obj) for key, obj in candidates if match(obj)]
        found.sort(key=lambda i: (i[0][0] or "", i[0][1]))
        return [copy.deepcopy(obj) for _, obj in found]

    # --- writes ------------------------------------------------------------------

    def create_object(self, kind: Kind, body: Obj, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        ns = self._ns(kind, namespace or meta.get("namespace") or "default")
        if namespace and meta.get("namespace") not in (None, namespace):
            raise ApiStatusError(400, "BadRequest", "the namespace of the object does not match")
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiStatusError(422, "Invalid", "metadata.name: Required value")
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            while (kind.key, ns, meta["name"]) in self.store:  # as if the client retried
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if (kind.key, ns, meta["name"]) in self.store:
            raise ApiStatusError(
                409, "AlreadyExists", f'{kind.plural} "{meta["name"]}" already exists'
            )
        if ns is not None:
            meta["namespace"] = ns
        obj["apiVersion"] = kind.api_version
        obj["kind"] = kind.kind
        if kind.status_subresource:
            obj.pop("status", None)
        for read_only in ("resourceVersion", "deletionTimestamp", "managedFields"):
            meta.pop(read_only, None)
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        meta["creationTimestamp"] = _now()
        self._admit(kind, obj)
        created = self._commit(kind, None, obj)
        owners = {r.get("uid") for r in meta.get("ownerReferences") or []}
        if owners and not owners & self._uids():
            # The garbage collector removes dependents whose owners are all gone.
            self._remove(kind, created)
        return created

    def replace_object(
        self, kind: Kind, namespace: str | None, name: str, body: Obj, *, status: bool = False
    ) -> Obj:
        old = self.fetch(kind, namespace, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise self._conflict(kind, name)
        new = copy.deepcopy(body)
        return self._update(kind, old, new, status=status)

    def patch_object(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        content_type: str = "application/merge-patch+json",
        status: bool = False,
    ) -> Obj:
        old = self.fetch(kind, namespace, name)
        if "json-patch" in content_type:
            if not isinstance(patch, list):
                raise ApiStatusError(400, "BadRequest", "a JSON patch must be a list")
            try:
                new = jsonpatch.apply_patch(old, patch)
            except jsonpatch.JsonPatchTestFailed as err:
                raise ApiStatusError(422, "Invalid", f"the JSON patch test failed: {err}") from err
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                raise ApiStatusError(422, "Invalid", f"the JSON patch failed: {err}") from err
        elif "apply-patch" in content_type:
            raise ApiStatusError(415, "UnsupportedMediaType", "server-side apply is not emulated")
        else:
            if not isinstance(patch, dict):
                raise ApiStatusError(400, "BadRequest", "a merge patch must be an object")
            rv = (patch.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise self._conflict(kind, name)
            new = _merge(old, patch)
        return self._update(kind, old, new, status=status)

    def delete_object(
        self, kind: Kind, namespace: str | None, name: str, *, propagation: str = "Background"
    ) -> Obj:
        old = self.fetch(kind, namespace, name)
        meta = old["metadata"]
        if meta.get("deletionTimestamp"):
            return old
        if meta.get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            return self._commit(kind, old, new)
        self._remove(kind, old, propagation=propagation)
        return old

    # --- internals ---------------------------------------------------------------

    def _ns(self, kind: Kind, namespace: str | None) -> str | None:
        return namespace if kind.namespaced else None

    def _conflict(self, kind: Kind, name: str) -> ApiStatusError:
        return ApiStatusError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {kind.plural}.{kind.group} "{name}": '
            "the object has been modified; please apply your changes to the latest version "
            "and try again",
        )

    def _matcher(self, labels: str, fields: str) -> Callable[[Obj], bool]:
        by_labels = label_selector(labels) if labels else None
        by_fields = field_selector(fields) if fields else None

        def match(obj: Obj) -> bool:
            if by_labels and not by_labels(obj.get("metadata", {}).get("labels") or {}):
                return False
            return not (by_fields and not by_fields(obj))

        return match

    def _admit(self, kind: Kind, obj: Obj) -> None:
        errors = [e for v in self.validators.get(kind.key, []) for e in v(self, kind, obj)]
        if errors:
            raise ApiStatusError(
                400, "BadRequest", "admission webhook denied the request: " + "; ".join(errors)
            )

    def _update(self, kind: Kind, old: Obj, new: Obj, *, status: bool) -> Obj:
        new.setdefault("metadata", {})
        if kind.status_subresource:
            if status:  # only status changes through /status
                new = {**copy.deepcopy(old), "status": new.get("status")}
                if new["status"] is None:
                    del new["status"]
            elif "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta = new["metadata"]
        for fixed in ("uid", "creationTimestamp", "name", "namespace", "generation"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if old["metadata"].get("deletionTimestamp"):
            meta["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
        else:
            meta.pop("deletionTimestamp", None)
        new["apiVersion"], new["kind"] = kind.api_version, kind.kind
        if new == old:
            return old  # a no-op write changes nothing, not even the resourceVersion
        if _spec_part(new) != _spec_part(old):
            if not status:
                self._admit(kind, new)
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        return self._commit(kind, old, new)

    def _commit(self, kind: Kind, old: Obj | None, new: Obj) -> Obj:
        meta = new["metadata"]
        key = (kind.key, meta.get("namespace") if kind.namespaced else None, meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            if old is not None:
                self._remove(kind, new)
            return new
        rv = next(self._rv)
        self.last_rv = rv
        meta["resourceVersion"] = str(rv)
        self._store(key, new)
        self._emit(rv, kind, "ADDED" if old is None else "MODIFIED", new)
        return copy.deepcopy(new)

    def _remove(self, kind: Kind, obj: Obj, *, propagation: str = "Background") -> None:
        meta = obj["metadata"]
        key = (kind.key, meta.get("namespace") if kind.namespaced else None, meta["name"])
        if key not in self.store:
            return
        self._store(key, None)
        rv = next(self._rv)
        self.last_rv = rv
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(rv)
        self._emit(rv, kind, "DELETED", gone)
        if propagation != "Orphan":
            self._collect_garbage(meta.get("uid", ""))

    def _collect_garbage(self, owner_uid: str) -> None:
        """The garbage collector's background mode after `owner_uid` went: a dependent with
        no other live owner is deleted; one with another live owner is kept, and the
        reference to the gone owner removed (as Kubernetes' collector does)."""
        if not owner_uid:
            return
        dependents = [
            (self.kinds[r], ns, n)
            for r, ns, n in sorted(self._dependents.get(owner_uid, ()), key=str)
        ]
        for kind, ns, name in dependents:
            obj = self.store.get((kind.key, ns, name))
            if obj is None:
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") in self._live_uids for r in refs if r.get("uid") != owner_uid):
                kept = [r for r in refs if r.get("uid") != owner_uid]
                self.patch_object(kind, ns, name, {"metadata": {"ownerReferences": kept}})
            else:
                self.delete_object(kind, ns, name)

    def _uids(self) -> set[str]:
        return self._live_uids

    def _store(self, key: tuple[tuple[str, str, str], str | None, str], obj: Obj | None) -> None:
        """Put (or with None, drop) an object, keeping the indexes in step."""
        old = self.store.pop(key, None)
        if old is not None:
            self._live_uids.discard(old["metadata"].get("uid", ""))
        for ref in (old or {}).get("metadata", {}).get("ownerReferences") or []:
            self._dependents[ref.get("uid", "")].discard(key)
        self._by_kind[key[0]].pop((key[1], key[2]), None)
        self._by_namespace[key[0], key[1]].pop(key[2], None)
        if obj is None:
            return
        self.store[key] = obj
        self._live_uids.add(obj["metadata"].get("uid", ""))
        self._by_kind[key[0]][(key[1], key[2])] = obj
        self._by_namespace[key[0], key[1]][key[2]] = obj
        for ref in obj.get("metadata", {}).get("ownerReferences") or []:
            self._dependents[ref.get("uid", "")].add(key)

    def _emit(self, rv: int, kind: Kind, kind_of_event: str, obj: Obj) -> None:
        event = {"type": kind_of_event, "object": copy.deepcopy(obj)}
        self.history.append((rv, kind, event))
        for watcher in list(self._watcher_objs.values()):
            if watcher.kind.key != kind.key:
                continue
            ns = obj.get("metadata", {}).get("namespace")
            if watcher.namespace is not None and ns != watcher.namespace:
                continue
            if watcher.selector(obj):
                watcher.queue.put_nowait(event)

    def subscribe(
        self, kind: Kind, namespace: str | None = None, labels: str = ""
    ) -> tuple[int, asyncio.Queue[Obj | None]]:
        """A queue of this kind's future watch events (for in-process controllers)."""
        queue: asyncio.Queue[Obj | None] = asyncio.Queue()
        token = id(queue)
        self._watcher_objs[token] = _Watcher(kind, namespace, self._matcher(labels, ""), queue)
        return token, queue

    def unsubscribe(self, token: int) -> None:
        self._watcher_objs.pop(token, None)

    def close_watches(self) -> None:
        """End every open watch stream (before the server stops)."""
        for watcher in list(self._watcher_objs.values()):
            watcher.queue.put_nowait(None)

    # --- HTTP --------------------------------------------------------------------

    def _route(self, path: str) -> tuple[Kind, str | None, str | None, str | None] | None:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None  # discovery
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self.kinds.get((group, version, rest[2]))
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        kind = self.kinds.get((group, version, rest[0]))
        if kind is None:
            raise ApiStatusError(
                404, "NotFound", f"the server could not find the requested resource {path}"
            )
        name = rest[1] if len(rest) > 1 else None
        sub = "/".join(rest[2:]) or None
        return kind, namespace, name, sub

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            target = self._route(raw_request.path)
        except ApiStatusError as err:
            return aiohttp.web.json_response(err.body(), status=err.code)
        if target is None:
            return await super().__call__(raw_request)
        kind, namespace, name, sub = target
        query = dict(raw_request.query)
        method = raw_request.method.upper()
        verb = {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(method, "get" if name else "list")
        if method == "GET" and query.get("watch") in ("true", "1"):
            verb = "watch"
        content_type = raw_request.headers.get("Content-Type", "")
        entry = LoggedRequest(
            method, verb, kind.group, kind.plural, namespace, name, sub, content_type, query
        )
        try:
            if verb == "watch":
                self.log.append(entry)
                return await self._serve_watch_stream(raw_request, kind, namespace, name, query)
            fault = self._fault(entry)
            if fault is not None:
                raise fault
            body: Any = None
            raw = await raw_request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError as err:
                    raise ApiStatusError(415, "UnsupportedMediaType", "only JSON bodies") from err
            result, code = self._dispatch(
                verb, kind, namespace, name, sub, query, body, content_type
            )
            self.log.append(_with_code(entry, code))
            return aiohttp.web.json_response(result, status=code)
        except ApiStatusError as err:
            self.log.append(_with_code(entry, err.code))
            return aiohttp.web.json_response(err.body(), status=err.code)

    def _dispatch(
        self,
        verb: str,
        kind: Kind,
        namespace: str | None,
        name: str | None,
        sub: str | None,
        query: Mapping[str, str],
        body: Any,
        content_type: str,
    ) -> tuple[Obj, int]:
        if sub not in (None, "status"):
            raise ApiStatusError(404, "NotFound", f"subresource {sub} is not served")
        status = sub == "status"
        if status and not kind.status_subresource:
            raise ApiStatusError(404, "NotFound", f"{kind.plural} has no status subresource")
        if verb == "list":
            items = self.select(
                kind, namespace, query.get("labelSelector", ""), query.get("fieldSelector", "")
            )
            return {
                "apiVersion": kind.api_version,
                "kind": f"{kind.kind}List",
                "metadata": {"resourceVersion": str(self.last_rv)},
                "items": items,
            }, 200
        if verb == "create":
            if not isinstance(body, dict):
                raise ApiStatusError(400, "BadRequest", "the body must be an object")
            return self.create_object(kind, body, namespace), 201
        assert name is not None
        if verb == "get":
            return self.fetch(kind, namespace, name), 200
        if verb == "update":
            if not isinstance(body, dict):
                raise ApiStatusError(400, "BadRequest", "the body must be an object")
            return self.replace_object(kind, namespace, name, body, status=status), 200
        if verb == "patch":
            return self.patch_object(
                kind, namespace, name, body, content_type=content_type, status=status
            ), 200
        if verb == "delete":
            propagation = query.get("propagationPolicy") or (
                (body or {}).get("propagationPolicy") if isinstance(body, dict) else None
            )
            return self.delete_object(
                kind, namespace, name, propagation=propagation or "Background"
            ), 200
        raise ApiStatusError(405, "MethodNotAllowed", verb)

    async def _serve_watch_stream(
        self,
        raw_request: aiohttp.web.BaseRequest,
        kind: Kind,
        namespace: str | None,
        name: str | None,
        query: Mapping[str, str],
    ) -> aiohttp.web.StreamResponse:
        fields = query.get("fieldSelector", "")
        if name:
            fields = ",".join(f for f in (fields, f"metadata.name={name}") if f)
        token, queue = self.subscribe(kind, namespace, query.get("labelSelector", ""))
        self._watcher_objs[token].selector = self._matcher(query.get("labelSelector", ""), fields)
        match = self._watcher_objs[token].selector
        since = query.get("resourceVersion", "")
        initial: list[Obj] = []
        if since and since != "0":
            oldest = self.history[0][0] if self.history else self.last_rv + 1
            if int(since) + 1 < oldest and int(since) < self.last_rv:
                initial.append(_expired(since))
            else:
                for rv, k, event in self.history:
                    if rv > int(since) and k.key == kind.key:
                        obj = event["object"]
                        ns = obj["metadata"].get("namespace")
                        if (namespace is None or ns == namespace) and match(obj):
                            initial.append(event)
        else:
            initial = [{"type": "ADDED", "object": o} for o in self.select(kind, namespace)]
            initial = [e for e in initial if match(e["object"])]
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw_request)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            for event in initial:
                await response.write(json.dumps(event).encode() + b"\n")
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    live = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if live is None:
                    break
                await response.write(json.dumps(live).encode() + b"\n")
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            self.unsubscribe(token)
        return response


def _with_code(entry: LoggedRequest, code: int) -> LoggedRequest:
    return LoggedRequest(**{**entry.__dict__, "code": code})


def _expired(since: str) -> Obj:
    return {
        "type": "ERROR",
        "object": {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": 410,
            "reason": "Expired",
            "message": f"too old resource version: {since}",
        },
    }


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


# --- Running it ----------------------------------------------------------------------


class EmulatorThread:
    """The emulator on a loopback port, served from its own thread and event loop.

    Test code is synchronous: every method hands its work to the emulator's loop and waits.
    `controllers` are coroutine factories started on that loop next to the server (e.g. the
    Knative Serving stand-in).
    """

    def __init__(self, emulator: Emulator | None = None, *, port: int = 0) -> None:
        self.emulator = emulator if emulator is not None else Emulator()  # empty is falsy
        self.port = port
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.url = ""
        self.error: BaseException | None = None

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)
        if self.error:
            raise self.error
        if not self.url:
            raise RuntimeError("the API emulator did not start")

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as err:
            self.error = err
            self._started.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server_port = self.port or None
        async with self.emulator, kmock.Server(self.emulator, port=server_port) as server:
            self.url = f"http://{server.host}:{server.port}"
            self._started.set()
            await self._stop.wait()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.emulator.close_watches()
            await asyncio.sleep(0.05)

    # --- thread-safe access ---------------------------------------------------------

    def call(self, fn: Callable[[], T], timeout: float = 10) -> T:
        """Run `fn` on the emulator's loop and return its result."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def spawn(self, coro_factory: Callable[[], Any]) -> None:
        """Start a background task (a controller) on the emulator's loop."""
        done: Future[None] = Future()

        def start() -> None:
            self._tasks.append(self.loop.create_task(coro_factory()))
            done.set_result(None)

        self.loop.call_soon_threadsafe(start)
        done.result(10)

    def create(self, kind: Kind, body: Obj, namespace: str | None = None) -> Obj:
        return self.call(lambda: self.emulator.create_object(kind, body, namespace))

    def get(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        return self.call(lambda: self.emulator.fetch(kind, namespace, name))

    def find(self, kind: Kind, namespace: str | None, name: str) -> Obj | None:
        return self.call(lambda: self.emulator.find(kind, namespace, name))

    def list(
        self, kind: Kind, namespace: str | None = None, labels: str = ""
    ) -> builtins.list[Obj]:
        return self.call(lambda: self.emulator.select(kind, namespace, labels))

    def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        content_type: str = "application/merge-patch+json",
        status: bool = False,
    ) -> Obj:
        return self.call(
            lambda: self.emulator.patch_object(
                kind, namespace, name, patch, content_type=content_type, status=status
            )
        )

    def delete(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        return self.call(lambda: self.emulator.delete_object(kind, namespace, name))

    def inject_fault(
        self, match: Callable[[LoggedRequest], bool], code: int = 409, *, times: int = 1
    ) -> None:
        """The next `times` requests matching `match` fail with `code` (see Emulator)."""
        reason = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError"}.get(code, "")
        self.call(lambda: self.emulator.inject_fault(match, code, reason or "Error", times=times))

    def requests(self) -> builtins.list[LoggedRequest]:
        return self.call(lambda: list(self.emulator.log))

    def clear_log(self) -> None:
        self.call(self.emulator.log.clear)

    def writes(self, *plurals: str, namespace: str | None = None) -> builtins.list[LoggedRequest]:
        """Logged create/update/patch/delete requests to these resources."""
        return [
            r
            for r in self.requests()
            if r.verb in ("create", "update", "patch", "delete")
            and (not plurals or r.plural in plurals)
            and (namespace is None or r.namespace == namespace)
        ]


def wait_for(
    condition: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll until `condition()` is truthy; return it. Fails with the last value seen."""
    import time

    deadline = time.monotonic() + timeout
    value: T = condition()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}: last {value!r}")
        time.sleep(interval)
        value = condition()
    return value


def iter_conditions(obj: Obj) -> Iterator[Obj]:
    yield from (obj.get("status") or {}).get("conditions") or []


def condition(obj: Obj | None, kind_of_condition: str) -> Obj:
    """The condition of that type in an object's status (empty if absent)."""
    for cond in iter_conditions(obj or {}):
        if cond.get("type") == kind_of_condition:
            return cond
    return {}


def owned_by(obj: Obj, owners: Iterable[Obj]) -> bool:
    uids = {o["metadata"]["uid"] for o in owners}
    return any(r.get("uid") in uids for r in obj["metadata"].get("ownerReferences") or [])


def main(argv: builtins.list[str] | None = None) -> None:
    """`python -m tests.support.kubeemu [--port N]`: serve the emulator (with the Knative
    Serving stand-in) until interrupted, for kubectl (`--validate=false`) or a local operator
    (`AISVC_KUBE_SERVER=<url> python -m aiservice_operator`)."""
    import argparse
    import time

    from tests.support.knative import KnativeServing

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="listen port (default: any free)")
    args = parser.parse_args(argv)
    emulator = Emulator()
    thread = EmulatorThread(emulator, port=args.port)
    with thread:
        KnativeServing(thread).start()
        print(f"Kubernetes API emulator at {thread.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
