"""Knative Serving's feature flags (`config-features` in `knative-serving`) an AIService's
pods need, and which of them a cluster has off.

Knative's webhook refuses a revision using a gated pod field while its flag is off; the
operator checks first, so the AIService says which flag to turn on instead of a Knative
Service that never gets its revision. Defaults are Knative 1.22's
(`pkg/apis/config/features.go`): every flag used here is Disabled except emptyDir volumes.

Pure: the caller reads the ConfigMap and passes its `data`.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiservice_operator.core.spec import AIService

NAMESPACE = "knative-serving"
CONFIG_MAP = "config-features"

NODE_SELECTOR = "kubernetes.podspec-nodeselector"
TOLERATIONS = "kubernetes.podspec-tolerations"
AFFINITY = "kubernetes.podspec-affinity"
RUNTIME_CLASS = "kubernetes.podspec-runtimeclassname"
FIELD_REF = "kubernetes.podspec-fieldref"
EMPTY_DIR = "kubernetes.podspec-volumes-emptydir"
PVC = "kubernetes.podspec-persistent-volume-claim"
PVC_WRITE = "kubernetes.podspec-persistent-volume-write"

DEFAULTS: Mapping[str, str] = {
    NODE_SELECTOR: "Disabled",
    TOLERATIONS: "Disabled",
    AFFINITY: "Disabled",
    RUNTIME_CLASS: "Disabled",
    FIELD_REF: "Disabled",
    EMPTY_DIR: "Enabled",
    PVC: "Disabled",
    PVC_WRITE: "Disabled",
}
"""Knative 1.22's value of each flag when `config-features` does not set it."""


def needed(ais: AIService) -> dict[str, str]:
    """Flag -> the first spec field that needs it."""
    fn = ais.spec.function
    path = "spec.function"
    out: dict[str, str] = {EMPTY_DIR: f"{path} (the runtime's temp and model-cache volumes)"}
    if fn.node_selector:
        out[NODE_SELECTOR] = f"{path}.nodeSelector"
    if fn.tolerations:
        out[TOLERATIONS] = f"{path}.tolerations"
    if fn.affinity:
        out[AFFINITY] = f"{path}.affinity"
    if fn.runtime_class_name:
        out[RUNTIME_CLASS] = f"{path}.runtimeClassName"
    for index, entry in enumerate(fn.env):
        if "fieldRef" in (entry.get("valueFrom") or {}):
            out.setdefault(FIELD_REF, f"{path}.env[{index}].valueFrom.fieldRef")
    for index, volume in enumerate(fn.volumes):
        claim = volume.get("persistentVolumeClaim")
        if claim is not None:
            out.setdefault(PVC, f"{path}.volumes[{index}].persistentVolumeClaim")
            if not claim.get("readOnly"):
                out.setdefault(PVC_WRITE, f"{path}.volumes[{index}].persistentVolumeClaim")
    return out


def is_on(data: Mapping[str, str] | None, flag: str) -> bool:
    """Whether Knative accepts the field: the flag is Enabled or Allowed (any case)."""
    value = (data or {}).get(flag, DEFAULTS.get(flag, "Disabled"))
    return str(value).strip().lower() in ("enabled", "allowed")


def disabled(ais: AIService, data: Mapping[str, str] | None, namespace: str = NAMESPACE) -> str:
    """A message naming every flag `ais` needs that is off (with the field needing it), or
    '' when Knative will accept its pods. `data` None: the ConfigMap does not exist."""
    off = [(flag, where) for flag, where in sorted(needed(ais).items()) if not is_on(data, flag)]
    if not off:
        return ""
    shown = "; ".join(f"{where} needs {flag}" for flag, where in off)
    return (
        f"Knative feature flags are off in {namespace}/{CONFIG_MAP}: {shown} "
        "(set each to Enabled there)"
    )
