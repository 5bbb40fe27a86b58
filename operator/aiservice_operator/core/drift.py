"""Desired against live: whether a child object drifted, and the patch that puts it back.

Pure, so that the reconcile plan (`reconcile.plan`) predicts exactly what the API client
(`cluster.kube`) will do with the same objects: both use these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]


def contains(live: Any, desired: Any) -> bool:
    """Whether `live` holds everything `desired` says (maps: a superset; lists: same length,
    each item containing the desired one; scalars: equal)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and contains(live[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def _owned_metadata_matches(live: Obj, desired: Obj) -> bool:
    lmeta, dmeta = live.get("metadata") or {}, desired.get("metadata") or {}
    for key in ("labels", "annotations"):
        if not contains(lmeta.get(key) or {}, dmeta.get(key) or {}):
            return False
    if dmeta.get("ownerReferences"):
        uids = {ref.get("uid") for ref in lmeta.get("ownerReferences") or []}
        if not {ref["uid"] for ref in dmeta["ownerReferences"]} <= uids:
            return False
    return True


def needs_update(live: Obj, desired: Obj) -> bool:
    """True when the live object has drifted from what the operator owns in it."""
    return not (
        _owned_metadata_matches(live, desired) and contains(live.get("spec"), desired.get("spec"))
    )


def _template_name(template: Any) -> str:
    if not isinstance(template, Mapping):
        return ""
    return str((template.get("metadata") or {}).get("name") or "")


def update_patch(live: Obj, desired: Obj) -> list[Obj]:
    """A JSON patch that makes `live` match `desired`, guarded by its resourceVersion.

    The spec is replaced whole (a field the operator stopped setting disappears), except a
    revision template whose name is unchanged and that holds everything desired: it is kept
    as stored. Knative's webhook
    defaults a template only when it is created (e.g. `enableServiceLinks`, probe
    thresholds) and refuses any later change to it without a new name, and the name is a
    digest of what the operator sets. Labels and annotations are merged; desired
    ownerReferences go first, other owners are kept.
    """
    lmeta, dmeta = live.get("metadata") or {}, desired.get("metadata") or {}
    spec = dict(desired.get("spec") or {})
    live_template = (live.get("spec") or {}).get("template")
    name = _template_name(live_template)
    same_name = bool(name) and name == _template_name(spec.get("template"))
    if same_name and contains(live_template, spec["template"]):
        spec["template"] = live_template
    ops: list[Obj] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": lmeta["resourceVersion"]},
        {"op": "add", "path": "/spec", "value": spec},
    ]
    for key in ("labels", "annotations"):
        if dmeta.get(key):
            merged = {**(lmeta.get(key) or {}), **dmeta[key]}
            ops.append({"op": "add", "path": f"/metadata/{key}", "value": merged})
    if dmeta.get("ownerReferences"):
        uids = {ref["uid"] for ref in dmeta["ownerReferences"]}
        others = [r for r in lmeta.get("ownerReferences") or [] if r.get("uid") not in uids]
        ops.append(
            {
                "op": "add",
                "path": "/metadata/ownerReferences",
                "value": [*dmeta["ownerReferences"], *others],
            }
        )
    return ops
