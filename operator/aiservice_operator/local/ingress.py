"""The broker ingress: Knative's URL shape on loopback, both CloudEvents content modes.

``POST /{namespace}/{broker}`` takes one CloudEvent (binary or structured mode), logs it
durably and only then answers 202, so an accepted event survives a crash. A malformed
event is refused with 400/415 and the reason; an unknown broker with 404; an event the
log could not commit (disk full) with 503 and ``Retry-After``, so the sender retries.
``GET /_aisvc/status`` serves the status snapshot ``aisvc status`` reads;
``POST /_aisvc/aiservices/{namespace}/{name}/{command}`` sends a rollout command
(promote, abort, pause, resume), as the ``aiservice.dev/<command>`` annotation does on a
cluster; ``GET /_aisvc/metrics`` the run's rollout metrics (the operator's series of the
same names), for a Prometheus watching a local rollout. A command needs the
``X-Aisvc-Command: 1`` header and no foreign ``Origin`` (one that is not this listener's
loopback address, whatever the ``Host`` says), so a web page the user visits cannot send
one (a browser cannot add the header to a cross-origin request without a CORS preflight,
which this server never grants). Every request must name this listener in its ``Host``
(`aiservice_operator.local.hosts`), so a page rebinding its own name to 127.0.0.1 is
refused too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiservice_functions.cloudevents_http import InvalidEvent, parse_request
from aiservice_functions.loopback_hosts import origin_refusal
from prometheus_client import CONTENT_TYPE_LATEST

from aiservice_operator.core.rollout import COMMANDS
from aiservice_operator.local.dispatcher import Dispatcher
from aiservice_operator.local.hosts import listen_address, loopback_only
from aiservice_operator.local.log import LogUnavailable

STATUS_PATH = "/_aisvc/status"
COMMAND_HEADER = "X-Aisvc-Command"
COMMANDS_PATH = "/_aisvc/aiservices"
METRICS_PATH = "/_aisvc/metrics"
Control = Callable[[str, str, str], str | None]
"""(namespace, name, command) -> None when accepted, else the reason it was refused."""
MAX_EVENT_BYTES = 4 * 1024 * 1024
RETRY_AFTER_S = "1"


def ingress_app(
    dispatcher: Dispatcher,
    brokers: set[str],
    status: Callable[[], dict[str, Any]],
    control: Control | None = None,
    metrics: Callable[[], bytes] | None = None,
) -> web.Application:
    async def accept(request: web.Request) -> web.Response:
        broker = f"{request.match_info['ns']}/{request.match_info['broker']}"
        if broker not in brokers:
            known = ", ".join(sorted(brokers)) or "none"
            return web.json_response({"error": f"no broker {broker} (known: {known})"}, status=404)
        try:
            parsed = parse_request(dict(request.headers), await request.read())
        except InvalidEvent as err:
            return web.json_response({"error": err.reason}, status=err.status)
        try:
            fresh = await dispatcher.accept(broker, parsed.event)
        except LogUnavailable as err:  # not committed: the sender retries (Knative does on 503)
            return web.json_response(
                {"error": str(err)}, status=503, headers={"Retry-After": RETRY_AFTER_S}
            )
        return web.Response(status=202, headers={} if fresh else {"x-aisvc-duplicate": "true"})

    async def show_status(_: web.Request) -> web.Response:
        return web.json_response(status())

    async def command(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        listen = listen_address(request)
        if origin is not None and (listen is None or origin_refusal(origin, *listen)):
            return web.json_response(
                {"error": f"cross-origin command refused (Origin {origin[:100]})"}, status=403
            )
        if request.headers.get(COMMAND_HEADER) != "1":
            return web.json_response(
                {"error": f"a command needs the header {COMMAND_HEADER}: 1"}, status=403
            )
        info = request.match_info
        if info["command"] not in COMMANDS:
            return web.json_response(
                {"error": f"unknown command {info['command'][:100]!r} ({', '.join(COMMANDS)})"},
                status=404,
            )
        refused = (
            control(info["ns"], info["name"], info["command"])
            if control is not None
            else "this run takes no commands"
        )
        if refused:
            return web.json_response({"error": refused}, status=400)
        return web.json_response({"accepted": info["command"]}, status=202)

    async def show_metrics(_: web.Request) -> web.Response:
        body = metrics() if metrics is not None else b""
        return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=MAX_EVENT_BYTES, middlewares=[loopback_only])
    app.router.add_get(STATUS_PATH, show_status)
    app.router.add_get(METRICS_PATH, show_metrics)
    app.router.add_post(COMMANDS_PATH + "/{ns}/{name}/{command}", command)
    app.router.add_post("/{ns}/{broker}", accept)
    return app
