"""Turn an HTTP request into a record to store, with the shared CloudEvents parser.

Parsing (binary and structured mode, 400/415 reasons) is
:mod:`aiservice_functions.cloudevents_http`; this module only picks out what the
store indexes: Knative's ``knativeerror*`` extensions, the revision, the replay count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from aiservice_functions import contract
from aiservice_functions.cloudevents_http import (
    InvalidEvent,
    event_to_dict,
    parse_request,
)
from aiservice_functions.event_store import revision
from aiservice_functions.event_store.records import (
    Kind,
    NewEvent,
    decode_error_data,
    parse_error_code,
    parse_replay_count,
)

# Kubernetes names: DNS-1123 labels (namespace) and subdomains (AIService).
_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def check_name(what: str, value: str) -> None:
    """Refuse path segments that cannot be Kubernetes names (400, naming the segment)."""
    if not _NAME.match(value):
        raise InvalidEvent(f"{what} {value[:80]!r} is not a valid Kubernetes name")


def credential_refusal(
    sink_key: bytes | None, namespace: str, name: str, credential: str | None
) -> tuple[int, str] | None:
    """Why an ingest request may not file records for ``namespace/name`` — ``(status,
    reason)`` — or ``None`` to accept it. With a sink key the AIService's credential must
    be the path's last segment (Knative's dispatcher sends no other credentials), so the
    path is the authenticated attribution; without a key ingest is open."""
    if sink_key is None:
        return None
    if credential is None:
        return 401, "ingest needs the AIService's sink credential in the path"
    if not contract.verify_sink_credential(sink_key, namespace, name, credential):
        return 403, "sink credential not accepted for this AIService"
    return None


def to_record(
    kind: Kind, namespace: str, name: str, headers: Mapping[str, str], body: bytes
) -> NewEvent:
    """Parse one ingest request into a :class:`NewEvent`; raises ``InvalidEvent`` (4xx)."""
    check_name("namespace", namespace)
    check_name("AIService name", name)
    event = parse_request(headers, body).event
    document = event_to_dict(event)
    error_dest = document.get(contract.EXT_ERROR_DEST)
    error_data = decode_error_data(document.get(contract.EXT_ERROR_DATA))
    dest = str(error_dest) if error_dest is not None else None
    return NewEvent(
        kind=kind,
        namespace=namespace,
        name=name,
        source=event.get_source(),
        event_id=event.get_id(),
        type=event.get_type(),
        document=document,
        error_dest=dest,
        error_code=parse_error_code(document.get(contract.EXT_ERROR_CODE)),
        error_data=error_data,
        revision=revision.revision_of(name, document.get(contract.EXT_REVISION), dest, error_data),
        replay_seen=parse_replay_count(document.get(contract.EXT_REPLAY)),
    )
