"""The environment a revision's container gets on a laptop, and what is left out there.

On a cluster the kubelet fills `env[].valueFrom` and `envFrom` from Secrets, ConfigMaps
and the pod's own fields. Locally they come from the Secret and ConfigMap documents of the
files given to `aisvc up -f` (a file of local values kept out of version control), with
Kubernetes' precedence: `envFrom` first, `env` over it. Pod fields resolve to what a
local process has: its revision name and namespace; others are empty.

Scheduling and hardening (nodeSelector, tolerations, securityContext, ...) only mean
something to a kubelet: they are listed once in the run's warnings instead.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiservice_functions import contract

from aiservice_operator.core.spec import AIService, SecurityContext

POD_ONLY_ENV = {
    "TMPDIR": contract.POD_TMP_DIR,
    contract.ENV_MODEL_CACHE_DIR: contract.POD_MODEL_CACHE_DIR,
}
"""Variables that point at the pod's emptyDirs: a local process keeps its own."""


class MissingValue(ValueError):
    """A `valueFrom` or `envFrom` source that no local document provides."""


@dataclass
class LocalValues:
    """Secrets and ConfigMaps read from the manifests, by (namespace, name)."""

    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def add(self, doc: Mapping[str, Any]) -> list[str]:
        """Keep a Secret or ConfigMap document; returns problems (naming the field)."""
        meta = doc.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        if not key[1]:
            return ["metadata.name is required"]
        values: dict[str, str] = {}
        if doc.get("kind") == "Secret":
            for name, encoded in (doc.get("data") or {}).items():
                try:
                    values[str(name)] = base64.b64decode(str(encoded), validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    return [f"data.{name}: not base64-encoded UTF-8 text"]
            values.update({str(k): str(v) for k, v in (doc.get("stringData") or {}).items()})
            self.secrets[key] = values
        else:
            values.update({str(k): str(v) for k, v in (doc.get("data") or {}).items()})
            self.config_maps[key] = values
        return []

    def _source(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        table = self.secrets if kind in ("secretKeyRef", "secretRef") else self.config_maps
        return table.get((namespace, name))

    def environment(
        self, container: Mapping[str, Any], namespace: str, revision: str
    ) -> dict[str, str]:
        """The container's variables as the kubelet would set them, from local values."""
        env: dict[str, str] = {}
        for source in container.get("envFrom") or ():
            kind = "secretRef" if "secretRef" in source else "configMapRef"
            ref = source[kind]
            values = self._source(kind, namespace, ref["name"])
            if values is None:
                if ref.get("optional"):
                    continue
                raise MissingValue(f"envFrom: no {_what(kind)} {namespace}/{ref['name']}")
            env.update({f"{source.get('prefix', '')}{k}": v for k, v in values.items()})
        for entry in container.get("env") or ():
            name = entry["name"]
            if "valueFrom" not in entry:
                if POD_ONLY_ENV.get(name) != entry.get("value"):
                    env[name] = str(entry.get("value", ""))
                continue
            ((kind, ref),) = entry["valueFrom"].items()
            if kind == "fieldRef":
                env[name] = {"metadata.name": revision, "metadata.namespace": namespace}.get(
                    ref["fieldPath"], ""
                )
                continue
            values = self._source(kind, namespace, ref["name"])
            if values is None or ref["key"] not in values:
                if ref.get("optional"):
                    continue
                where = f"{_what(kind)} {namespace}/{ref['name']}"
                missing = "does not exist" if values is None else f"has no key {ref['key']!r}"
                raise MissingValue(f"env {name}: {where} {missing}")
            env[name] = values[ref["key"]]
        return env


def _what(kind: str) -> str:
    return "Secret" if kind.startswith("secret") else "ConfigMap"


CLUSTER_ONLY_FIELDS = (
    ("service_account_name", "serviceAccountName"),
    ("image_pull_secrets", "imagePullSecrets"),
    ("node_selector", "nodeSelector"),
    ("tolerations", "tolerations"),
    ("affinity", "affinity"),
    ("runtime_class_name", "runtimeClassName"),
    ("volumes", "volumes"),
)


def ignored_fields(ais: AIService) -> str:
    """One line naming the fields of `ais` that a local run does not apply, or ''."""
    fn = ais.spec.function
    fields = [f"spec.function.{name}" for attr, name in CLUSTER_ONLY_FIELDS if getattr(fn, attr)]
    if fn.security_context != SecurityContext():
        fields.append("spec.function.securityContext")
    if not fields:
        return ""
    return (
        f"{ais.namespace}/{ais.name}: {', '.join(fields)} not applied locally "
        "(they schedule, identify and harden pods on a cluster)"
    )
