"""A stand-in for Knative Serving's controllers and webhook, on the API emulator.

Knative Serving cannot run on a machine without a cluster, so this module plays its part at
the API boundary, the way the operator sees it: for every Knative Service it creates the
Revision named by `spec.template.metadata.name`, marks it Ready (at once, or only once a
test releases it), and fills the Service status as Knative's controllers do
(observedGeneration, Ready/ConfigurationsReady/RoutesReady, latestCreatedRevisionName,
latestReadyRevisionName, url, traffic with tag URLs). Its webhook part denies what Knative's
webhook denies that the operator could get wrong: a template name not starting with
`<service>-`, a changed template reusing an existing revision name, traffic entries that are
not exactly one of revisionName / latestRevision, and percentages not summing to 100.

It records every traffic target that named a revision that was not Ready at that moment in
`unready_targets`: revision-before-traffic sequencing means that list stays empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import re
from typing import Any

from tests.support.knative_routes import traffic_status as traffic_status_of
from tests.support.kubeemu import KSERVICES, REVISIONS, Emulator, EmulatorThread, Kind, Obj

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _ready(obj: Obj | None) -> bool:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _condition(kind_of_condition: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {"type": kind_of_condition, "status": "True" if ok else "False"}
    if not ok:
        cond.update(reason=reason or "NotReady", message=message)
    return cond


class KnativeServing:
    """Knative Serving's controller and webhook behaviour for Services and Revisions."""

    def __init__(
        self, kube: EmulatorThread, cluster_domain: str = "cluster.local", ready_after: float = 0
    ) -> None:
        self.kube = kube
        self.emulator: Emulator = kube.emulator
        self.cluster_domain = cluster_domain
        self.held: set[str] = set()
        """Revision name patterns (fnmatch) that stay not Ready until released."""
        self.failed: set[str] = set()
        """Revision name patterns that fail (Ready=False, reason RevisionFailed)."""
        self.ready_after = ready_after
        """Seconds a new revision takes to become Ready (image pull, model load); 0: at once."""
        self._not_before: dict[str, float] = {}
        self.unready_targets: list[tuple[str, str]] = []
        self.created_revisions: list[str] = []
        self.emulator.add_validator(KSERVICES, self._validate)

    def start(self) -> KnativeServing:
        self.kube.spawn(self._run)
        return self

    # --- controls for tests ----------------------------------------------------------

    def hold(self, pattern: str) -> None:
        """Keep revisions matching `pattern` not Ready (e.g. a slow image pull)."""
        self.kube.call(lambda: self.held.add(pattern))

    def release(self, pattern: str) -> None:
        """Let held revisions become Ready and update every Service."""

        def run() -> None:
            self.held.discard(pattern)
            self._resync()

        self.kube.call(run)

    # --- webhook ---------------------------------------------------------------------

    def _validate(self, emulator: Emulator, kind: Kind, svc: Obj) -> list[str]:
        errors: list[str] = []
        name = svc["metadata"]["name"]
        ns = svc["metadata"].get("namespace")
        template = (svc.get("spec") or {}).get("template") or {}
        rev = (template.get("metadata") or {}).get("name")
        if rev:
            if not rev.startswith(f"{name}-"):
                errors.append(f"spec.template.metadata.name: {rev!r} must have prefix {name}-")
            if not DNS_1035.match(rev) or len(rev) > 63:
                errors.append(f"spec.template.metadata.name: {rev!r} is not a DNS-1035 label")
            existing = emulator.find(REVISIONS, ns, rev)
            if existing is not None and existing.get("spec") != template.get("spec"):
                errors.append(
                    f"spec.template: saw changes to revision {rev!r} without a name change"
                )
        traffic = (svc.get("spec") or {}).get("traffic")
        if traffic:
            total = 0
            for index, target in enumerate(traffic):
                has_name = bool(target.get("revisionName"))
                latest = target.get("latestRevision")
                if has_name == bool(latest):
                    errors.append(
                        f"spec.traffic[{index}]: exactly one of revisionName or latestRevision"
                    )
                percent = target.get("percent", 0)
                if not isinstance(percent, int) or not 0 <= percent <= 100:
                    errors.append(f"spec.traffic[{index}].percent: must be 0..100")
                else:
                    total += percent
            if total != 100:
                errors.append(f"spec.traffic: traffic targets sum to {total}, want 100")
        return errors

    # --- controller ------------------------------------------------------------------

    async def _run(self) -> None:
        token, queue = self.emulator.subscribe(KSERVICES)
        try:
            self._resync()
            while True:
                event = await queue.get()
                if event is None:
                    return
                if event["type"] != "DELETED":
                    self._reconcile(event["object"])
        finally:
            self.emulator.unsubscribe(token)

    def _resync(self) -> None:
        for svc in self.emulator.select(KSERVICES):
            self._reconcile(svc)

    def _matches(self, patterns: set[str], name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    def _reconcile(self, svc: Obj) -> None:
        with contextlib.suppress(Exception):
            self._reconcile_or_fail(svc)

    def _reconcile_or_fail(self, svc: Obj) -> None:
        meta = svc["metadata"]
        name, ns = meta["name"], meta.get("namespace")
        svc = self.emulator.fetch(KSERVICES, ns, name)  # the latest state, not the event's
        spec = svc.get("spec") or {}
        template = spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        generation = svc["metadata"].get("generation", 1)
        rev_name = tmeta.get("name") or f"{name}-{generation:05d}"
        revision = self._revision_for(svc, rev_name, generation)
        self._settle_revision(revision)

        revisions = {
            r["metadata"]["name"]: r
            for r in self.emulator.select(
                REVISIONS, ns, labels=f"serving.knative.dev/service={name}"
            )
        }
        ready = {n for n, r in revisions.items() if _ready(r)}
        status: Obj = dict(svc.get("status") or {})
        latest_ready = rev_name if rev_name in ready else status.get("latestReadyRevisionName")
        domain = f"{ns}.svc.{self.cluster_domain}"
        traffic_status, unready = traffic_status_of(name, domain, spec, ready, latest_ready)
        routes_ok = not unready
        self.unready_targets.extend((name, target) for target in unready if target)
        config_ok = rev_name in ready
        failed = self._matches(self.failed, rev_name)
        new_status: Obj = {
            "observedGeneration": generation,
            "latestCreatedRevisionName": rev_name,
            "url": f"http://{name}.{domain}",
            "address": {"url": f"http://{name}.{domain}"},
            # Like Knative's Route: the served traffic changes only once every target is ready.
            "traffic": traffic_status if routes_ok else status.get("traffic", []),
            "conditions": [
                _condition(
                    "ConfigurationsReady",
                    config_ok,
                    "RevisionFailed" if failed else "RevisionMissing",
                    f"Revision {rev_name!r} is not ready",
                ),
                _condition("Ready", config_ok and routes_ok, "NotReady", "not all routes ready"),
                _condition(
                    "RoutesReady", routes_ok, "RevisionMissing", "a target revision is not ready"
                ),
            ],
        }
        if latest_ready:
            new_status["latestReadyRevisionName"] = latest_ready
        if svc.get("status") != new_status:
            self.emulator.patch_object(KSERVICES, ns, name, {"status": new_status}, status=True)

    def _revision_for(self, svc: Obj, rev_name: str, generation: int) -> Obj:
        """The Revision of the Service's template, created as Knative's Configuration
        would when it does not exist yet."""
        name, ns = svc["metadata"]["name"], svc["metadata"].get("namespace")
        template = (svc.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        revision = self.emulator.find(REVISIONS, ns, rev_name)
        if revision is None:
            revision = self.emulator.create_object(
                REVISIONS,
                {
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
                        "ownerReferences": [
                            {
                                "apiVersion": "serving.knative.dev/v1",
                                "kind": "Service",
                                "name": name,
                                "uid": svc["metadata"]["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": template.get("spec") or {},
                },
            )
            self.created_revisions.append(rev_name)
            if self.ready_after > 0:
                loop = asyncio.get_running_loop()
                self._not_before[rev_name] = loop.time() + self.ready_after
                loop.call_later(self.ready_after, self._resync)
        return revision

    def _settle_revision(self, revision: Obj) -> None:
        name = revision["metadata"]["name"]
        ns = revision["metadata"].get("namespace")
        if self._matches(self.failed, name):
            cond = _condition("Ready", False, "RevisionFailed", "the container exited")
        elif self._matches(self.held, name) or (
            asyncio.get_running_loop().time() < self._not_before.get(name, 0)
        ):
            cond = {"type": "Ready", "status": "Unknown", "reason": "Deploying"}
        else:
            cond = _condition("Ready", True)
        status: Any = {"observedGeneration": 1, "conditions": [cond]}
        if revision.get("status") != status:
            self.emulator.patch_object(REVISIONS, ns, name, {"status": status}, status=True)
