"""Which ``Host`` headers a loopback-only listener answers: the DNS-rebinding guard.

A web page the user visits can make the browser resolve its own name to 127.0.0.1 and
then talk to a local listener as if from the same origin; the one thing it cannot
change is the ``Host`` header, which still names the page's host. A listener that only
serves this machine therefore answers only a ``Host`` naming the loopback address and
port it listens on: ``127.0.0.1:<port>``, ``localhost:<port>`` or ``[::1]:<port>``
(and the exact loopback address it is bound to, such as ``127.0.0.2:<port>``). The
port may be left out only on port 80, as HTTP allows.

Pure, so every listener (the local run's aiohttp servers, the event store's Flask app
and its ASGI front) applies the same rule.
"""

from __future__ import annotations

import ipaddress

MISDIRECTED = 421
"""The status of a refused Host: RFC 9110's "Misdirected Request"."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether `host` (an address, bracketed or not, or ``localhost``) is this machine."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def host_refusal(host_header: str | None, listen_host: str, listen_port: int) -> str | None:
    """Why a request with `host_header` must be refused by a loopback listener on
    `listen_host`:`listen_port`, or None when the header names that listener."""
    if not host_header:
        return "a Host header is required"
    host, port = host_header.strip().lower(), ""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return f"Host {host_header[:100]!r} is malformed"
        host, rest = host[: end + 1], host[end + 1 :]
        if rest and not rest.startswith(":"):
            return f"Host {host_header[:100]!r} is malformed"
        port = rest[1:]
    elif ":" in host:
        host, _, port = host.partition(":")
    names = LOOPBACK_NAMES | {_bracketed(listen_host.lower())}
    if host not in names or not is_loopback(listen_host):
        return (
            f"Host {host_header[:100]!r} does not name this loopback listener "
            f"(use 127.0.0.1:{listen_port}, localhost:{listen_port} or [::1]:{listen_port})"
        )
    if (port or "80") != str(listen_port):
        return f"Host {host_header[:100]!r} names another port than {listen_port}"
    return None


def origin_refusal(origin: str, listen_host: str, listen_port: int) -> str | None:
    """Why a request from a page at `origin` (an ``Origin`` header) is foreign to the
    loopback listener, or None when the page was served by that listener itself."""
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme.lower() != "http" or "/" in rest:
        return f"Origin {origin[:100]!r} is not this listener"
    refused = host_refusal(rest, listen_host, listen_port)
    return f"Origin {origin[:100]!r} is not this listener" if refused else None
