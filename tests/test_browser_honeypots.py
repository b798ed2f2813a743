"""Quality control in headless Chromium (issue 13, point 4): a new annotator gets honeypots first
(onboarding), answers them wrong, falls under the project's minimum accuracy and is paused (the
labelling page says why); an admin reinstates them on the dashboard; they label again."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from annotation import services
from annotation.ingest_records import text_digest
from annotation.models import Annotation, Item, ItemStatus, LabelClass, LabelSource, Membership, Role

pytest.register_assert_rewrite("tests.browser")
from tests.browser import DESKTOP, LABELS, PASSWORD, log_in, queue_texts, shown, wait_for_item_other_than  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.django_db(transaction=True)

HONEYPOTS = [
    "I paid for a flight that was cancelled, I want my money back.",
    "Please refund the double charge from yesterday.",
    "The shop never sent my order, can you return the payment?",
]
TEXTS = [
    "My card has not arrived yet.",
    "How do I reset my PIN?",
    "What is the fee for foreign payments?",
    "Where is my parcel?",
]


@pytest.fixture
def refill_off(settings):
    settings.QUORUM_REFILL_THRESHOLD = 0


def quality_project(admin):
    project = services.project_create(
        user=admin,
        name="Checked inbox",
        labels=LABELS,
        embedding_dim=4,
        labels_per_item=2,
        onboarding_honeypots=2,
        min_honeypot_accuracy=0.6,
        min_honeypots=2,
    )
    refund = LabelClass.objects.get(project=project, name="refund")
    now = timezone.now()
    Item.objects.bulk_create(
        Item(
            project=project,
            external_id=f"msg-{100 + i}",  # nothing in the id tells a honeypot apart
            text=text,
            text_hash=text_digest(text),
            status=ItemStatus.FINALIZED,
            final_label=refund,
            final_confidence=1.0,
            final_source=LabelSource.GOLD,
            finalized_at=now,
            honeypot=True,
        )
        for i, text in enumerate(HONEYPOTS)
    )
    get_user_model().objects.get_or_create(username="colleague")
    services.membership_set(project=project, username="colleague", role=Role.ANNOTATOR)
    queue_texts(project, TEXTS, lambda position: ("other", 0.5))
    return project


def test_onboarding_pause_and_reinstatement(open_page, live_server, admin_user, make_user, refill_off, artifacts_dir):
    admin_user.set_password(PASSWORD)
    admin_user.save()
    project = quality_project(admin_user)
    annotator = make_user("newbie", password=PASSWORD)
    services.membership_set(project=project, username="newbie", role=Role.ANNOTATOR)
    honeypots = set(Item.objects.filter(project=project, honeypot=True).values_list("external_id", flat=True))

    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")

    # Onboarding: the first two items are honeypots, shown like any other item. Both answered wrong
    # ("fees", key 5; their label is refund).
    first = shown(page)
    assert first in honeypots
    assert "honeypot" not in page.content().lower()
    page.keyboard.press("5")
    second = wait_for_item_other_than(page, first)
    assert second in honeypots
    page.keyboard.press("5")

    # 0 of 2 under 60 %: paused, and the page says why instead of showing an item.
    page.wait_for_selector('#labeller[data-state="empty"][data-paused="true"]', timeout=20_000)
    empty = page.locator("#empty-state")
    assert "You are paused on this project" in empty.inner_text()
    assert "0 of 2" in page.locator("[data-empty-paused]").inner_text()
    assert page.locator("[data-empty-idle]").is_hidden()
    page.screenshot(path=str(artifacts_dir / "labelling-paused.png"))
    membership = Membership.objects.get(project=project, user=annotator)
    assert membership.paused_at is not None

    # The admin sees it on the dashboard's annotator table and reinstates.
    admin_page = open_page(DESKTOP)
    log_in(admin_page, admin_user.username, PASSWORD, next_path=f"/projects/{project.pk}/dashboard")
    row = admin_page.locator('tr[data-annotator="newbie"]')
    assert "paused" in row.locator('[data-testid="annotator-state"]').inner_text()
    assert "0.000 [0.00–0.66] (0/2)" in row.locator('[data-testid="honeypot-accuracy"]').inner_text()
    admin_page.screenshot(path=str(artifacts_dir / "dashboard-paused-annotator.png"), full_page=True)
    with admin_page.expect_navigation():
        row.get_by_role("button", name="Reinstate").click()
    assert "newbie is reinstated" in admin_page.content()
    assert "active" in admin_page.locator('tr[data-annotator="newbie"] [data-testid="annotator-state"]').inner_text()

    # The annotator continues: "Check again" brings the next item (an ordinary one now).
    page.locator('[data-action="check"]').click()
    third = shown(page)
    assert third not in honeypots and page.get_attribute("#labeller", "data-paused") == "false"
    assert "No items to label right now" in page.locator("#empty-heading").inner_text()  # heading restored
    page.keyboard.press("2")
    wait_for_item_other_than(page, third)
    assert Annotation.objects.filter(user=annotator, item__external_id=third, label__name="card_lost").exists()
    assert Membership.objects.get(project=project, user=annotator).paused_at is None
    assert not page.errors, page.errors
    assert not admin_page.errors, admin_page.errors
