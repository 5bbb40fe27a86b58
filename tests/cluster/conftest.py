"""The cluster tier: one real control plane per test session (scripts/control-plane.sh up,
about 30 s once built), each test in its own namespace. Without the built binaries and
without Go to build them the tier is skipped with the reason, except in CI (CI=true),
where that is a failure."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import REPO_ROOT, Cluster, binaries_built, go_available
from tests.support.knative_status import KnativeStatus
from tests.support.operator_process import RELEASE, SYSTEM_NS

_counter = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not binaries_built() and not go_available():
        reason = (
            "CLUSTER TIER SKIPPED: no Go toolchain (>= 1.26) to build the control plane "
            "(scripts/control-plane.sh build); see docs/testing.md"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason.replace("SKIPPED", "FAILED"))
        pytest.skip(reason)
    c = Cluster(tmp_path_factory.mktemp("control-plane") / "state")
    c.up()
    try:
        yield c
    finally:
        c.down()


@pytest.fixture
def ns(cluster: Cluster) -> str:
    return cluster.namespace(f"c{os.getpid() % 1000}-{next(_counter)}")


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    """The AIService CRD as the chart ships it, established."""
    root = Path(__file__).resolve().parents[2]
    cluster.kubectl("apply", "--server-side", "-f", str(root / "charts/aiservice-operator/crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/aiservices.aiservice.dev"
    )


@pytest.fixture(scope="session")
def knative(cluster: Cluster) -> Iterator[KnativeStatus]:
    """Knative Serving's controllers' part (the tier's one stand-in)."""
    with cluster.http() as client, KnativeStatus(client) as standin:
        yield standin


@pytest.fixture(scope="session")
def installed(cluster: Cluster, knative: KnativeStatus) -> Iterator[None]:
    """The chart installed with its defaults (its CRDs, ServiceAccount and RBAC)."""
    cluster.helm(
        "install", RELEASE, str(REPO_ROOT / "charts" / "aiservice-operator"),
        "-n", SYSTEM_NS, "--create-namespace",
    )  # fmt: skip
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/aiservices.aiservice.dev"
    )
    yield
    cluster.helm("uninstall", RELEASE, "-n", SYSTEM_NS)
