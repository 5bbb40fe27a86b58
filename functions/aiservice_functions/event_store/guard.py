"""Where a replay may send, and URLs fit for logs.

A replay target is a URL given by an API caller; :class:`TargetPolicy` (shared with the
runtime's claim-check) refuses internal addresses except the Broker ingress the store
replays to and the hosts of ``--replay-allow-target``; for replays it also refuses public
addresses outside the cluster (``public=False``): a replay never leaves the cluster unless
someone asked for it. The chart's egress NetworkPolicy is the second line of defence.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from aiservice_functions.targets import TargetPolicy

__all__ = ["RedactingFilter", "TargetPolicy", "redact_http_client_logs", "redact_url"]


def redact_url(url: str) -> str:
    """``url`` without user, password and query values: fit for logs and job records."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        return "<unparsable URL>"
    if parts.username is not None or parts.password is not None:
        netloc = "***@" + netloc
    query = "&".join(f"{pair.split('=', 1)[0]}=***" for pair in parts.query.split("&") if pair)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class RedactingFilter(logging.Filter):
    """Redacts URL arguments of log records (httpx logs each request's full URL at INFO,
    user, password and query string included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(a)) if "://" in str(a) and not isinstance(a, (int, float)) else a
                for a in record.args
            )
        elif isinstance(record.msg, str) and "://" in record.msg and not record.args:
            record.msg = " ".join(redact_url(w) if "://" in w else w for w in record.msg.split(" "))
        return True


def redact_http_client_logs() -> None:
    """Install :class:`RedactingFilter` on the HTTP client libraries' loggers (once)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
