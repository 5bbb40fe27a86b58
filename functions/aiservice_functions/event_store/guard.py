"""Where a replay may send: refusing server-side request forgery, and URLs fit for logs.

A replay target is a URL given by an API caller, and the store sends stored events to it
from inside the cluster. By default the only target is the Broker ingress the store is
configured with (``--broker-url``): a replay never leaves the cluster unless someone
asked for it. Every other host is refused, naming why: a loopback, link-local (cloud
metadata: ``169.254.169.254``), private, unique-local, multicast or unspecified address,
a cluster-internal name (``*.svc``, ``*.svc.<domain>``, ``localhost``), or a public
address outside the cluster. The allow-list (``--replay-allow-target``) names hosts
(``host``, ``*.suffix``) or networks (CIDR) to admit, internal or public. The chart's
egress NetworkPolicy is the second line of defence (a name can resolve differently when
the request is sent).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

Resolve = Callable[[str], list[str]]
_INTERNAL_SUFFIXES = (".svc", ".local", ".internal", ".localhost")


def _resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def _internal_ip(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or ip in ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, some pod CIDRs
    )


@dataclass(frozen=True)
class TargetPolicy:
    """The replay target rules; ``allow``: hosts, ``*.suffix`` patterns or CIDRs."""

    allow: tuple[str, ...] = ()
    resolve: Resolve = field(default=_resolve, compare=False, repr=False)

    @staticmethod
    def parse(entries: Sequence[str]) -> TargetPolicy:
        """Check the allow-list entries; a malformed one raises ``ValueError``."""
        cleaned = []
        for entry in entries:
            text = entry.strip().lower()
            if not text:
                continue
            if "/" in text:
                ipaddress.ip_network(text, strict=False)  # raises ValueError
            cleaned.append(text)
        return TargetPolicy(tuple(cleaned))

    def _allowed(self, host: str, addresses: Sequence[str]) -> bool:
        for entry in self.allow:
            if "/" in entry:
                network = ipaddress.ip_network(entry, strict=False)
                if addresses and all(
                    ipaddress.ip_address(a.split("%", 1)[0]) in network for a in addresses
                ):
                    return True
            elif entry.startswith("*."):
                if host.endswith(entry[1:]):
                    return True
            elif host == entry:
                return True
        return False

    def check(self, url: str, what: str, broker_url: str | None = None) -> None:
        """Raise ``ValueError`` naming ``what`` unless ``url`` is an admissible target."""
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if not host:
            raise ValueError(f"{what} has no host")
        if broker_url and host == (urlsplit(broker_url).hostname or "").lower().rstrip("."):
            return
        literal = _ip_literal(host)
        try:
            addresses = [literal] if literal else self.resolve(host)
        except OSError:
            if self._allowed(host, []):
                return
            raise ValueError(f"{what}: host {host[:100]!r} does not resolve") from None
        if self._allowed(host, addresses):
            return
        if host == "localhost" or host.endswith(_INTERNAL_SUFFIXES):
            raise ValueError(
                f"{what}: {host[:100]!r} is a cluster-internal name; replays go to Brokers "
                "(add it to the store's replay allow-list to permit it)"
            )
        internal = [a for a in addresses if _internal_ip(a)]
        if internal:
            raise ValueError(
                f"{what}: {host[:100]!r} is an internal address ({internal[0]}: loopback, "
                "link-local or private); add it to the store's replay allow-list to permit it"
            )
        raise ValueError(
            f"{what}: {host[:100]!r} is outside the cluster; replays go to the Broker "
            "unless the store admits the host with --replay-allow-target"
        )


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


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
