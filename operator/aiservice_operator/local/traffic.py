"""A Knative Service's traffic block as a routing table, and cluster URLs resolved locally.

Pure: `Route.pick` takes the random draw as an argument so the split can be checked
without chance, and `resolve_service_url` maps the cluster-internal URLs the compiler
writes (``http://<tag>-<svc>.<ns>.svc.<domain>/path``) onto local services.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class RouteError(ValueError):
    """A traffic block that cannot be served (names the field)."""


@dataclass(frozen=True)
class Target:
    revision: str
    percent: int
    tag: str = ""


@dataclass(frozen=True)
class Route:
    """Where the events for one Knative Service go: a weighted split and tagged targets."""

    namespace: str
    service: str
    targets: tuple[Target, ...]

    def __post_init__(self) -> None:
        total = sum(t.percent for t in self.targets)
        if total != 100:
            raise RouteError(
                f"{self.namespace}/{self.service}: spec.traffic percents sum to {total}, not 100"
            )

    @property
    def weights(self) -> dict[str, int]:
        """Percent per revision (a revision listed twice, e.g. once per tag, is summed)."""
        out: dict[str, int] = {}
        for target in self.targets:
            out[target.revision] = out.get(target.revision, 0) + target.percent
        return out

    @property
    def tags(self) -> dict[str, str]:
        return {t.tag: t.revision for t in self.targets if t.tag}

    def pick(self, draw: float) -> str:
        """The revision for a uniform draw in [0, 1): revision i owns its percent of the range."""
        weighted = [t for t in self.targets if t.percent > 0]
        bounds = list(itertools.accumulate(t.percent for t in weighted))
        index = bisect.bisect_right(bounds, draw * 100.0)
        return weighted[min(index, len(weighted) - 1)].revision


def route_of(service: Mapping[str, Any]) -> Route:
    """The route of a ``serving.knative.dev/v1`` Service as the compiler emitted it.

    ``latestRevision: true`` targets the template's revision (``spec.template.metadata.name``),
    which is the latest created revision once the executor has started it.
    """
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    latest = ((spec.get("template") or {}).get("metadata") or {}).get("name", "")
    traffic = spec.get("traffic") or [{"latestRevision": True, "percent": 100}]
    targets: list[Target] = []
    for index, entry in enumerate(traffic):
        where = f"spec.traffic[{index}]"
        name = entry.get("revisionName") or ""
        if not name:
            if not entry.get("latestRevision"):
                raise RouteError(f"{where}: needs revisionName or latestRevision: true")
            if not latest:
                raise RouteError(f"{where}: latestRevision needs spec.template.metadata.name")
            name = latest
        percent = entry.get("percent", 0) or 0
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            raise RouteError(f"{where}.percent: must be an integer in 0..100")
        targets.append(Target(revision=name, percent=percent, tag=entry.get("tag") or ""))
    return Route(
        namespace=meta.get("namespace", "default"), service=meta["name"], targets=tuple(targets)
    )


@dataclass(frozen=True)
class ServiceAddress:
    """A local service target: the service, an optional tag, and the request path."""

    namespace: str
    service: str
    tag: str = ""
    path: str = "/"


def resolve_service_url(
    url: str, services: Collection[tuple[str, str]], cluster_domain: str = "cluster.local"
) -> ServiceAddress | None:
    """Map ``http://[<tag>-]<svc>.<ns>.svc.<domain>[/path]`` onto a known (namespace, service).

    None when the URL is not a cluster-internal address of a known service (then it is
    an ordinary URL, posted to as it is).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    suffix = f".svc.{cluster_domain}"
    if not host.endswith(suffix):
        return None
    labels = host[: -len(suffix)].split(".")
    if len(labels) != 2:
        return None
    first, namespace = labels
    path = parts.path or "/"
    if (namespace, first) in services:
        return ServiceAddress(namespace, first, "", path)
    for ns, svc in services:
        if ns == namespace and first.endswith(f"-{svc}"):
            return ServiceAddress(ns, svc, first[: -len(svc) - 1], path)
    return None
