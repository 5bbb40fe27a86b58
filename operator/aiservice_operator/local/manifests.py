"""What `aisvc up -f` reads: AIServices (compiled by the operator's compiler), the
Knative objects a user may add next to them (Triggers, Brokers), and Secrets and
ConfigMaps whose values fill the functions' `valueFrom` and `envFrom`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aiservice_operator.core.spec import API_GROUP, KIND, AIService, SpecError, parse
from aiservice_operator.local.pod_env import LocalValues

EVENTING = "eventing.knative.dev/"


class ManifestError(ValueError):
    """Manifests that cannot run locally; the message names the file, document and field."""


@dataclass
class Manifests:
    aiservices: list[AIService] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    """Triggers written by the user (subscriber: a Service of the manifests or any URL)."""
    brokers: set[str] = field(default_factory=set)
    """``namespace/name`` of Brokers declared explicitly."""
    values: LocalValues = field(default_factory=LocalValues)
    """Secrets and ConfigMaps: local stand-ins for the cluster's."""


def load(paths: Iterable[Path]) -> Manifests:
    """Read every YAML document of every file; raise `ManifestError` listing all problems."""
    out = Manifests()
    errors: list[str] = []
    for path in paths:
        try:
            docs = [
                d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None
            ]
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
            errors.append(f"{path}: cannot read: {unreadable(err)}")
            continue
        for index, doc in enumerate(docs):
            label = f"{path} (document {index + 1})"
            errors += _add(out, doc, label)
    names = [(a.namespace, a.name) for a in out.aiservices]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"AIService {dup[0]}/{dup[1]} is declared more than once")
    if errors:
        raise ManifestError("\n".join(errors))
    if not out.aiservices and not out.triggers:
        raise ManifestError("no AIService or Trigger in the manifests")
    return out


def unreadable(err: Exception) -> str:
    """Why a manifest file could not be read, in one line."""
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return " ".join(str(err).split())


def _add(out: Manifests, doc: Any, label: str) -> list[str]:
    if not isinstance(doc, Mapping):
        return [f"{label}: not a YAML mapping"]
    api, kind = str(doc.get("apiVersion", "")), doc.get("kind")
    meta = doc.get("metadata") or {}
    if api.startswith(API_GROUP + "/") and kind == KIND:
        try:
            out.aiservices.append(parse(doc))
        except SpecError as err:
            return [f"{label}: {field}: {message}" for field, message in err.errors]
        return []
    if api.startswith(EVENTING) and kind == "Trigger":
        if not meta.get("name"):
            return [f"{label}: metadata.name is required"]
        trigger = dict(doc)
        trigger["metadata"] = {**meta, "namespace": meta.get("namespace", "default")}
        out.triggers.append(trigger)
        return []
    if api.startswith(EVENTING) and kind == "Broker":
        out.brokers.add(f"{meta.get('namespace', 'default')}/{meta.get('name', 'default')}")
        return []
    if api == "v1" and kind in ("Secret", "ConfigMap"):
        return [f"{label}: {kind}: {problem}" for problem in out.values.add(doc)]
    return [
        f"{label}: {api} {kind} cannot run locally "
        "(AIService, Trigger, Broker, Secret and ConfigMap can)"
    ]
