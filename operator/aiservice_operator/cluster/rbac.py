"""The Kubernetes permissions a deployed operator needs, as the Helm chart grants them.

`kube.required_permissions()` covers every request of the operator's own code and of the
framework's reconciling. Running several replicas adds Kopf's cluster-wide peering: each
replica lists and watches the `ClusterKopfPeering` object and patches its own liveness
record into it. The chart's RBAC test compares its rendered rules with this, both ways.
"""

from __future__ import annotations

from aiservice_operator.cluster.kube import required_permissions

Permission = tuple[str, str, str]
"""(API group, resource, verb); the core group is ""."""

PEERING_CALLS: frozenset[Permission] = frozenset(
    ("kopf.dev", "clusterkopfpeerings", verb) for verb in ("list", "watch", "patch")
)
"""What Kopf's peering requests (kopf._core.engines.peering: a watch and keep-alive patches)."""


def deployment_permissions(*, peering: bool) -> list[Permission]:
    """Every permission of the operator's ServiceAccount, sorted."""
    needed = set(required_permissions())
    if peering:
        needed |= PEERING_CALLS
    return sorted(needed)
