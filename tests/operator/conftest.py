"""One API emulator, one Knative Serving stand-in and one real Kopf operator per module;
each test works in its own namespace."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.support.knative import KnativeServing
from tests.support.kubeemu import EmulatorThread
from tests.support.operator import OperatorThread

_counter = itertools.count(1)


@pytest.fixture(scope="module")
def kube() -> Iterator[EmulatorThread]:
    with EmulatorThread() as kube:
        yield kube


@pytest.fixture(scope="module")
def knative(kube: EmulatorThread) -> KnativeServing:
    return KnativeServing(kube).start()


@pytest.fixture(scope="module")
def operator(kube: EmulatorThread, knative: KnativeServing) -> Iterator[OperatorThread]:
    with OperatorThread(kube.url) as op:
        yield op


@pytest.fixture
def ns() -> str:
    return f"t{next(_counter)}"
