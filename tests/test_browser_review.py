"""The reviewer's journey in headless Chromium against a live server: two annotators label through
the real services and disagree on some items, those items become review tasks, and a reviewer
resolves them with the keyboard only (one with a note). Then the database is checked, and
screenshots of the review page (desktop and phone width) go to the artefacts folder."""

from __future__ import annotations

import pytest

from annotation import services
from annotation.models import ItemStatus, LabelSource, ReviewStatus, ReviewTask, Role
from annotation.services.aggregation import project_aggregate
from annotation.services.review import review_resolve

pytest.register_assert_rewrite("tests.browser")
from tests.browser import DESKTOP, LABELS, PASSWORD, PHONE, log_in, queue_texts  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.django_db(transaction=True)

INSTRUCTIONS = (
    "Each text is a message a customer sent to support. Decide the one intent that best describes "
    "what the customer wants; write a note when the call is close."
)
# (text, maria's label, jonas's label): they agree on the first ten and split on the rest.
PLAN = [
    ("I was charged twice for the same hotel booking. Please give me back the second payment.", "refund", "refund"),
    ("Locked out of my account after three wrong PIN attempts. How do I reset it?", "account_access", "account_access"),
    ("Why did I pay a 2% fee when I topped up with my credit card?", "fees", "fees"),
    ("My wallet was stolen this morning, with my card in it. Please block it!", "card_lost", "card_lost"),
    ("How long does delivery take to Portugal?", "delivery", "delivery"),
    ("The exchange rate you applied on Saturday was worse than the one on your website.", "fees", "fees"),
    ("Forgot my password and the reset email never comes.", "account_access", "account_access"),
    ("Is there a monthly fee for the premium account?", "fees", "fees"),
    ("Quel temps fait-il à Lisbonne demain ?", "other", "other"),
    ("Refund for the concert tickets that were cancelled, please.", "refund", "refund"),
    (
        "Hi,\n\nI ordered a new debit card two weeks ago and it still hasn't arrived. The app says it was "
        "dispatched on the 3rd.\n\nCan you tell me where it is, or send another one?\n\nThanks,\nMarta",
        "card_lost",
        "delivery",
    ),
    ("I cancelled my gym membership but they still took money. Can I get it back through you?", "refund", "fees"),
    ("  The card came, but\n\tthe PIN letter did not.  ", "card_lost", "account_access"),
]
DISPUTED = {f"msg-{i + 1:03d}" for i, (_, a, b) in enumerate(PLAN) if a != b}


@pytest.fixture
def quiet_loop(settings):
    settings.QUORUM_REFILL_THRESHOLD = 0  # no scoring runs requested while the annotators label
    settings.QUORUM_AGGREGATION_DELAY_SECONDS = 3600  # aggregation runs only when the test calls it


@pytest.fixture
def people(make_user):
    return {
        "maria": make_user("maria", password=PASSWORD),
        "jonas": make_user("jonas", password=PASSWORD),
        "rita": make_user("rita", password=PASSWORD),
    }


def review_project(admin, people, plan=PLAN, name="Support inbox"):
    """A project where maria and jonas labelled every item of ``plan`` through the real services
    (two labels per item, no extra labels), so that their disagreements became review tasks."""
    project = services.project_create(
        user=admin,
        name=name,
        labels=LABELS,
        instructions=INSTRUCTIONS,
        embedding_dim=4,
        labels_per_item=2,
        max_labels_per_item=2,
    )
    services.membership_set(project=project, username="maria", role=Role.ANNOTATOR)
    services.membership_set(project=project, username="jonas", role=Role.ANNOTATOR)
    services.membership_set(project=project, username="rita", role=Role.REVIEWER)
    items = queue_texts(project, [text for text, _, _ in plan], lambda position: ("delivery", 0.58))
    by_external_id = {item.external_id: plan[i] for i, item in enumerate(items)}
    for column, username in ((1, "maria"), (2, "jonas")):
        user = people[username]
        for _ in plan:
            result = services.assignment_next(project=project, user=user)
            assert result.assignment is not None
            chosen = by_external_id[result.assignment.item.external_id][column]
            services.annotation_submit(assignment_id=result.assignment.pk, user=user, label=chosen, time_spent_ms=900)
    project_aggregate(project=project)  # annotator quality and the project's agreement figures
    return project


def shown(page) -> str:
    """External id of the task on screen once the page accepts input."""
    page.wait_for_selector('#reviewer[data-state="ready"][data-accepting="true"]')
    return page.get_attribute("#reviewer", "data-external-id")


def wait_for_task_other_than(page, external_id: str) -> str | None:
    """The next task's external id, or None when the page shows its empty state."""
    page.wait_for_function(
        """(previous) => {
            const root = document.getElementById("reviewer");
            if (root.dataset.state === "empty") return true;
            return root.dataset.state === "ready" && root.dataset.accepting === "true"
              && root.dataset.externalId && root.dataset.externalId !== previous;
        }""",
        arg=external_id,
    )
    if page.get_attribute("#reviewer", "data-state") == "empty":
        return None
    return page.get_attribute("#reviewer", "data-external-id")


def test_resolve_two_disagreements_with_the_keyboard(
    open_page, live_server, admin_user, people, quiet_loop, artifacts_dir
):
    project = review_project(admin_user, people)
    keys = {label.name: label.shortcut for label in project.labels.all()}
    tasks = ReviewTask.objects.filter(project=project)
    assert {task.item.external_id for task in tasks.select_related("item")} == DISPUTED
    assert tasks.count() == 3 and not tasks.exclude(status=ReviewStatus.OPEN).exists()

    page = open_page(DESKTOP)
    log_in(page, "rita", PASSWORD, next_path="/")
    link = page.get_by_role("link", name=f"Review {project.name}: 3 open tasks")
    link.wait_for()
    page.screenshot(path=str(artifacts_dir / "my-projects-reviewer.png"))
    link.click()
    page.wait_for_url(f"**/projects/{project.pk}/review")

    first = shown(page)
    assert first in DISPUTED
    text, maria_said, jonas_said = PLAN[int(first.split("-")[1]) - 1]
    assert page.locator("#item-text").inner_text() == text  # whitespace kept
    assert page.locator('[data-progress="open"]').inner_text() == "3"
    # the chip states the stored reason with the item's actual split
    assert page.locator('[data-review="reason"]').inner_text() == "No label holds a majority: a 1-1 split of 2 labels"
    votes = page.locator("#vote-list li").all_inner_texts()
    assert sorted(v.split(" · ")[0] for v in votes) == sorted([f"jonas — {jonas_said}", f"maria — {maria_said}"])
    assert all("DS accuracy" in v for v in votes), votes  # each annotator's quality, from the aggregation
    voted = sorted(b.get_attribute("data-label") for b in page.locator(".label-btn.is-voted").all())
    assert voted == sorted({maria_said, jonas_said})
    assert page.locator("#posterior li").count() >= 2
    page.locator('#agreement[aria-busy="false"]').wait_for()
    assert page.locator('[data-agreement="kappa"]').inner_text() not in ("", "–")
    assert "reviewed" in page.locator('[data-agreement="policy"]').inner_text()

    # Keyboard focus is visible: Tab from the text reaches the first label button, with an outline.
    page.locator("#item-text").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => ({label: document.activeElement.dataset.label, outline: getComputedStyle(document.activeElement).outlineStyle})"
    )
    assert focused == {"label": "refund", "outline": "solid"}
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "item-text"

    # Enter with nothing picked decides nothing; a label key only picks.
    page.keyboard.press("Enter")
    page.keyboard.press(keys[jonas_said])
    assert page.get_attribute("#reviewer", "data-picked") == jonas_said
    assert page.locator(f'.label-btn[data-label="{jonas_said}"]').get_attribute("aria-pressed") == "true"
    page.wait_for_timeout(300)  # let the pick's colour settle for the screenshot
    page.screenshot(path=str(artifacts_dir / "review-page.png"))
    # Change of mind: Escape clears the pick, the other annotator's label is picked instead.
    page.keyboard.press("Escape")
    assert page.get_attribute("#reviewer", "data-picked") == ""
    assert ReviewTask.objects.get(item__external_id=first).status == ReviewStatus.OPEN
    page.keyboard.press(keys[maria_said])
    page.keyboard.press("Enter")
    decided = {first: (maria_said, "")}
    second = wait_for_task_other_than(page, first)
    assert second in DISPUTED and second != first
    assert page.locator('[data-progress="resolved"]').inner_text() == "1"
    assert page.locator('[data-progress="open"]').inner_text() == "2"

    # The second one with a note: "n" goes to the note, typing there triggers no shortcut,
    # Ctrl+Enter resolves from the note.
    _, maria_said, jonas_said = PLAN[int(second.split("-")[1]) - 1]
    page.keyboard.press(keys[jonas_said])
    page.keyboard.press("n")
    assert page.evaluate("document.activeElement.id") == "review-note"
    note = "Both fit; 1 card, no refund. The customer's main ask is in the last line."
    page.keyboard.type(note)
    assert page.locator("#review-note").input_value() == note
    assert page.get_attribute("#reviewer", "data-picked") == jonas_said  # "1", "n", "o" in the note picked nothing
    page.screenshot(path=str(artifacts_dir / "review-page-note.png"))
    page.keyboard.press("Control+Enter")
    decided[second] = (jonas_said, note)
    third = wait_for_task_other_than(page, second)
    assert third in DISPUTED - set(decided)
    assert page.evaluate("document.activeElement.id") == "item-text"  # back from the note, keys work again
    assert page.locator("#review-note").input_value() == ""
    assert page.locator('[data-progress="open"]').inner_text() == "1"

    # Someone else decides the last one meanwhile: its task is gone, the page says so and goes on.
    review_resolve(
        review_id=ReviewTask.objects.get(item__external_id=third).pk, user=admin_user, label="other", note=""
    )
    page.keyboard.press("o")
    page.keyboard.press("Enter")
    page.wait_for_selector('#reviewer[data-state="empty"]')
    assert "No disagreements waiting" in page.locator("#empty-state").inner_text()
    assert "was not saved" in page.locator("#status").inner_text()
    assert page.locator('[data-progress="open"]').inner_text() == "0"
    page.screenshot(path=str(artifacts_dir / "review-empty.png"))
    # The browser logs the refused request (409); nothing else went wrong.
    assert [error for error in page.errors if "409 (Conflict)" not in error] == [], page.errors

    # --- what the database says ---
    for external_id, (label, note_text) in decided.items():
        task = ReviewTask.objects.select_related("item", "decision", "resolved_by").get(item__external_id=external_id)
        assert task.status == ReviewStatus.RESOLVED
        assert task.decision.name == label
        assert task.note == note_text
        assert task.resolved_by.username == "rita" and task.resolved_at is not None
        item = task.item
        assert item.status == ItemStatus.FINALIZED
        assert item.final_source == LabelSource.REVIEW
        assert item.final_label_id == task.decision_id
    assert ReviewTask.objects.get(item__external_id=third).resolved_by == admin_user
    assert not ReviewTask.objects.filter(project=project, status=ReviewStatus.OPEN).exists()


def test_phone_width_tap_to_pick_and_confirm(open_page, live_server, admin_user, people, quiet_loop, artifacts_dir):
    project = review_project(admin_user, people)
    page = open_page(PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    log_in(page, "rita", PASSWORD, next_path=f"/projects/{project.pk}/review")
    first = shown(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing wider than the screen
    page.screenshot(path=str(artifacts_dir / "review-page-phone.png"))

    # A tap picks; the confirm button resolves.
    page.locator('.label-btn[data-label="refund"]').tap()
    assert page.get_attribute("#reviewer", "data-picked") == "refund"
    page.locator("#confirm").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts_dir / "review-page-phone-full.png"), full_page=True)
    page.locator("#confirm").tap()
    assert wait_for_task_other_than(page, first) != first
    assert not page.errors, page.errors
    task = ReviewTask.objects.select_related("decision", "item").get(item__external_id=first)
    assert task.decision.name == "refund" and task.item.final_source == LabelSource.REVIEW


def test_annotators_cannot_open_the_review_page(open_page, live_server, admin_user, people, quiet_loop):
    project = services.project_create(user=admin_user, name="Private", labels=LABELS[:2], embedding_dim=4)
    services.membership_set(project=project, username="maria", role=Role.ANNOTATOR)
    page = open_page(DESKTOP)
    log_in(page, "maria", PASSWORD, next_path="/")
    assert page.get_by_role("link", name="Start labelling Private").is_visible()
    assert page.locator(f'a[href="/projects/{project.pk}/review"]').count() == 0
    assert page.goto(f"/projects/{project.pk}/review").status == 403
