"""Reading a request body with a size limit, also for chunked bodies."""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length

__all__ = ["read_body"]

_CHUNK = 64 * 1024


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body of a WSGI ``environ``, or ``RequestEntityTooLarge`` (413) past
    ``limit`` bytes.

    A declared length over the limit is refused before reading; a chunked body is read
    up to one byte past the limit. werkzeug's own limit silently truncates a chunked
    body at exactly the limit, which would turn an oversize event into a misleading 400.
    """
    length = get_content_length(environ)
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    if length is None and not environ.get("wsgi.input_terminated"):
        return b""  # the server cannot tell where the body ends: there is none
    stream = environ["wsgi.input"]
    wanted = length if length is not None else limit + 1
    data = bytearray()
    while len(data) < wanted:
        chunk = stream.read(min(_CHUNK, wanted - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise RequestEntityTooLarge()
    return bytes(data)
