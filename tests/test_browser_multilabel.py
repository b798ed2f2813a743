"""Multi-label projects in headless Chromium against a live server: an annotator turns tags on and off
with their keys and saves the set with Enter, answers "none of these", takes the model's tags and
undoes; a project without empty sets refuses one in the page; a reviewer decides disputed tag sets
with the keyboard. The database is checked after each journey; screenshots go to the artefacts folder."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from annotation import services
from annotation.models import (
    Annotation,
    ItemStatus,
    LabelClass,
    LabelSource,
    QueueEntry,
    ReviewStatus,
    ReviewTask,
    Role,
)

pytest.register_assert_rewrite("tests.browser")
from tests.browser import DESKTOP, LABELS, PASSWORD, log_in, queue_texts, shown, wait_for_item_other_than  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.django_db(transaction=True)

INSTRUCTIONS = "Each text is a message a customer sent to support. Turn on every topic it raises."
TEXTS = [
    "I was charged a fee for a delivery that never came.",
    "Thanks, all good now!",
    "My new card still hasn't arrived and the tracking shows nothing; I also can't log in.",
    "Please give me back the second payment.",
    "How long does delivery take to Portugal?",
]


@pytest.fixture
def quiet_loop(settings):
    settings.QUORUM_REFILL_THRESHOLD = 0  # no scoring runs requested while the tests label
    settings.QUORUM_AGGREGATION_DELAY_SECONDS = 3600


@pytest.fixture
def annotator(make_user):
    return make_user("maria", password=PASSWORD)


def tag_ids(project, names) -> list[int]:
    found = dict(LabelClass.objects.filter(project=project).values_list("name", "pk"))
    return sorted(found[name] for name in names)


def tagging_project(admin, annotator, *, allow_empty_tags=True, texts=TEXTS, **settings):
    """A multi-label project whose queue holds ``texts`` in order; the model suggests delivery and
    fees for the third item (card_lost close behind)."""
    project = services.project_create(
        user=admin,
        name="Support topics",
        labels=LABELS,
        instructions=INSTRUCTIONS,
        embedding_dim=4,
        task_type="multi_label",
        allow_empty_tags=allow_empty_tags,
        **{"labels_per_item": 2, **settings},
    )
    services.membership_set(project=project, username=annotator.username, role=Role.ANNOTATOR)
    # A second annotator: the items stay open (changeable, undoable) after the first answer.
    get_user_model().objects.get_or_create(username="colleague")
    services.membership_set(project=project, username="colleague", role=Role.ANNOTATOR)
    items = queue_texts(project, texts, lambda position: ("refund", 0.5))
    ids = dict(LabelClass.objects.filter(project=project).values_list("name", "pk"))
    QueueEntry.objects.filter(project=project).update(suggested_label=None, suggested_confidence=None)
    if len(items) > 2:
        p = {"refund": 0.12, "card_lost": 0.3, "delivery": 0.91, "account_access": 0.05, "fees": 0.64, "other": 0.01}
        QueueEntry.objects.filter(item=items[2]).update(
            suggested_tags={
                "tags": tag_ids(project, ["delivery", "fees"]),
                "p": {str(ids[k]): v for k, v in p.items()},
            },
            suggested_confidence=0.64,
        )
    return project


def picked(page) -> str:
    return page.get_attribute("#labeller", "data-picked")


def pressed(page, name: str) -> str:
    return page.locator(f'.label-btn[data-label="{name}"]').get_attribute("aria-pressed")


def tags_of(annotator, external_id) -> list[int] | None:
    return Annotation.objects.get(user=annotator, item__external_id=external_id).tags


def test_tag_sets_with_the_keyboard(open_page, live_server, admin_user, annotator, quiet_loop, artifacts_dir):
    project = tagging_project(admin_user, annotator)
    keys = {label.name: label.shortcut for label in project.labels.all()}
    assert keys == {"refund": "1", "card_lost": "2", "delivery": "3", "account_access": "4", "fees": "5", "other": "o"}
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "msg-001"
    assert page.locator("#none-tags").is_visible() and page.locator("#save-tags").is_visible()
    assert all(pressed(page, name) == "false" for name in keys)

    # Three tags on, one of them off again: the keys toggle, nothing is saved before Enter.
    for key in ("1", "3", "5"):
        page.keyboard.press(key)
    assert picked(page) == "refund|delivery|fees"
    assert pressed(page, "refund") == "true"
    page.keyboard.press("1")
    assert picked(page) == "delivery|fees"
    assert pressed(page, "refund") == "false" and pressed(page, "delivery") == pressed(page, "fees") == "true"
    assert page.locator("#save-tags").inner_text().startswith("Save 2 tags")
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts_dir / "multilabel-labelling.png"))
    assert not Annotation.objects.filter(user=annotator).exists()
    page.keyboard.press("Enter")
    assert wait_for_item_other_than(page, "msg-001") == "msg-002"
    assert picked(page) == ""  # the next item starts with every tag off
    annotation = Annotation.objects.get(user=annotator, item__external_id="msg-001")
    assert annotation.tags == tag_ids(project, ["delivery", "fees"]) and annotation.label_id is None

    # Enter with no tag on saves nothing and says why; "-" is "none of these", a tag key turns it off.
    page.keyboard.press("Enter")
    status = page.locator("#status")
    status.wait_for(state="visible")
    assert "No tag is on" in status.inner_text() and "None of these" in status.inner_text()
    assert page.get_attribute("#labeller", "data-external-id") == "msg-002"
    assert Annotation.objects.filter(user=annotator).count() == 1
    page.keyboard.press("-")
    assert page.locator("#none-tags").get_attribute("aria-pressed") == "true"
    page.keyboard.press("2")
    assert page.locator("#none-tags").get_attribute("aria-pressed") == "false" and picked(page) == "card_lost"
    page.keyboard.press("-")
    assert page.locator("#none-tags").get_attribute("aria-pressed") == "true" and picked(page) == ""
    page.keyboard.press("Enter")
    assert wait_for_item_other_than(page, "msg-002") == "msg-003"
    assert tags_of(annotator, "msg-002") == []

    # Suggestions on: the model's tags stand out with their probability; none is turned on by it.
    page.locator("#suggest-toggle").check()
    page.locator("#item-text").focus()
    suggestion = page.locator("#suggestion")
    suggestion.get_by_text("Model suggests").wait_for()
    assert suggestion.inner_text().startswith("Model suggests delivery, fees (64% sure)")
    suggested = sorted(b.get_attribute("data-label") for b in page.locator(".label-btn.is-suggested").all())
    assert suggested == ["delivery", "fees"]
    badge = page.locator('.label-btn[data-label="delivery"] [data-p]')
    assert badge.is_visible() and badge.inner_text() == "model 91%"
    assert page.locator('.label-btn[data-label="card_lost"] [data-p]').inner_text() == "model 30%"
    assert page.locator('.label-btn[data-label="refund"] [data-p]').is_hidden()  # 12%: not shown
    assert picked(page) == ""
    page.screenshot(path=str(artifacts_dir / "multilabel-suggestion.png"))
    # Shift+Enter takes the model's tags (and saves nothing); one more tag, then Enter saves.
    page.keyboard.press("Shift+Enter")
    assert picked(page) == "delivery|fees"
    assert not Annotation.objects.filter(user=annotator, item__external_id="msg-003").exists()
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    assert wait_for_item_other_than(page, "msg-003") == "msg-004"
    assert tags_of(annotator, "msg-003") == tag_ids(project, ["delivery", "account_access", "fees"])

    # Undo brings the item back with its tags on: one off, Enter saves the change.
    page.keyboard.press("u")
    assert wait_for_item_other_than(page, "msg-004") == "msg-003"
    assert picked(page) == "delivery|account_access|fees"
    assert "Undone" in page.locator("#status").inner_text()
    assert not Annotation.objects.filter(user=annotator, item__external_id="msg-003").exists()
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    assert wait_for_item_other_than(page, "msg-003") == "msg-004"
    assert tags_of(annotator, "msg-003") == tag_ids(project, ["delivery", "fees"])

    # The recently labelled list changes a saved set.
    row = page.locator('.recent-row[data-external-id="msg-001"]')
    row.locator("summary").click()
    row.get_by_label("refund").check()
    row.get_by_role("button", name="Change").click()
    page.locator("#status").get_by_text("Changed #msg-001").wait_for()
    assert tags_of(annotator, "msg-001") == tag_ids(project, ["refund", "delivery", "fees"])
    assert not page.errors, page.errors


def test_no_empty_set_where_the_project_needs_a_tag(open_page, live_server, admin_user, annotator, quiet_loop):
    project = tagging_project(admin_user, annotator, allow_empty_tags=False, texts=TEXTS[:2])
    page = open_page(DESKTOP)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "msg-001"
    assert page.locator("#none-tags").count() == 0
    page.keyboard.press("-")
    status = page.locator("#status")
    status.wait_for(state="visible")
    assert "needs at least one tag" in status.inner_text()
    page.locator('[data-action="dismiss"]').click()
    page.locator("#item-text").focus()
    page.keyboard.press("Enter")
    status.wait_for(state="visible")
    assert "needs at least one tag" in status.inner_text()
    assert page.get_attribute("#labeller", "data-external-id") == "msg-001"
    assert not Annotation.objects.filter(user=annotator).exists()
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    assert wait_for_item_other_than(page, "msg-001") == "msg-002"
    assert tags_of(annotator, "msg-001") == tag_ids(project, ["refund"])
    assert not page.errors, page.errors


# --- review ----------------------------------------------------------------------------------

# (text, maria's tags, jonas's tags): they split on fees for the first, on everything for the second.
PLAN = [
    ("I was charged a fee for a refund I asked for.", ["refund", "fees"], ["refund"]),
    ("Where is my card? It was posted a month ago.", ["delivery"], ["card_lost"]),
    ("Please give me back the second payment.", ["refund"], ["refund"]),
]


def review_project(admin, people):
    """maria and jonas tagged every item of ``PLAN`` through the real services (two answers per item,
    no third), so that the split tags became review tasks."""
    project = services.project_create(
        user=admin,
        name="Support topics",
        labels=LABELS,
        instructions=INSTRUCTIONS,
        embedding_dim=4,
        task_type="multi_label",
        labels_per_item=2,
        max_labels_per_item=2,
    )
    for name, role in (("maria", Role.ANNOTATOR), ("jonas", Role.ANNOTATOR), ("rita", Role.REVIEWER)):
        services.membership_set(project=project, username=name, role=role)
    items = queue_texts(project, [text for text, _, _ in PLAN], lambda position: ("refund", 0.5))
    by_external_id = {item.external_id: PLAN[i] for i, item in enumerate(items)}
    for column, username in ((1, "maria"), (2, "jonas")):
        for _ in PLAN:
            result = services.assignment_next(project=project, user=people[username])
            chosen = by_external_id[result.assignment.item.external_id][column]
            services.annotation_submit(
                assignment_id=result.assignment.pk, user=people[username], labels=chosen, time_spent_ms=900
            )
    return project


def test_reviewer_decides_disputed_tag_sets_with_the_keyboard(
    open_page, live_server, admin_user, make_user, quiet_loop, artifacts_dir
):
    people = {name: make_user(name, password=PASSWORD) for name in ("maria", "jonas", "rita")}
    project = review_project(admin_user, people)
    tasks = ReviewTask.objects.filter(project=project).select_related("item")
    assert {task.item.external_id for task in tasks} == {"msg-001", "msg-002"}
    assert tasks.get(item__external_id="msg-001").disputed_tags == tag_ids(project, ["fees"])

    page = open_page(DESKTOP)
    log_in(page, "rita", PASSWORD, next_path=f"/projects/{project.pk}/review")
    decided = {}
    current = None
    for _ in range(2):
        page.wait_for_function(
            """(previous) => {
                const root = document.getElementById("reviewer");
                return root.dataset.state === "ready" && root.dataset.accepting === "true"
                  && root.dataset.externalId && root.dataset.externalId !== previous;
            }""",
            arg=current,
        )
        current = page.get_attribute("#reviewer", "data-external-id")
        votes = page.locator("#vote-list li").all_inner_texts()
        if current == "msg-001":
            assert sorted(v.split(" · ")[0] for v in votes) == ["jonas — refund", "maria — refund, fees"]
            # The disputed tag stands out: in the estimate, on its button, in words.
            assert page.locator("#disputed").inner_text() == "Disputed: fees"
            disputed = [b.get_attribute("data-label") for b in page.locator(".label-btn.is-disputed").all()]
            assert disputed == ["fees"]
            rows = page.locator("#posterior li").all_inner_texts()
            assert [row.split("\n")[0] for row in rows] == ["refund", "fees"], rows
            assert page.locator('#posterior li[data-label="fees"]').get_attribute("class").count("is-disputed") == 1
            assert page.locator('.label-btn[data-label="fees"] [data-votes]').inner_text() == "1 of 2"
            assert page.locator('.label-btn[data-label="fees"] [data-p]').inner_text() == "50% · disputed"
            # Enter with no tag on decides nothing; keys toggle; Enter resolves with the set.
            page.keyboard.press("Enter")
            assert page.get_attribute("#reviewer", "data-picked") == ""
            page.keyboard.press("1")
            page.keyboard.press("5")
            assert page.get_attribute("#reviewer", "data-picked") == "refund|fees"
            page.wait_for_timeout(300)  # let the colours settle for the screenshot
            page.screenshot(path=str(artifacts_dir / "multilabel-review.png"))
            page.keyboard.press("5")
            assert page.get_attribute("#reviewer", "data-picked") == "refund"
            assert page.locator('.label-btn[data-label="fees"]').get_attribute("aria-pressed") == "false"
            assert page.locator("#confirm").inner_text().startswith("Resolve as refund")
            assert ReviewTask.objects.get(item__external_id=current).status == ReviewStatus.OPEN
            page.keyboard.press("Enter")
            decided[current] = ["refund"]
        else:
            assert current == "msg-002"
            assert sorted(v.split(" · ")[0] for v in votes) == ["jonas — card_lost", "maria — delivery"]
            assert "card_lost" in page.locator("#disputed").inner_text()
            assert "delivery" in page.locator("#disputed").inner_text()
            # Two tags on, Escape turns them off, "none of these" is the decision.
            page.keyboard.press("2")
            page.keyboard.press("3")
            assert page.get_attribute("#reviewer", "data-picked") == "card_lost|delivery"
            page.keyboard.press("Escape")
            assert page.get_attribute("#reviewer", "data-picked") == ""
            page.keyboard.press("-")
            assert page.locator("#none-tags").get_attribute("aria-pressed") == "true"
            assert page.locator("#confirm").inner_text().startswith("Resolve as none of these")
            page.keyboard.press("Enter")
            decided[current] = []
    page.wait_for_selector('#reviewer[data-state="empty"]')
    assert page.locator('[data-progress="resolved"]').inner_text() == "2"
    assert not page.errors, page.errors

    for external_id, names in decided.items():
        task = ReviewTask.objects.select_related("item", "resolved_by").get(item__external_id=external_id)
        assert task.status == ReviewStatus.RESOLVED and task.resolved_by.username == "rita"
        assert task.decision_id is None and task.decision_tags == tag_ids(project, names)
        item = task.item
        assert item.status == ItemStatus.FINALIZED and item.final_source == LabelSource.REVIEW
        assert item.final_tags == tag_ids(project, names) and item.final_label_id is None
        assert item.final_confidence == 1.0
    assert sorted(decided) == ["msg-001", "msg-002"]
