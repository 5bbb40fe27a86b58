"""Suite-wide options: the opt-in end-to-end suite and shared paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import browser, tab  # noqa: F401 - the browser tests' fixtures

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_KNATIVE_SCHEMAS = REPO_ROOT.parent / "shared" / "schemas" / "knative"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--e2e",
        action="store_true",
        default=False,
        help="run tests/e2e: needs Docker, kind and a network to pull Knative and images",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--e2e"):
        return
    skip = pytest.mark.skip(
        reason="end-to-end suite runs only with --e2e (needs Docker, kind, network)"
    )
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)
