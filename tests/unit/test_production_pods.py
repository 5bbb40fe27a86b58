"""Production pod settings: the restricted Pod Security Standard by default, Knative's
feature flags named when off, cold starts measured against the time an event may wait."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiservice_operator.core import features
from aiservice_operator.core.compile import steady_state
from aiservice_operator.core.conditions import COLD_START, find_condition, summarize_status
from aiservice_operator.core.spec import AIService, parse

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _examples() -> list[AIService]:
    docs = [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    return [parse(d) for d in docs if d]


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The restricted profile's checks (kubernetes.io/docs/concepts/security/pod-security-
    standards) on a revision's pod spec, as the PodSecurity admission plugin applies them.
    A stand-in for the plugin, which needs a real API server."""
    problems = []
    allowed_volumes = {"emptyDir", "persistentVolumeClaim", "secret", "configMap", "projected",
                       "downwardAPI", "csi", "ephemeral"}  # fmt: skip
    for volume in pod.get("volumes") or ():
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            problems.append(f"volume {volume['name']}: {kinds - allowed_volumes}")
    pod_sc = pod.get("securityContext") or {}
    for container in pod["containers"]:
        sc = container.get("securityContext") or {}
        name = container["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set((sc.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        if any(p.get("hostPort") for p in container.get("ports") or ()):
            problems.append(f"{name}: hostPort")
    return problems


@pytest.mark.parametrize("ais", _examples(), ids=lambda a: a.name)
def test_every_example_pod_meets_the_restricted_standard(ais: AIService) -> None:
    for template in steady_state(ais).revisions.values():
        assert restricted_violations(template["spec"]) == []
        (container,) = template["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {env["TMPDIR"], env["AISVC_MODEL_CACHE_DIR"]} <= mounts


def test_the_check_refuses_what_the_standard_refuses() -> None:
    ais = next(a for a in _examples() if a.name == "sentiment")
    pod = copy.deepcopy(next(iter(steady_state(ais).revisions.values()))["spec"])
    pod["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True, runAsUser=0)
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    problems = restricted_violations(pod)
    assert len(problems) == 3, problems


def _ais(function: dict[str, Any], **spec: Any) -> AIService:
    return parse({
        "apiVersion": "aiservice.dev/v1alpha1", "kind": "AIService",
        "metadata": {"name": "f", "namespace": "ns", "generation": 2},
        "spec": {"consumes": [{"type": "t.a"}],
                 "function": {"image": "img:1", "entrypoint": "pkg.fn", **function},
                 "models": [{"name": "v1", "uri": "file:///m.pt"}], **spec},
    })  # fmt: skip


def test_a_plain_function_needs_only_flags_on_by_default() -> None:
    ais = _ais({})
    assert set(features.needed(ais)) == {features.EMPTY_DIR}
    assert features.disabled(ais, None) == ""
    message = features.disabled(ais, {features.EMPTY_DIR: "Disabled"})
    assert "kubernetes.podspec-volumes-emptydir" in message


def test_each_gated_field_names_its_flag() -> None:
    ais = _ais({
        "nodeSelector": {"gpu": "yes"}, "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}},
        "runtimeClassName": "nvidia",
        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumes": [{"name": "c", "persistentVolumeClaim": {"claimName": "c"}}],
        "modelCacheVolume": "c",
    })  # fmt: skip
    needed = features.needed(ais)
    assert needed[features.NODE_SELECTOR] == "spec.function.nodeSelector"
    assert needed[features.FIELD_REF] == "spec.function.env[0].valueFrom.fieldRef"
    assert needed[features.PVC_WRITE] == "spec.function.volumes[0].persistentVolumeClaim"
    message = features.disabled(
        ais, {features.NODE_SELECTOR: "enabled", features.AFFINITY: "Allowed"}
    )
    for flag in (features.TOLERATIONS, features.RUNTIME_CLASS, features.FIELD_REF, features.PVC,
                 features.PVC_WRITE):  # fmt: skip
        assert flag in message
    assert features.NODE_SELECTOR not in message and features.AFFINITY not in message
    everything = {flag: "Enabled" for flag in features.DEFAULTS}
    assert features.disabled(ais, everything) == ""


def test_a_read_only_claim_needs_no_write_flag() -> None:
    claim = {"claimName": "c", "readOnly": True}
    ais = _ais({"volumes": [{"name": "c", "persistentVolumeClaim": claim}],
                "volumeMounts": [{"name": "c", "mountPath": "/models"}]})  # fmt: skip
    assert features.PVC in features.needed(ais) and features.PVC_WRITE not in features.needed(ais)
    template = next(iter(steady_state(ais).revisions.values()))
    (mount,) = [m for m in template["spec"]["containers"][0]["volumeMounts"] if m["name"] == "c"]
    assert mount["readOnly"] is True  # Knative refuses a writable mount of a read-only claim


def _revision(name: str, created: str, ready_at: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"conditions": [{"type": "Ready", "status": "True",
                                       "lastTransitionTime": ready_at}]}}  # fmt: skip


@pytest.mark.parametrize(
    ("autoscaling", "ready_at", "status", "words"),
    [
        ({"minScale": 0}, "2026-12-01T11:01:35Z", "False", "took 95s to become ready"),
        ({"minScale": 0}, "2026-12-01T11:00:20Z", "True", "within 30s"),
        ({"minScale": 1}, "2026-12-01T11:01:35Z", "True", "minScale 1"),
    ],
)
def test_cold_start_condition(autoscaling: dict[str, int], ready_at: str, status: str,
                              words: str) -> None:  # fmt: skip
    ais = _ais({"timeoutSeconds": 60, "startupTimeoutSeconds": 300}, autoscaling=autoscaling,
               delivery={"timeout": "PT30S"})  # fmt: skip
    desired = steady_state(ais)
    (name,) = desired.revision_names.values()
    revisions = [_revision(name, "2026-12-01T11:00:00Z", ready_at),
                 _revision("f-v0-old", "2026-12-01T10:00:00Z", "2026-12-01T10:30:00Z")]  # fmt: skip
    status_obj = summarize_status(ais, desired, None, NOW, revisions=revisions)
    cold = find_condition(status_obj["conditions"], COLD_START)
    assert cold is not None and cold["status"] == status and words in cold["message"], cold


def test_no_cold_start_condition_before_a_revision_was_measured() -> None:
    ais = _ais({})
    status = summarize_status(ais, steady_state(ais), None, NOW, revisions=[])
    assert find_condition(status["conditions"], COLD_START) is None


def test_startup_timeout_compiles_to_a_startup_probe_and_progress_deadline() -> None:
    template = next(iter(steady_state(_ais({"startupTimeoutSeconds": 901})).revisions.values()))
    probe = template["spec"]["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 901
    assert template["metadata"]["annotations"]["serving.knative.dev/progress-deadline"] == "1021s"
    plain = next(iter(steady_state(_ais({})).revisions.values()))
    assert "startupProbe" not in plain["spec"]["containers"][0]
    assert "serving.knative.dev/progress-deadline" not in plain["metadata"]["annotations"]


def test_the_docs_list_every_flag_the_operator_checks() -> None:
    root = EXAMPLES.parent
    for page in (root / "docs" / "api.md", root / "charts" / "aiservice-operator" / "README.md"):
        text = page.read_text()
        missing = [flag for flag in features.DEFAULTS if f"`{flag}`" not in text]
        assert missing == [], (page, missing)
