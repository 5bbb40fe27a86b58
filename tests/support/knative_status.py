"""THE ONE STAND-IN OF THE CLUSTER TIER: Knative Serving's controllers.

They cannot run here (no pods, no networking layer), so this thread does their part at the
API boundary, through the real kube-apiserver and as Knative's controllers would: for every
Knative Service it creates the Revision named by `spec.template.metadata.name` (admitted by
Knative's real webhook, owned by the Service so the real garbage collector removes it), marks
it Ready through the `status` subresource, and writes the Service's status (observedGeneration,
Ready/ConfigurationsReady/RoutesReady, latestCreated/ReadyRevisionName, url, traffic with tag
URLs) through the `status` subresource. Everything else is the real servers."""

from __future__ import annotations

import fnmatch
import threading
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.knative_routes import traffic_status

SERVING = "/apis/serving.knative.dev/v1"
Obj = dict[str, Any]


def _cond(kind: str, ok: bool) -> Obj:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    c: Obj = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": now}
    if not ok:
        c.update(reason="NotReady", message="revision not ready")
    return c


def _ready(obj: Obj) -> bool:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def _strip(status: Obj) -> Obj:
    """A status without its conditions' transition times (Knative keeps them on no change)."""
    out = dict(status)
    out["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in out.get("conditions") or []
    ]
    return out


def _owner(obj: Obj) -> Obj:
    return {
        "apiVersion": "serving.knative.dev/v1", "kind": obj["kind"],
        "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
        "controller": True, "blockOwnerDeletion": True,
    }  # fmt: skip


class KnativeStatus:
    def __init__(self, client: httpx.Client, cluster_domain: str = "cluster.local") -> None:
        self.client = client
        self.cluster_domain = cluster_domain
        self.held: set[str] = set()
        """Revision name patterns (fnmatch) kept not Ready until released."""
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="knative-status", daemon=True)

    def __enter__(self) -> KnativeStatus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def hold(self, pattern: str) -> None:
        self.held.add(pattern)

    def release(self, pattern: str) -> None:
        self.held.discard(pattern)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                listed = self.client.get(f"{SERVING}/services")
                listed.raise_for_status()
                for svc in listed.json()["items"]:
                    self._reconcile(svc)
            except Exception as err:  # the apiserver may be restarting under the test
                self.errors.append(repr(err))

    def _patch_status(self, path: str, status: Obj) -> None:
        done = self.client.patch(
            path, json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )  # fmt: skip
        if done.status_code >= 300:
            self.errors.append(f"{path}: {done.text}")

    def _configuration(self, svc: Obj, template: Obj) -> Obj | None:
        """The Service's Configuration (owned by it, owning its Revisions), as Knative's
        Service controller keeps it."""
        meta = svc["metadata"]
        path = f"{SERVING}/namespaces/{meta['namespace']}/configurations"
        body: Obj = {
            "apiVersion": "serving.knative.dev/v1", "kind": "Configuration",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "labels": {"serving.knative.dev/service": meta["name"]},
                         "ownerReferences": [_owner(svc)]},
            "spec": {"template": template},
        }  # fmt: skip
        got = self.client.get(f"{path}/{meta['name']}")
        if got.status_code == 404:
            done = self.client.post(path, json=body)
        else:
            live = got.json()
            if live["spec"].get("template") == template:
                return dict(live)
            live["spec"]["template"] = template
            done = self.client.put(f"{path}/{meta['name']}", json=live)
        if done.status_code >= 300:
            self.errors.append(f"configuration {meta['name']}: {done.text}")
            return None
        return dict(done.json())

    def _reconcile(self, svc: Obj) -> None:
        meta = svc["metadata"]
        name, ns = meta["name"], meta["namespace"]
        if meta.get("deletionTimestamp"):
            return
        spec = svc.get("spec") or {}
        template = spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        generation = meta.get("generation", 1)
        rev_name = tmeta.get("name") or f"{name}-{generation:05d}"
        configuration = self._configuration(svc, template)
        if configuration is None:
            return
        base = f"{SERVING}/namespaces/{ns}/revisions"
        got = self.client.get(f"{base}/{rev_name}")
        if got.status_code == 404:
            body: Obj = {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Revision",
                "metadata": {
                    "name": rev_name,
                    "namespace": ns,
                    "labels": {
                        **(tmeta.get("labels") or {}),
                        "serving.knative.dev/service": name,
                        "serving.knative.dev/configuration": name,
                        "serving.knative.dev/configurationGeneration": str(generation),
                    },
                    "annotations": dict(tmeta.get("annotations") or {}),
                    "ownerReferences": [_owner(configuration)],
                },
                "spec": template.get("spec") or {},
            }  # fmt: skip
            made = self.client.post(base, json=body)
            if made.status_code >= 300:
                self.errors.append(f"revision {ns}/{rev_name}: {made.text}")
                return
            revision = made.json()
        else:
            revision = got.json()
        want_ready = not any(fnmatch.fnmatchcase(rev_name, p) for p in self.held)
        if _ready(revision) != want_ready or not (revision.get("status") or {}).get("conditions"):
            self._patch_status(
                f"{base}/{rev_name}/status",
                {"observedGeneration": 1, "conditions": [_cond("Ready", want_ready)]},
            )
        revisions = self.client.get(
            base, params={"labelSelector": f"serving.knative.dev/service={name}"}
        ).json()["items"]
        ready = {
            r["metadata"]["name"]
            for r in revisions
            if _ready(r) and not any(fnmatch.fnmatchcase(r["metadata"]["name"], p)
                                     for p in self.held)
        }  # fmt: skip
        status: Obj = dict(svc.get("status") or {})
        latest_ready = rev_name if rev_name in ready else status.get("latestReadyRevisionName")
        domain = f"{ns}.svc.{self.cluster_domain}"
        traffic, unready = traffic_status(name, domain, spec, ready, latest_ready)
        routes_ok = not unready
        config_ok = rev_name in ready
        new: Obj = {
            "observedGeneration": generation,
            "latestCreatedRevisionName": rev_name,
            "url": f"http://{name}.{domain}",
            "address": {"url": f"http://{name}.{domain}"},
            # Like Knative's Route: served traffic changes only once every target is ready.
            "traffic": traffic if routes_ok else status.get("traffic", []),
            "conditions": [
                _cond("ConfigurationsReady", config_ok),
                _cond("Ready", config_ok and routes_ok),
                _cond("RoutesReady", routes_ok),
            ],
        }
        if latest_ready:
            new["latestReadyRevisionName"] = latest_ready
        if _strip({k: status.get(k) for k in new}) != _strip(new):
            self._patch_status(f"{SERVING}/namespaces/{ns}/services/{name}/status", new)
