"""Knative Services on one machine: a request to a service goes to a revision by its split.

`Services` holds one `Route` per Knative Service and one `RevisionPool` per revision.
`post` picks the revision (a tag's revision, or a weighted draw), takes a process slot
and forwards the request; it is what the dispatcher calls for a Trigger whose
subscriber is a Service, and what the local service URLs serve:

- ``http://127.0.0.1:<serving port>/{namespace}/{service}[/path]``: the traffic split;
- ``http://127.0.0.1:<serving port>/{namespace}/{service}/tags/{tag}[/path]``: one tag
  (``stable``, ``canary``, a model name), as Knative gives each tag its own host.

Only requests whose ``Host`` names the loopback listener are served (421 otherwise).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from aiservice_operator.local.hosts import loopback_only
from aiservice_operator.local.loopback import LoopbackClient
from aiservice_operator.local.supervisor import RevisionPool
from aiservice_operator.local.traffic import Route, ServiceAddress

HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
)


class NoRoute(LookupError):
    """No such service or tag locally (answered 404, which Knative delivery retries)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    revision: str


class Services:
    """Routes and revision pools of every local Knative Service."""

    def __init__(self, session: aiohttp.ClientSession, draw: Callable[[], float] = random.random):
        self.session = session
        self.draw = draw
        self.client = LoopbackClient()
        """Posts to the revision processes (and the run's other loopback servers)."""
        self.routes: dict[tuple[str, str], Route] = {}
        self.pools: dict[str, RevisionPool] = {}
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def revision_for(self, address: ServiceAddress) -> str:
        route = self.routes.get((address.namespace, address.service))
        if route is None:
            raise NoRoute(f"no service {address.namespace}/{address.service}")
        if address.tag:
            revision = route.tags.get(address.tag)
            if revision is None:
                raise NoRoute(
                    f"service {address.namespace}/{address.service} has no tag {address.tag!r}"
                )
            return revision
        return route.pick(self.draw())

    async def post(
        self,
        address: ServiceAddress,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
    ) -> Answer:
        """Forward one request to a revision of the service; raises on network errors/timeout
        (OSError, TimeoutError)."""
        revision = self.revision_for(address)
        pool = self.pools.get(revision)
        if pool is None:
            raise NoRoute(f"revision {revision} is not running")
        limit = pool.spec.timeout_seconds  # the revision's timeoutSeconds bounds every request
        timeout = limit if timeout is None else min(timeout, limit)
        proc = await pool.acquire()
        self.sent[revision] += 1
        try:
            resp = await self.client.post(proc.url + address.path, headers, body, timeout)
            answer = Answer(resp.status, resp.headers, resp.body, revision)
        except BaseException:
            self.failed[revision] += 1
            raise
        finally:
            await pool.release(proc)
        if answer.status >= 500:
            self.failed[revision] += 1
        return answer


def serving_app(services: Services) -> web.Application:
    """The local service URLs: the split, and one URL per tag."""

    async def forward(request: web.Request) -> web.StreamResponse:
        ns, svc = request.match_info["ns"], request.match_info["svc"]
        tag = request.match_info.get("tag", "")
        path = "/" + request.match_info.get("tail", "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            answer = await services.post(
                ServiceAddress(ns, svc, tag, path), headers, await request.read(), None
            )
        except NoRoute as err:
            return web.json_response({"error": str(err)}, status=404)
        except ValueError as err:  # a header that cannot be forwarded
            return web.json_response({"error": str(err)}, status=400)
        except (aiohttp.ClientError, OSError) as err:
            return web.json_response({"error": f"revision unreachable: {err}"}, status=502)
        out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        out["x-aisvc-revision"] = answer.revision
        return web.Response(status=answer.status, headers=out, body=answer.body)

    app = web.Application(client_max_size=8 * 1024 * 1024, middlewares=[loopback_only])
    app.router.add_route("*", "/{ns}/{svc}/tags/{tag}", forward)
    app.router.add_route("*", "/{ns}/{svc}/tags/{tag}/{tail:.*}", forward)
    app.router.add_route("*", "/{ns}/{svc}", forward)
    app.router.add_route("*", "/{ns}/{svc}/{tail:.*}", forward)
    return app
