"""The real Kopf operator against the API emulator over loopback HTTP, with Knative Serving
played by its stand-in (tests/support/knative.py): create, sequencing, update, invalid spec,
delete, drift.

Why the emulator: the finer cases the cluster tier does not repeat (drift reverted,
revision-before-traffic sequencing, InvalidSpec on a stored object the CRD now refuses,
which a real API server never stores); create, edit, delete and NameConflict run for real in
tests/cluster/test_operator.py.
"""

from __future__ import annotations

from typing import Any

from tests.support.aiservices import manifest, ready, traffic
from tests.support.knative import KnativeServing
from tests.support.kubeemu import (
    AISERVICES,
    EVENTS,
    KSERVICES,
    REVISIONS,
    TRIGGERS,
    EmulatorThread,
    condition,
    wait_for,
)
from tests.support.operator import OperatorThread


def events(kube: EmulatorThread, ns: str, name: str) -> list[tuple[str, str]]:
    return [
        (e.get("reason", ""), e.get("message", ""))
        for e in kube.list(EVENTS, ns)
        if (e.get("involvedObject") or {}).get("name") == name
    ]


def test_create_builds_children_and_reports_readiness(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    knative.hold("svc-v1-*")
    owner = kube.create(AISERVICES, manifest("svc", ns))

    pending = ready(kube, ns, "svc", status="False")
    assert condition(pending, "Ready")["reason"] == "RevisionPending"
    ksvc = kube.get(KSERVICES, ns, "svc")
    labels = ksvc["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "aiservice-operator"
    assert labels["aiservice.dev/name"] == "svc"
    ref = ksvc["metadata"]["ownerReferences"][0]
    assert ref["uid"] == owner["metadata"]["uid"] and ref["controller"] is True
    template = ksvc["spec"]["template"]
    assert template["metadata"]["name"].startswith("svc-v1-")
    env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
    assert env["AISVC_MODEL_URI"] == "file:///models/v1.pt"
    assert ksvc["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    (trigger,) = kube.list(TRIGGERS, ns)
    assert trigger["spec"]["broker"] == "default"
    assert trigger["spec"]["filters"][0] == {"exact": {"type": "com.example.review.submitted"}}
    assert trigger["spec"]["subscriber"]["ref"]["name"] == "svc"
    sink = trigger["spec"]["delivery"]["deadLetterSink"]["uri"]
    assert sink.endswith(f"/v1/namespaces/{ns}/aiservices/svc/dead-letters")
    assert trigger["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]

    knative.release("svc-v1-*")
    done = ready(kube, ns, "svc")
    revision = template["metadata"]["name"]
    assert done["status"]["url"] == f"http://svc.{ns}.svc.cluster.local"
    routed = [t for t in done["status"]["traffic"] if t["percent"]]
    assert routed == [
        {
            "model": "v1",
            "revisionName": revision,
            "percent": 100,
            "tag": "stable",
            "url": f"http://stable-svc.{ns}.svc.cluster.local",
        }
    ]
    reasons = wait_for(
        lambda: (
            {r for r, _ in events(kube, ns, "svc")} >= {"RevisionReady", "Ready"}
            and events(kube, ns, "svc")
        ),
        what="events",
    )
    # A few Events tell the story; routine waiting (RevisionPending) is not one of them.
    assert sorted(r for r, _ in reasons) == ["Created", "Ready", "RevisionReady"]
    assert "Triggers" in dict(reasons)["Created"]


def test_traffic_reaches_a_revision_only_once_it_is_ready(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    knative.hold("two-v2-*")
    kube.create(
        AISERVICES,
        manifest(
            "two",
            ns,
            models=[
                {"name": "v1", "uri": "file:///models/v1.pt"},
                {"name": "v2", "uri": "file:///models/v2.pt"},
            ],
            traffic={
                "stable": "v1",
                "split": [{"model": "v1", "percent": 80}, {"model": "v2", "percent": 20}],
            },
        ),
    )

    def v1_serving_v2_rolling() -> list[dict[str, Any]] | None:
        ksvc = kube.find(KSERVICES, ns, "two")
        if not ksvc or not ksvc["spec"]["template"]["metadata"]["name"].startswith("two-v2-"):
            return None
        return traffic(kube, ns, "two")

    routes = wait_for(v1_serving_v2_rolling, what="v1 routed while v2 rolls")
    assert [(t["tag"], t["percent"]) for t in routes] == [("stable", 100), ("v1", 0)]
    status = ready(kube, ns, "two", status="False")
    assert condition(status, "Ready")["reason"] == "RevisionPending"
    assert "v2" in condition(status, "Ready")["message"]

    knative.release("two-v2-*")
    done = ready(kube, ns, "two")
    split = {t["model"]: t["percent"] for t in done["status"]["traffic"] if t["percent"]}
    assert split == {"v1": 80, "v2": 20}
    assert kube.get(KSERVICES, ns, "two")["spec"]["template"]["metadata"]["name"].startswith(
        "two-v1-"
    )
    assert [t for t in knative.unready_targets if t[0] == "two"] == []


def test_spec_update_rolls_children_and_prunes_stale_triggers(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    kube.create(AISERVICES, manifest("upd", ns))
    first = ready(kube, ns, "upd")
    (old_trigger,) = kube.list(TRIGGERS, ns)
    old_revision = first["status"]["traffic"][0]["revisionName"]

    kube.patch(
        AISERVICES,
        ns,
        "upd",
        {
            "spec": {
                "models": [{"name": "v1", "uri": "file:///models/v1-retrained.pt"}],
                "consumes": [
                    {
                        "type": "com.example.review.submitted",
                        "filters": [{"prefix": {"source": "/shop/"}}],
                    }
                ],
                "autoscaling": {"minScale": 1, "maxScale": 5},
            }
        },
    )
    done = ready(kube, ns, "upd")
    assert done["status"]["observedGeneration"] == 2
    new_revision = done["status"]["traffic"][0]["revisionName"]
    assert new_revision != old_revision and new_revision.startswith("upd-v1-")
    template = kube.get(KSERVICES, ns, "upd")["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "5"
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    (trigger,) = kube.list(TRIGGERS, ns)
    assert trigger["metadata"]["name"] != old_trigger["metadata"]["name"]
    assert {"prefix": {"source": "/shop/"}} in trigger["spec"]["filters"]
    assert {r["metadata"]["name"] for r in kube.list(REVISIONS, ns)} == {
        old_revision,
        new_revision,
    }


def test_invalid_spec_is_reported_once_and_others_keep_reconciling(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    # Created straight into the store: no schema validation stands in the way.
    bad = manifest("bad", ns, traffic={"stable": "v9"}, delivery={"retry": -1})
    kube.create(AISERVICES, bad)
    kube.create(AISERVICES, manifest("good", ns))

    invalid = ready(kube, ns, "bad", status="False")
    cond = condition(invalid, "Ready")
    assert cond["reason"] == "InvalidSpec"
    assert "spec.traffic.stable" in cond["message"] and "spec.delivery.retry" in cond["message"]
    ready(kube, ns, "good")
    assert kube.find(KSERVICES, ns, "bad") is None
    # Kopf took the failure as final: the change is recorded as handled, no retry is pending.
    annotations = wait_for(
        lambda: (
            (a := kube.get(AISERVICES, ns, "bad")["metadata"].get("annotations") or {})
            and "aiservice.dev/last-handled-configuration" in a
            and a
        ),
        what="the change recorded as handled",
    )
    assert not [k for k in annotations if k.startswith("aiservice.dev/reconcile_aiservice")]
    assert ("InvalidSpec" in {r for r, _ in events(kube, ns, "bad")}) or wait_for(
        lambda: "InvalidSpec" in {r for r, _ in events(kube, ns, "bad")}, what="event"
    )

    kube.patch(AISERVICES, ns, "bad", {"spec": {"traffic": {"stable": "v1"}, "delivery": None}})
    fixed = ready(kube, ns, "bad")
    assert fixed["status"]["observedGeneration"] == 2


def test_deleting_the_aiservice_removes_its_children(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    kube.create(AISERVICES, manifest("gone", ns))
    ready(kube, ns, "gone")
    assert kube.list(TRIGGERS, ns) and kube.list(REVISIONS, ns)

    kube.delete(AISERVICES, ns, "gone")
    wait_for(lambda: kube.find(AISERVICES, ns, "gone") is None, what="deletion")
    assert kube.find(KSERVICES, ns, "gone") is None
    assert kube.list(TRIGGERS, ns) == [] and kube.list(REVISIONS, ns) == []


def test_drift_in_children_is_reverted(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    kube.create(AISERVICES, manifest("drift", ns))
    ready(kube, ns, "drift")
    desired = kube.get(KSERVICES, ns, "drift")
    annotations = desired["spec"]["template"]["metadata"]["annotations"]
    (trigger,) = kube.list(TRIGGERS, ns)

    kube.patch(
        KSERVICES,
        ns,
        "drift",
        {
            "spec": {
                "template": {
                    "metadata": {"annotations": {"autoscaling.knative.dev/max-scale": "99"}}
                }
            }
        },
    )
    wait_for(
        lambda: (
            kube.get(KSERVICES, ns, "drift")["spec"]["template"]["metadata"]["annotations"]
            == annotations
        ),
        what="the Knative Service reverted",
    )
    assert kube.get(KSERVICES, ns, "drift")["spec"] == desired["spec"]

    kube.delete(TRIGGERS, ns, trigger["metadata"]["name"])
    recreated = wait_for(lambda: kube.list(TRIGGERS, ns), what="the Trigger recreated")
    assert recreated[0]["spec"] == trigger["spec"]
    assert recreated[0]["metadata"]["uid"] != trigger["metadata"]["uid"]


def test_a_rollout_routes_nothing_to_the_canary_before_it_starts(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    kube.create(
        AISERVICES,
        manifest(
            "roll",
            ns,
            models=[
                {"name": "v1", "uri": "file:///models/v1.pt"},
                {"name": "v2", "uri": "file:///models/v2.pt"},
            ],
            rollout={"canary": "v2", "steps": [10, 50, 100], "interval": "1m"},
        ),
    )
    done = ready(kube, ns, "roll")
    tags = {t["tag"]: t["percent"] for t in done["status"]["traffic"]}
    assert tags == {"stable": 100, "canary": 0, "v1": 0, "v2": 0}
    assert [t for t in knative.unready_targets if t[0] == "roll"] == []


def _their_service(name: str, ns: str, **metadata: Any) -> dict[str, Any]:
    """A Knative Service someone else made, under the name an AIService will want."""
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, **metadata},
        "spec": {
            "template": {
                "metadata": {"name": f"{name}-theirs"},
                "spec": {"containers": [{"image": "registry.example/their-app:1"}]},
            }
        },
    }


def test_a_knative_service_it_does_not_own_is_left_alone(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    """Taking over a user's Knative Service would overwrite it, and the ownerReference would
    have it garbage-collected with the AIService: the name conflict is reported instead."""
    kube.create(KSERVICES, _their_service("taken", ns))
    kube.create(AISERVICES, manifest("taken", ns))

    refused = ready(kube, ns, "taken", status="False")
    cond = condition(refused, "Ready")
    assert cond["reason"] == "NameConflict"
    assert "taken" in cond["message"]
    theirs = kube.get(KSERVICES, ns, "taken")
    assert theirs["spec"]["template"]["metadata"]["name"] == "taken-theirs"
    assert not theirs["metadata"].get("ownerReferences")
    assert "aiservice.dev/name" not in (theirs["metadata"].get("labels") or {})
    assert kube.list(TRIGGERS, ns) == []  # no Trigger delivers to a Service that is not ours


def test_an_orphaned_child_is_adopted_again(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    """A Service of this operator left without owner (`kubectl delete --cascade=orphan`,
    then the AIService re-applied) is the AIService's again."""
    labels = {"app.kubernetes.io/managed-by": "aiservice-operator", "aiservice.dev/name": "kept"}
    kube.create(KSERVICES, _their_service("kept", ns, labels=labels))
    owner = kube.create(AISERVICES, manifest("kept", ns))

    ready(kube, ns, "kept")
    ksvc = kube.get(KSERVICES, ns, "kept")
    assert ksvc["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert ksvc["spec"]["template"]["metadata"]["name"].startswith("kept-v1-")


def test_nothing_is_kept_in_memory_for_a_deleted_aiservice(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    """An AIService that never got children (an invalid spec) has no child deletion to
    notice its end by: its deletion alone must drop what the operator kept for it."""
    kube.create(AISERVICES, manifest("brief", ns, traffic={"stable": "v9"}))
    ready(kube, ns, "brief", status="False")
    assert (ns, "brief") in operator.memo.locks

    kube.delete(AISERVICES, ns, "brief")
    wait_for(lambda: (ns, "brief") not in operator.memo.locks, what="the lock dropped")


def test_a_rollout_command_without_a_rollout_is_not_kept_for_a_later_one(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    """`kubectl annotate ... aiservice.dev/promote` on an AIService without spec.rollout has
    nothing to act on; kept, it would promote a rollout added later before any analysis."""
    stray = manifest("stray", ns)
    stray["metadata"]["annotations"] = {"aiservice.dev/promote": "now"}
    kube.create(AISERVICES, stray)
    ready(kube, ns, "stray")
    wait_for(
        lambda: (
            "aiservice.dev/promote"
            not in (kube.get(AISERVICES, ns, "stray")["metadata"].get("annotations") or {})
        ),
        what="the command annotation removed",
    )
    wait_for(
        lambda: "RolloutCommandIgnored" in {r for r, _ in events(kube, ns, "stray")},
        what="the Warning event",
    )
