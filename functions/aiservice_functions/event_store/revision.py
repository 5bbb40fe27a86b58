"""Which revision of an AIService a dead letter belongs to (for per-revision counts).

Knative's dead letter does not say which revision failed: a Trigger's subscriber is the
Knative Service URL, and the traffic split happens behind it. The store therefore looks,
in this order, at:

1. the extension ``aisvcrevision`` (``contract.EXT_REVISION``) on the event: set by a
   sender that knows (the local executor's dispatcher does);
2. ``knativeerrordata``: when the failing function answered with a JSON object carrying
   ``revision`` (a function can put its ``K_REVISION`` there), that;
3. the host of ``knativeerrordest``:
   - ``<tag>-<service>.<ns>...`` (a tag route: the shadow Trigger targets
     ``canary-<service>``; each model has a ``<model>-<service>`` route) gives the tag,
     e.g. ``canary`` or ``v2``;
   - ``<service>-<model>-<hash>...`` (a revision addressed directly) gives that name.

The result is a Knative revision name when one is known, else a traffic tag, else
``None`` (the event went through the untagged route: the split decided).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from aiservice_functions import contract


def revision_of(
    service: str,
    extension: object,
    error_dest: str | None,
    error_data: bytes | None,
) -> str | None:
    """The revision (or traffic tag) a dead letter of ``service`` was addressed to."""
    if isinstance(extension, str) and extension:
        return extension[:253]
    from_body = _from_error_data(error_data)
    if from_body:
        return from_body
    return _from_dest(service, error_dest)


def _from_error_data(error_data: bytes | None) -> str | None:
    if not error_data or not error_data.lstrip().startswith(b"{"):
        return None
    try:
        body = json.loads(error_data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(body, dict):
        value = body.get("revision")
        if isinstance(value, str) and value:
            return value[:253]
    return None


def _from_dest(service: str, error_dest: str | None) -> str | None:
    if not error_dest:
        return None
    try:
        host = urlsplit(error_dest).hostname or ""
    except ValueError:
        return None
    label = host.split(".", 1)[0]
    if not label or label == service:
        return None
    if label.endswith("-" + service):
        return label[: -len(service) - 1] or None
    if label.startswith(service + "-"):
        return label.removesuffix("-private")
    return None


EXTENSION = contract.EXT_REVISION
