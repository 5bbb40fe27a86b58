"""Binary-mode reply events written straight to HTTP headers and body.

A reply's attributes are mostly fixed per revision (type, source, model version), so
they are validated and percent-encoded once, when the writer is made, by building one
event with the cloudevents SDK. Per event only ``id``, ``time``, the trace context and
the hop count are added; this skips building, validating and rendering an SDK event for
every reply, which cost about a quarter of the runtime's own time per event on a small
model. The output is the same as ``cloudevents_http.render_response`` gives for the
event ``FunctionService.reply_event`` builds (a test holds the two together).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from aiservice_functions.cloudevents_http import (
    APPLICATION_JSON,
    OCTET_STREAM,
    json_bytes,
    make_event,
)
from aiservice_functions.timestamps import rfc3339

# CloudEvents HTTP binding 3.1.3.2: printable ASCII except space, '"' and '%' stays as is.
_SAFE: Final = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')


def encode_header_value(value: object) -> str:
    return quote(str(value), safe=_SAFE)


class BinaryReplyWriter:
    """Writes binary-mode replies with fixed ``attributes`` plus per-event ones."""

    def __init__(self, attributes: dict[str, str]) -> None:
        # Refuses attributes the SDK would refuse, once, instead of on every event.
        make_event(attributes, {})
        self._fixed = {f"ce-{name}": encode_header_value(v) for name, v in attributes.items()}
        self._fixed["ce-specversion"] = "1.0"

    def write(self, data: Any, extensions: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of the reply carrying ``data`` (not None)."""
        headers = dict(self._fixed)
        headers["ce-id"] = str(uuid.uuid4())
        headers["ce-time"] = rfc3339(datetime.now(UTC), digits=6)
        for name, value in extensions.items():
            headers[f"ce-{name}"] = encode_header_value(value)
        if isinstance(data, (bytes, bytearray)):
            headers["content-type"] = OCTET_STREAM
            return 200, headers, bytes(data)
        headers["content-type"] = APPLICATION_JSON
        body = json_bytes(data)
        return 200, headers, body
