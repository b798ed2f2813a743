"""The annotator's journey in headless Chromium against a live server: log in, label with the
keyboard only, skip, undo and relabel, then check what the database recorded. Saves screenshots
of the labelling page (desktop and phone width) to the artefacts folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from acquisition.models import ScoringRun
from annotation import services
from annotation.ingest_records import text_digest
from annotation.models import (
    Annotation,
    Assignment,
    AssignmentStatus,
    Item,
    ItemStatus,
    QueueEntry,
    Role,
)
from annotation.services.projects import LabelSpec

pytest.register_assert_rewrite("tests.browser")
from tests.browser import DESKTOP, LABELS, PASSWORD, PHONE, log_in, queue_texts, shown, wait_for_item_other_than  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.django_db(transaction=True)

INSTRUCTIONS = (
    "Each text is a message a customer sent to support. Pick the one intent that best describes "
    "what the customer wants.\n\nIf two intents fit, pick the more specific one. Skip messages that "
    "are not about the bank at all."
)
TEXTS = [
    "Hi,\n\nI ordered a new debit card two weeks ago and it still hasn't arrived. The app says it was "
    "dispatched on the 3rd.\n\nCan you tell me where it is, or send another one?\n\nThanks,\nMarta",
    "I was charged twice for the same hotel booking. Please give me back the second payment.",
    "Locked out of my account after three wrong PIN attempts. How do I reset it?",
    "Why did I pay a 2% fee when I topped up with my credit card?",
    "My wallet was stolen this morning, with my card in it. Please block the card right away!",
    "How long does delivery take to Portugal?",
    "The exchange rate you applied on Saturday was much worse than the one on your website.",
    "I cancelled my gym membership but they still took money. Can I get a refund through you?",
    "Forgot my password and the reset email never comes.",
    "Is there a monthly fee for the premium account?",
    "  Indented text\n\tkeeps its tabs\nand   its   spaces.  ",
    "Quel temps fait-il à Lisbonne demain ?",
    "Card not arrived yet, ordered last Monday.",
    "Refund for the concert tickets that were cancelled, please.",
    "Can I change the PIN of my card in the app?",
    "Long message. " + "This sentence repeats to make the text long enough to scroll. " * 60,
]


@pytest.fixture
def refill_off(settings):
    settings.QUORUM_REFILL_THRESHOLD = 0  # no scoring runs requested while the tests label


@pytest.fixture
def annotator(make_user):
    return make_user("maria", password=PASSWORD)


def labelling_project(admin, annotator, texts=TEXTS, name="Support inbox"):
    """A project whose queue holds ``texts`` in order, with a model suggestion for some items."""
    project = services.project_create(
        user=admin, name=name, labels=LABELS, instructions=INSTRUCTIONS, embedding_dim=4, labels_per_item=2
    )
    services.membership_set(project=project, username=annotator.username, role=Role.ANNOTATOR)
    # A second annotator: the items stay open (changeable, undoable) after the first label.
    get_user_model().objects.get_or_create(username="colleague")
    services.membership_set(project=project, username="colleague", role=Role.ANNOTATOR)
    queue_texts(project, texts, lambda position: ("delivery", 0.72) if position == 0 else ("refund", 0.55))
    return project


def test_label_ten_skip_one_undo_one_with_the_keyboard(
    open_page, live_server, admin_user, annotator, refill_off, artifacts_dir
):
    project = labelling_project(admin_user, annotator)
    label_keys = {label.name: label.shortcut for label in project.labels.all()}
    assert label_keys == {
        "refund": "1",
        "card_lost": "2",
        "delivery": "3",
        "account_access": "4",
        "fees": "5",
        "other": "o",
    }
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path="/")
    assert page.locator("h1").inner_text() == "My projects"
    page.screenshot(path=str(artifacts_dir / "my-projects.png"))
    page.get_by_role("link", name=f"Start labelling {project.name}").click()
    page.wait_for_url(f"**/projects/{project.pk}/label")

    first = shown(page)
    assert first == "msg-001"
    assert page.locator("#item-text").inner_text().startswith("Hi,\n\nI ordered a new debit card")
    assert page.locator("#suggestion").is_hidden()  # suggestions are off by default
    page.screenshot(path=str(artifacts_dir / "labelling-page.png"))

    # Label ten items with the keyboard. The first key is pressed twice in a row: one annotation.
    plan = ["3", "1", "4", "5", "2", "3", "5", "1", "4", "o"]
    chosen: dict[str, str] = {}
    current = first
    for position, key in enumerate(plan):
        page.keyboard.press(key)
        if position == 0:
            page.keyboard.press(key)
        chosen[current] = key
        current = wait_for_item_other_than(page, current)
    assert current == "msg-011"
    assert page.locator("#item-text").inner_text() == TEXTS[10]  # whitespace kept

    # Skip one with a reason: Shift+S goes to the reason field, Enter skips.
    skipped = current
    page.keyboard.press("Shift+S")
    assert page.evaluate("document.activeElement.id") == "skip-reason"
    page.keyboard.type("Not about the bank")
    page.keyboard.press("Enter")
    current = wait_for_item_other_than(page, skipped)
    assert current == "msg-012"

    # Undo brings back the last labelled item (msg-010, "o"); relabel it with "5".
    page.keyboard.press("u")
    undone = wait_for_item_other_than(page, current)
    assert undone == "msg-010"
    assert page.locator(".label-btn.is-previous").get_attribute("data-label") == "other"
    assert "Undone" in page.locator("#status").inner_text()
    page.screenshot(path=str(artifacts_dir / "labelling-after-undo.png"))
    page.keyboard.press("5")
    chosen[undone] = "5"
    after = wait_for_item_other_than(page, undone)
    assert after == "msg-012"  # the item that was on screen before the undo
    assert page.locator(".progress-line [data-progress='done_today']").inner_text() == "10"
    assert not page.errors, page.errors

    # --- what the database says ---
    names = {key: name for name, key in label_keys.items()}
    annotations = {
        a.item.external_id: a for a in Annotation.objects.filter(user=annotator).select_related("item", "label")
    }
    assert sorted(annotations) == sorted(chosen)
    for external_id, key in chosen.items():
        assert annotations[external_id].label.name == names[key], external_id
        assert annotations[external_id].time_spent_ms > 0
    assert annotations["msg-010"].label.name == "fees"

    assignments = {a.item.external_id: a for a in Assignment.objects.filter(user=annotator).select_related("item")}
    statuses = {external_id: a.status for external_id, a in assignments.items()}
    assert [statuses[external_id] for external_id in chosen] == [AssignmentStatus.SUBMITTED] * 10
    assert statuses[skipped] == AssignmentStatus.SKIPPED
    assert assignments[skipped].skip_reason == "Not about the bank"
    # Live leases: the item on screen and the prefetched one, nothing more.
    assert sorted(e for e, s in statuses.items() if s == AssignmentStatus.LEASED) == ["msg-012", "msg-013"]
    assert len(assignments) == 13

    entries = {e.item.external_id: e for e in QueueEntry.objects.filter(project=project).select_related("item")}
    for external_id in chosen:
        assert entries[external_id].labels_taken == 1  # one of two labels per item
    assert entries[skipped].labels_taken == 0  # the skipped slot went back to the queue
    assert entries["msg-012"].labels_taken == entries["msg-013"].labels_taken == 1
    assert not Item.objects.filter(project=project, status=ItemStatus.FINALIZED).exists()


def test_phone_width_and_suggestion_toggle(open_page, live_server, admin_user, annotator, refill_off, artifacts_dir):
    project = labelling_project(admin_user, annotator)
    page = open_page(PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "msg-001"
    # Nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(artifacts_dir / "labelling-page-phone.png"))
    page.screenshot(path=str(artifacts_dir / "labelling-page-phone-full.png"), full_page=True)

    # Tap a label; then turn suggestions on: shown at once, remembered across reloads.
    page.locator('.label-btn[data-label="delivery"]').tap()
    second = wait_for_item_other_than(page, "msg-001")
    page.locator("#suggest-toggle").check()
    assert page.evaluate("localStorage.getItem('quorum.suggest')") == "1"
    suggestion = page.locator("#suggestion")
    suggestion.get_by_text("Model suggests").wait_for()  # for the item already on screen
    assert suggestion.inner_text() == "Model suggests refund (55% sure)"
    suggestion.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "labelling-page-phone-suggestion.png"))
    assert Assignment.objects.filter(user=annotator, status=AssignmentStatus.LEASED).count() == 2
    page.reload()
    assert shown(page) == second  # the same lease comes back after a reload
    assert page.locator("#suggest-toggle").is_checked()
    assert page.locator("#suggestion").inner_text() == "Model suggests refund (55% sure)"
    assert page.locator('.label-btn[data-label="refund"]').get_attribute("class").count("is-suggested") == 1
    assert not page.errors, page.errors
    assert Annotation.objects.get(user=annotator).label.name == "delivery"


def test_empty_queue_says_so_and_picks_up_new_items(
    open_page, live_server, admin_user, annotator, refill_off, artifacts_dir
):
    project = labelling_project(admin_user, annotator, texts=["The only message."], name="Tiny")
    ScoringRun.objects.create(project=project, strategy="margin", trigger="low_queue")  # a refill is running
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "msg-001"
    page.keyboard.press("1")
    page.wait_for_selector('#labeller[data-state="empty"]')
    empty = page.locator("#empty-state")
    assert "No items to label right now" in empty.inner_text()
    assert page.locator("[data-empty-refill]").is_visible()
    assert "being prepared" in page.locator("[data-empty-refill]").inner_text()
    page.screenshot(path=str(artifacts_dir / "labelling-empty-queue.png"))

    # A new item arrives while the page waits: it shows up without a reload.
    text = "A new message, queued while the page waited."
    item = Item.objects.create(project=project, external_id="msg-new", text=text, text_hash=text_digest(text))
    services.queue_replace(
        project=project, candidates=[services.QueueCandidate(item_id=item.pk, priority=1.0)], strategy="margin"
    )
    page.wait_for_selector('#labeller[data-state="ready"]', timeout=15_000)
    assert page.get_attribute("#labeller", "data-external-id") == "msg-new"
    assert not page.errors, page.errors


def test_network_error_keeps_the_choice_and_retries(open_page, live_server, admin_user, annotator, refill_off):
    project = labelling_project(admin_user, annotator, texts=TEXTS[:3])
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "msg-001"

    # The first submission fails on the network; the chosen label stays marked, Retry saves it.
    failed = []

    def fail_once(route):
        if not failed:
            failed.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/assignments/*/annotation", fail_once)
    page.wait_for_function("() => document.getElementById('labeller').dataset.prefetched === '1'")
    page.keyboard.press("2")
    status = page.locator("#status")
    status.wait_for(state="visible")
    assert "card_lost" in status.inner_text() and "kept" in status.inner_text()
    assert page.locator(".label-btn.is-chosen").get_attribute("data-label") == "card_lost"
    assert page.get_attribute("#labeller", "data-external-id") == "msg-001"
    assert not Annotation.objects.filter(user=annotator).exists()
    assert page.evaluate("document.activeElement.dataset.action") == "retry"
    page.keyboard.press("Enter")
    assert wait_for_item_other_than(page, "msg-001") == "msg-002"  # the item shown meanwhile comes next
    assert failed
    assert Annotation.objects.get(user=annotator).label.name == "card_lost"


def test_login_page_and_non_member(open_page, live_server, admin_user, annotator, artifacts_dir):
    project = services.project_create(user=admin_user, name="Private", labels=LABELS[:2], embedding_dim=4)
    page = open_page(DESKTOP)
    response = page.goto(f"/projects/{project.pk}/label")
    assert "/accounts/login/" in page.url and response.ok
    assert page.evaluate("document.activeElement.id") == "id_username"
    page.screenshot(path=str(artifacts_dir / "login.png"))
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert page.locator("h1").inner_text() != project.name
    response = page.goto(f"/projects/{project.pk}/label")
    assert response.status == 404
    assert get_user_model().objects.filter(username=annotator.username).exists()


def test_many_labels_pick_by_filter(open_page, live_server, admin_user, annotator, refill_off, artifacts_dir):
    """The demo's 77 intents: "/" focuses the filter, typing narrows the buttons, Enter picks."""
    categories = json.loads(
        (Path(services.__file__).resolve().parents[1] / "demo" / "banking77_categories.json").read_text()
    )
    project = services.project_create(
        user=admin_user,
        name="Banking intents",
        labels=[LabelSpec(name) for name in categories],
        instructions=INSTRUCTIONS,
        embedding_dim=4,
    )
    services.membership_set(project=project, username=annotator.username, role=Role.ANNOTATOR)
    texts = ["I am still waiting on my card?", "What can I do if my card still hasn't arrived after 2 weeks?"]
    Item.objects.bulk_create(
        Item(project=project, external_id=f"b-{i}", text=text, text_hash=text_digest(text))
        for i, text in enumerate(texts)
    )
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "b-0"  # no scoring run yet: the queue falls back to item order
    assert page.locator(".label-btn").count() == len(categories) == 77
    page.screenshot(path=str(artifacts_dir / "labelling-page-77-labels.png"))

    page.keyboard.press("/")
    page.keyboard.type("card arr")
    assert [b.get_attribute("data-label") for b in page.locator(".label-btn:visible").all()] == ["card_arrival"]
    page.keyboard.press("Enter")
    wait_for_item_other_than(page, "b-0")
    assert page.locator(".label-btn:visible").count() == 77  # the filter is cleared for the next item
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "item-text"
    assert Annotation.objects.get(user=annotator).label.name == "card_arrival"
    assert not page.errors, page.errors
