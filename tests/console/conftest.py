"""Fixtures of the console tests: the event store of tests/support/console_store.py (the
browser is the suite's, from tests/support/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.console_store import Store, running_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with running_store(tmp_path_factory.mktemp("store")) as running:
        yield running
