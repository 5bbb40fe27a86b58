"""The DNS-rebinding guard of the local run's listeners (broker ingress, commands API,
service URLs): a request whose ``Host`` does not name the loopback address and port it
came in on is refused with 421 and the reason (the rule is
`aiservice_functions.loopback_hosts`)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from aiservice_functions.loopback_hosts import MISDIRECTED, host_refusal


def listen_address(request: web.Request) -> tuple[str, int] | None:
    """The local address and port the request's connection came in on."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not sockname:
        return None
    return str(sockname[0]), int(sockname[1])


@web.middleware
async def loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer only requests whose Host names this listener's loopback address."""
    listen = listen_address(request)
    refused = host_refusal(request.headers.get("Host"), *listen) if listen else "connection closed"
    if refused:
        return web.json_response({"error": refused}, status=MISDIRECTED)
    return await handler(request)
