"""The labelling page's keyboard in headless Chromium: focus comes back to the page after a pick
from the filter, every label of a large set has keys (two-key chords once the single keys run
out), Enter accepts the model's suggestion, fast key presses are queued instead of dropped, undo
goes back several steps, and the "Recently labelled" list changes a past label."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from annotation import services
from annotation.models import Annotation, Item, ItemStatus, Role
from annotation.services.projects import LabelSpec

pytest.register_assert_rewrite("tests.browser")
from tests.browser import DESKTOP, PASSWORD, PHONE, log_in, queue_texts, shown, wait_for_item_other_than  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.django_db(transaction=True)

TEXTS = [f"Message number {i}: my card has not arrived yet, what should I do?" for i in range(1, 13)]
CATEGORIES = json.loads(
    (Path(services.__file__).resolve().parents[1] / "demo" / "banking77_categories.json").read_text()
)


@pytest.fixture
def refill_off(settings):
    settings.QUORUM_REFILL_THRESHOLD = 0  # no scoring runs requested while the tests label


@pytest.fixture
def annotator(make_user):
    return make_user("maria", password=PASSWORD)


def make_project(admin, annotator, labels, texts=TEXTS, labels_per_item=2):
    project = services.project_create(
        user=admin, name="Banking intents", labels=labels, embedding_dim=4, labels_per_item=labels_per_item
    )
    services.membership_set(project=project, username=annotator.username, role=Role.ANNOTATOR)
    # A second annotator: the items stay open (changeable, undoable) after the first label.
    get_user_model().objects.get_or_create(username="colleague")
    services.membership_set(project=project, username="colleague", role=Role.ANNOTATOR)
    first = labels[0].name
    queue_texts(project, texts, lambda position: (labels[position % 3].name if position else first, 0.8))
    return project


def banking(admin, annotator, **options):
    return make_project(admin, annotator, [LabelSpec(name) for name in CATEGORIES], **options)


def labels_of(annotator) -> dict[str, str]:
    return {
        a.item.external_id: a.label.name
        for a in Annotation.objects.filter(user=annotator).select_related("item", "label")
    }


def test_focus_returns_to_the_page_after_a_filter_pick_and_a_skip_with_reason(
    open_page, admin_user, annotator, refill_off
):
    project = banking(admin_user, annotator)
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "msg-001"
    assert "Esc" in page.locator("#keys-hint").inner_text()

    page.keyboard.press("/")
    page.keyboard.type("card arr")
    page.keyboard.press("Enter")
    assert wait_for_item_other_than(page, keys_drained=True, external_id="msg-001") == "msg-002"
    assert page.evaluate("document.activeElement.id") == "item-text"
    # The next label key labels the next item: it does not type into the filter.
    page.keyboard.press("1")
    assert wait_for_item_other_than(page, keys_drained=True, external_id="msg-002") == "msg-003"
    assert page.input_value("#label-filter") == ""
    assert page.locator(".label-btn:visible").count() == 77

    page.keyboard.press("Shift+S")
    page.keyboard.type("not sure")
    page.keyboard.press("Enter")
    assert wait_for_item_other_than(page, keys_drained=True, external_id="msg-003") == "msg-004"
    assert page.evaluate("document.activeElement.id") == "item-text"
    page.keyboard.press("2")
    assert wait_for_item_other_than(page, keys_drained=True, external_id="msg-004") == "msg-005"
    assert page.input_value("#skip-reason") == ""
    assert labels_of(annotator) == {"msg-001": "card_arrival", "msg-002": CATEGORIES[0], "msg-004": CATEGORIES[1]}
    assert not page.errors, page.errors


def test_every_label_has_keys_and_chords_pick_the_rest(open_page, admin_user, annotator, refill_off):
    project = banking(admin_user, annotator)
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    shown(page)
    keys = page.eval_on_selector_all(".label-btn", "buttons => buttons.map(b => b.dataset.key || '')")
    assert len(keys) == 77 and all(keys) and len(set(keys)) == 77
    assert keys[34] == ".1"  # the 35th label: the first chord
    assert page.locator(".label-btn").nth(34).locator("kbd").inner_text().replace(" ", "") == ".1"

    page.keyboard.press(".")
    assert page.get_attribute("#labeller", "data-chord") == "."
    page.keyboard.press("1")
    assert wait_for_item_other_than(page, keys_drained=True, external_id="msg-001") == "msg-002"
    # Escape cancels a started chord: the next single key is a plain shortcut again.
    page.keyboard.press(",")
    page.keyboard.press("Escape")
    assert page.get_attribute("#labeller", "data-chord") == ""
    page.keyboard.press("3")
    assert wait_for_item_other_than(page, keys_drained=True, external_id="msg-002") == "msg-003"
    page.keyboard.press(",")
    page.keyboard.press("9")
    assert wait_for_item_other_than(page, keys_drained=True, external_id="msg-003") == "msg-004"
    assert labels_of(annotator) == {"msg-001": CATEGORIES[34], "msg-002": CATEGORIES[2], "msg-003": CATEGORIES[76]}
    assert not page.errors, page.errors


def test_enter_accepts_the_suggestion_and_fast_keys_are_queued(open_page, admin_user, annotator, refill_off):
    labels = [LabelSpec("refund"), LabelSpec("card_lost"), LabelSpec("delivery")]
    project = make_project(admin_user, annotator, labels)
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "msg-001"
    page.locator("#suggest-toggle").check()
    page.wait_for_function("() => document.querySelector('[data-suggestion=\"label\"]').textContent === 'refund'")
    page.locator("#item-text").focus()
    page.keyboard.press("Enter")  # msg-001: the model suggests "refund"
    current = wait_for_item_other_than(page, keys_drained=True, external_id="msg-001")

    # Three different keys pressed at once: each labels one item, in order.
    page.keyboard.press("2")
    page.keyboard.press("3")
    page.keyboard.press("1")
    page.wait_for_function("() => document.querySelectorAll('#recent-list li').length === 4")
    assert wait_for_item_other_than(page, keys_drained=True, external_id=current) == "msg-005"
    assert labels_of(annotator) == {
        "msg-001": "refund",
        "msg-002": "card_lost",
        "msg-003": "delivery",
        "msg-004": "refund",
    }
    assert not page.errors, page.errors


def test_undo_several_steps_and_change_a_recent_label(open_page, admin_user, annotator, refill_off):
    labels = [LabelSpec("refund"), LabelSpec("card_lost"), LabelSpec("delivery")]
    project = make_project(admin_user, annotator, labels)
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    current = shown(page)
    for key in ["1", "2", "3", "1"]:
        page.keyboard.press(key)
        current = wait_for_item_other_than(page, keys_drained=True, external_id=current)
    assert current == "msg-005"
    rows = page.locator("#recent-list li")
    assert [rows.nth(i).get_attribute("data-external-id") for i in range(4)] == [
        "msg-004",
        "msg-003",
        "msg-002",
        "msg-001",
    ]

    # Two undos: msg-004, then msg-003 come back; their labels are gone.
    page.keyboard.press("u")
    current = wait_for_item_other_than(page, keys_drained=True, external_id=current)
    assert current == "msg-004"
    page.keyboard.press("u")
    current = wait_for_item_other_than(page, keys_drained=True, external_id=current)
    assert current == "msg-003"
    assert labels_of(annotator) == {"msg-001": "refund", "msg-002": "card_lost"}
    assert rows.count() == 2

    # Change msg-001's label from the list.
    page.select_option('#recent-list li[data-external-id="msg-001"] select', "delivery")
    page.wait_for_function("() => /Changed #msg-001/.test(document.getElementById('status').textContent)")
    assert labels_of(annotator)["msg-001"] == "delivery"

    # An item that became final can no longer change: the list says so.
    Item.objects.filter(project=project, external_id="msg-002").update(status=ItemStatus.FINALIZED)
    page.select_option('#recent-list li[data-external-id="msg-002"] select', "refund")
    page.locator('#recent-list li[data-external-id="msg-002"].is-final').wait_for()
    assert page.locator('#recent-list li[data-external-id="msg-002"] select').is_disabled()
    assert labels_of(annotator)["msg-002"] == "card_lost"
    assert [error for error in page.errors if "409" not in error] == []  # the refused change


def test_phone_tap_near_the_bottom_brings_the_next_text_into_view(open_page, admin_user, annotator, refill_off):
    project = banking(admin_user, annotator)
    page = open_page(PHONE, has_touch=True, is_mobile=True)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "msg-001"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    last = page.locator(".label-btn").nth(76)
    last.scroll_into_view_if_needed()
    assert page.evaluate("document.getElementById('item-panel').getBoundingClientRect().top") < 0
    last.tap()
    assert wait_for_item_other_than(page, keys_drained=True, external_id="msg-001") == "msg-002"
    top = page.evaluate("document.getElementById('item-panel').getBoundingClientRect().top")
    assert 0 <= top < PHONE["height"]
    assert page.evaluate("document.activeElement.classList.contains('label-btn')") is False
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert labels_of(annotator) == {"msg-001": CATEGORIES[76]}
    assert not page.errors, page.errors
