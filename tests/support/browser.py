"""Headless Debian Chromium driven by Playwright, for the console's browser tests.

Chromium comes from Debian's packages (scripts/ci-deps.sh installs it): Playwright's own
browser download cannot run here. Without it the browser tests are skipped with that
reason, except in CI (``CI=true``), where they fail. Each browser starts with a fresh
profile and with its background networking off (no update, sync or safe-browsing calls).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
LAUNCH_ARGS = [
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_TIMEOUT_MS = 15_000
"""Bound of any one wait for the page (an element, a navigation): only stops a hang."""

WATCH_SCRIPT = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


def chromium_path() -> str | None:
    for candidate in (os.environ.get("AISVC_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def need(reason: str) -> None:
    """Skip for ``reason``; in CI a missing prerequisite of the default suite fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run; see scripts/ci-deps.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module. Not longer: while Playwright's sync API is
    started it holds an event loop in this thread, and a later test's ``asyncio.run()``
    would find it running."""
    path = chromium_path()
    if path is None:
        need("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("playwright for Python is not installed (pip install -e '.[dev]')")
    from playwright.sync_api import expect

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    with sync_playwright() as pw:
        # Playwright gives each launch a new empty profile directory of its own.
        instance = pw.chromium.launch(executable_path=path, headless=True, args=LAUNCH_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@dataclass
class Tab:
    """A page in a fresh browser context, with what it did recorded for the assertions."""

    page: Any
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return list(self.page.evaluate("window.__cspViolations || []"))


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    """A new context (no cookies) and page; closed after the test."""
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.add_init_script(WATCH_SCRIPT)
    page = context.new_page()
    t = Tab(page)
    page.on("request", lambda r: t.requests.append(r.url))
    page.on("pageerror", lambda e: t.errors.append(str(e)))

    def on_dialog(dialog: Any) -> None:
        t.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield t
    finally:
        context.close()
