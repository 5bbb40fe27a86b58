"""Which hosts a server may send requests to on a caller's say: refusing server-side
request forgery.

A URL chosen by a caller (a replay target, a claim-check reference) makes a server send a
request from inside the cluster. By default a target is refused when its host is, or
resolves to, a loopback, link-local (cloud metadata: ``169.254.169.254``), private,
unique-local, multicast or unspecified address, or is a cluster-internal name (``*.svc``,
``*.svc.<domain>``, ``localhost``). With ``public=False`` (replays: they go to Brokers)
a public address outside the cluster is refused too. An allow-list names hosts (``host``,
``*.suffix``) or networks (CIDR) to admit anyway. A NetworkPolicy is the second line of
defence (a name can resolve differently when the request is sent).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

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
    """Target rules; ``allow``: hosts, ``*.suffix`` patterns or CIDRs; ``allow_list``: how
    error messages name the setting that admits a refused target; ``public``: whether a
    public address is admitted without being allow-listed (replays: no)."""

    allow: tuple[str, ...] = ()
    resolve: Resolve = field(default=_resolve, compare=False, repr=False)
    allow_list: str = "the store's replay allow-list (--replay-allow-target)"
    public: bool = False

    @staticmethod
    def parse(
        entries: Sequence[str], allow_list: str | None = None, public: bool = False
    ) -> TargetPolicy:
        """Check the allow-list entries; a malformed one raises ``ValueError``."""
        cleaned = []
        for entry in entries:
            text = entry.strip().lower()
            if not text:
                continue
            if "/" in text:
                ipaddress.ip_network(text, strict=False)  # raises ValueError
            cleaned.append(text)
        if allow_list is None:
            return TargetPolicy(tuple(cleaned), public=public)
        return TargetPolicy(tuple(cleaned), allow_list=allow_list, public=public)

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
                f"{what}: {host[:100]!r} is a cluster-internal name "
                f"(add it to {self.allow_list} to permit it)"
            )
        internal = [a for a in addresses if _internal_ip(a)]
        if internal:
            raise ValueError(
                f"{what}: {host[:100]!r} is an internal address ({internal[0]}: loopback, "
                f"link-local or private); add it to {self.allow_list} to permit it"
            )
        if not self.public:
            raise ValueError(
                f"{what}: {host[:100]!r} is outside the cluster; replays go to the Broker "
                f"unless {self.allow_list} admits the host"
            )


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
