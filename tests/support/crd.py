"""What kube-apiserver would do with an AIService write, from the CRD in crds/: validate
it against the openAPIV3Schema and list the fields structural pruning would drop silently.

The API emulator does neither; tests call this on what the operator wrote.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "aiservice.dev_aiservices.yaml"


@cache
def schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    return dict(version["schema"]["openAPIV3Schema"])


def pruned_fields(value: Any, node: dict[str, Any] | None = None, path: str = "") -> list[str]:
    """Paths of fields the schema does not declare (a real API server would drop them)."""
    node = schema() if node is None else node
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        found: list[str] = []
        for key, item in value.items():
            if props is not None and key in props:
                found += pruned_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += pruned_fields(item, extra, f"{path}.{key}")
            elif props is not None or extra is False:
                found.append(f"{path}.{key}")
        return found
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [
            f
            for i, item in enumerate(value)
            for f in pruned_fields(item, node["items"], f"{path}[{i}]")
        ]
    return []


def check_status(obj: dict[str, Any]) -> None:
    """Fail when the object's status is invalid or would be pruned by the real API server."""
    status_schema = schema()["properties"]["status"]
    status = obj.get("status") or {}
    jsonschema.validate(status, status_schema)
    assert pruned_fields(status, status_schema, "status") == []
