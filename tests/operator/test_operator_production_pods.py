"""Production pod settings through the real operator on the API emulator: a spec that needs
a Knative feature flag that is off is reported naming the flag (and nothing is applied that
Knative would refuse), and names of any length reconcile to Ready."""

from __future__ import annotations

from typing import Any

from tests.support.aiservices import manifest, ready
from tests.support.knative import KnativeServing
from tests.support.kubeemu import (
    AISERVICES,
    CONFIGMAPS,
    KSERVICES,
    TRIGGERS,
    EmulatorThread,
    condition,
    wait_for,
)
from tests.support.operator import OperatorThread

GPU_FUNCTION: dict[str, Any] = {
    "image": "registry.example/aiservice-functions:0.1",
    "entrypoint": "aiservice_functions.sentiment",
    "resources": {"limits": {"nvidia.com/gpu": 1}},
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


def test_a_flag_that_is_off_is_named_and_nothing_is_applied(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    kube.create(AISERVICES, manifest("gpu", ns, function=GPU_FUNCTION))

    refused = ready(kube, ns, "gpu", status="False")
    cond = condition(refused, "Ready")
    assert cond["reason"] == "KnativeFeatureDisabled"
    assert "spec.function.nodeSelector needs kubernetes.podspec-nodeselector" in cond["message"]
    assert "spec.function.tolerations needs kubernetes.podspec-tolerations" in cond["message"]
    assert "knative-serving/config-features" in cond["message"]
    assert kube.find(KSERVICES, ns, "gpu") is None
    assert kube.list(TRIGGERS, ns) == []

    # The platform team enables the flags; the next reconcile (here: a spec change) applies.
    features = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "config-features", "namespace": "knative-serving"},
                "data": {"kubernetes.podspec-nodeselector": "enabled",
                         "kubernetes.podspec-tolerations": "Enabled"}}  # fmt: skip
    if kube.find(CONFIGMAPS, "knative-serving", "config-features") is None:
        kube.create(CONFIGMAPS, features)
    kube.patch(AISERVICES, ns, "gpu", {"spec": {"function": {**GPU_FUNCTION, "concurrency": 8}}})
    done = ready(kube, ns, "gpu")
    pod = kube.get(KSERVICES, ns, "gpu")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert condition(done, "Ready")["reason"] == "Ready"


def test_a_plain_aiservice_reads_no_feature_flags(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    kube.clear_log()
    kube.create(AISERVICES, manifest("plain", ns))
    ready(kube, ns, "plain")
    assert not [r for r in kube.requests() if r.plural == "configmaps"]


def test_long_names_reconcile_with_derived_knative_names(
    kube: EmulatorThread, knative: KnativeServing, operator: OperatorThread, ns: str
) -> None:
    name = "fraud-scoring-for-the-europe-west-payments-platform-team-prod01"
    models = [{"name": "distilled-multilingual-2026-11-01", "uri": "file:///models/a.pt"},
              {"name": "2026-11-20-int8", "uri": "file:///models/b.pt"}]  # fmt: skip
    stable = {"stable": "distilled-multilingual-2026-11-01"}
    kube.create(AISERVICES, manifest(name, ns, models=models, traffic=stable))
    done = ready(kube, ns, name)
    (service,) = kube.list(KSERVICES, ns)
    assert service["metadata"]["name"] == "fraud-scoring-for-the-europe-we-c452d7e3"
    assert service["metadata"]["labels"]["aiservice.dev/name"] == name
    routed = {t["model"]: t for t in done["status"]["traffic"]}
    assert set(routed) == {"distilled-multilingual-2026-11-01", "2026-11-20-int8"}
    assert all(len(t["revisionName"]) <= 63 for t in routed.values())
    (trigger,) = kube.list(TRIGGERS, ns)
    assert trigger["spec"]["subscriber"]["ref"]["name"] == service["metadata"]["name"]

    kube.delete(AISERVICES, ns, name)
    client = operator.memo.client
    wait_for(
        lambda: not [k for k in client._written if k[1] == ns],
        what="the writes remembered for the long-named children dropped",
    )
