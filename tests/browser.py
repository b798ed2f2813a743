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

from annotation import services
from annotation.ingest_records import text_digest
from annotation.models import Item
from annotation.services.projects import LabelSpec

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

# The people the tests create log in with this password; their projects sort support messages.
PASSWORD = "pw-12345-quorum"
LABELS = [
    LabelSpec("refund", description="Wants money back for a payment or a fee"),
    LabelSpec("card_lost", description="Card lost, stolen or not arrived"),
    LabelSpec("delivery", description="Card or parcel delivery times and tracking"),
    LabelSpec("account_access", description="Cannot log in, locked out, password or PIN problems"),
    LabelSpec("fees", description="Questions about charges and exchange rates"),
    LabelSpec("other", shortcut="o", description="None of the above"),
]


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
    from playwright.sync_api import Error as PlaywrightError  # loaded only where browser tests run

    for context in contexts:
        # Let requests still in flight (a prefetch after the last key) finish first: a live-server
        # thread inside a transaction at teardown would block the database flush of the next test.
        for page in context.pages:
            try:
                page.wait_for_load_state("networkidle", timeout=5_000)
            except PlaywrightError:  # a page that never goes idle is closed all the same
                pass
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


def queue_texts(project, texts, suggestion) -> list:
    """Items ``msg-001``, ``msg-002``… holding ``texts``, queued in that order. For the item at
    ``position``, ``suggestion(position)`` gives the (label name, confidence) the model suggests."""
    items = Item.objects.bulk_create(
        Item(
            project=project,
            external_id=f"msg-{i + 1:03d}",
            text=text,
            text_hash=text_digest(text),
            metadata={"channel": "email" if i % 2 else "chat"},
        )
        for i, text in enumerate(texts)
    )
    labels = {label.name: label for label in project.labels.all()}
    candidates = []
    for position, item in enumerate(items):
        label, confidence = suggestion(position)
        candidates.append(
            services.QueueCandidate(
                item_id=item.pk,
                priority=float(len(items) - position),
                suggested_label_id=labels[label].pk,
                suggested_confidence=confidence,
            )
        )
    services.queue_replace(project=project, candidates=candidates, strategy="margin")
    return items


def shown(page) -> str:
    """External id of the item on the labelling page once it accepts input."""
    page.wait_for_selector('#labeller[data-state="ready"][data-accepting="true"]')
    return page.get_attribute("#labeller", "data-external-id")


def wait_for_item_other_than(page, external_id: str, *, keys_drained: bool = False) -> str:
    """External id of the next item once the labelling page shows one other than ``external_id``
    and accepts input; ``keys_drained``: also once no typed-ahead key is left to apply."""
    page.wait_for_function(
        """([previous, drained]) => {
            const root = document.getElementById("labeller");
            return root.dataset.state === "ready" && root.dataset.accepting === "true"
                && (!drained || root.dataset.queued === "0")
                && root.dataset.externalId && root.dataset.externalId !== previous;
        }""",
        arg=[external_id, keys_drained],
    )
    return page.get_attribute("#labeller", "data-external-id")
