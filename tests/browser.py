"""Browser-test helpers: headless Debian Chromium driven by Playwright against pytest-django's
live server. Loaded by browser test modules with ``pytest_plugins = ["tests.browser"]``.

No browser download is needed: Playwright launches the system's Chromium (``/usr/bin/chromium``,
or ``QUORUM_CHROMIUM``). Without it, or without the ``playwright`` package, the tests skip and say
why. Screenshots go to ``QUORUM_TEST_ARTIFACTS`` (default ``var/test-artifacts`` in the checkout).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make in
# that same thread (fixtures, database checks) are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("QUORUM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parent.parent
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def browser_missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set QUORUM_CHROMIUM)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="session")
def chromium():
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("QUORUM_TEST_ARTIFACTS") or REPO / "var" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


class PageErrors(list):
    """JavaScript errors and failed same-origin requests seen by a page."""

    def attach(self, page) -> None:
        page.on("pageerror", lambda error: self.append(f"page error: {error}"))
        page.on("console", lambda message: self.append(f"console: {message.text}") if message.type == "error" else None)


@pytest.fixture
def open_page(chromium, live_server):
    """``open_page(viewport=DESKTOP)`` -> a fresh page (own cookies) on the live server.

    Each page collects its JavaScript errors in ``page.errors``."""
    contexts = []

    def make(viewport=DESKTOP, **options):
        context = chromium.new_context(viewport=viewport, base_url=live_server.url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.errors = PageErrors()
        page.errors.attach(page)
        return page

    yield make
    for context in contexts:
        context.close()


def log_in(page, username: str, password: str, next_path: str = "/") -> None:
    """Log in through the login form, with the keyboard."""
    page.goto(next_path)
    page.wait_for_url("**/accounts/login/**")
    page.locator("#id_username").focus()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    if "/accounts/login/" in page.url:
        raise AssertionError(f"login as {username!r} failed: still on {page.url}")
