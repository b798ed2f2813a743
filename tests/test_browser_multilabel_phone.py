"""Multi-label pages on a 390 px phone in headless Chromium. GoEmotions' 28 tags, long names and all,
fit the labelling page in two columns; taps turn tags on without moving a button, the save button
saves and the next text comes back into view with nothing left focused; the review page decides a
disputed set by taps with a confirm button naming several tags; the dashboard and the models page of
a multi-label project with a trained model are no wider than the screen. Screenshots go to the
artefacts folder."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from annotation import services
from annotation.models import Annotation, LabelClass, QueueEntry, ReviewStatus, ReviewTask, Role
from annotation.services.aggregation import project_aggregate
from annotation.services.projects import LabelSpec

pytest.register_assert_rewrite("tests.browser")
from tests.browser import PASSWORD, PHONE, log_in, queue_texts, shown, wait_for_item_other_than  # noqa: E402

from .pools import cluster_pool  # noqa: E402
from .test_multilabel_training import finalise, run_job  # noqa: E402

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.django_db(transaction=True)

# The 28 GoEmotions tags in the dataset's order: "disappointment" and "embarrassment" are the longest.
EMOTIONS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
    "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
    "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
    "remorse", "sadness", "surprise", "neutral",
]  # fmt: skip
COMMENTS = [
    "I can't believe they cancelled the show after that cliffhanger. Honestly so let down.",
    "Tripped on stage in front of the whole school. I wanted the floor to swallow me.",
    "Thank you so much, this made my day!",
]
PHONE_PAGE = {"is_mobile": True, "has_touch": True, "device_scale_factor": 2}

PAGE_WIDTH = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
# The elements reaching past the screen's right edge (outside a region that scrolls sideways on
# purpose), named for the failure message.
TOO_WIDE = """(width) => Array.from(document.querySelectorAll("body *"))
    .filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > width + 0.5
        && !(e.parentElement && e.parentElement.closest(".table-wrap, .scroll-x")))
    .map((e) => e.tagName.toLowerCase() + "." + (e.getAttribute("class") || "") + " → " + Math.round(e.getBoundingClientRect().right))"""
# Tag names taller than one line: a word broken in the middle ("disappointme-nt") or a tick pushed
# onto a line of its own.
BROKEN_NAMES = """() => Array.from(document.querySelectorAll(".label-btn .label-name"))
    .filter((name) => name.getBoundingClientRect().height > 1.5 * parseFloat(getComputedStyle(name).lineHeight))
    .map((name) => name.textContent)"""
# Where each tag button is: turning a tag on must not move or resize any of them.
BUTTON_BOXES = """() => Array.from(document.querySelectorAll(".label-btn")).map((b) => {
    const r = b.getBoundingClientRect();
    return [b.dataset.label, Math.round(r.left), Math.round(r.top + window.scrollY), Math.round(r.width), Math.round(r.height)];
})"""
# Key hints squeezed narrower than their key's name (a long confirm button pressing its "Enter").
CLIPPED_KEYS = """() => Array.from(document.querySelectorAll("kbd"))
    .filter((key) => key.scrollWidth > key.clientWidth + 1).map((key) => key.parentElement.id + " " + key.textContent)"""
# Where an element is on the page (not in the viewport, which a tap may scroll).
BOX_ON_PAGE = (
    """(e) => { const r = e.getBoundingClientRect(); return [r.left, r.top + window.scrollY, r.width, r.height]; }"""
)
FOCUS_ON_A_BUTTON = "document.activeElement.closest('button') !== null"


def assert_fits_the_phone(page) -> None:
    """Nothing on the page is wider than the phone's screen: no sideways scrolling of the page."""
    wide = page.evaluate(TOO_WIDE, PHONE["width"])
    assert page.evaluate(PAGE_WIDTH) <= PHONE["width"], wide[:12]
    assert wide == []
    assert page.evaluate(CLIPPED_KEYS) == []


def assert_text_in_view(page) -> None:
    box = page.locator("#item-text").bounding_box()
    assert box is not None and 0 <= box["y"] < PHONE["height"] - 40, box


def tag_ids(project, names) -> list[int]:
    return sorted(LabelClass.objects.filter(project=project, name__in=names).values_list("pk", flat=True))


@pytest.fixture
def quiet_loop(settings):
    settings.QUORUM_REFILL_THRESHOLD = 0  # no scoring runs requested while the tests label
    settings.QUORUM_AGGREGATION_DELAY_SECONDS = 3600


def emotions_project(admin, people, **settings):
    """A GoEmotions-like multi-label project (28 tags, two answers per item) with ``people``
    (username: role) as members."""
    project = services.project_create(
        user=admin,
        name="Reddit emotions",
        labels=[LabelSpec(name) for name in EMOTIONS],
        instructions="Turn on every emotion the comment expresses; neutral when it expresses none.",
        embedding_dim=4,
        task_type="multi_label",
        **{"labels_per_item": 2, **settings},
    )
    for username, role in people.items():
        get_user_model().objects.get_or_create(username=username)
        services.membership_set(project=project, username=username, role=role)
    return project


def test_tapping_tags_and_saving_on_a_phone(open_page, admin_user, make_user, quiet_loop, artifacts_dir):
    annotator = make_user("maria", password=PASSWORD)
    # A colleague: the items stay open after maria's answer.
    project = emotions_project(admin_user, {"maria": Role.ANNOTATOR, "colleague": Role.ANNOTATOR})
    items = queue_texts(project, COMMENTS, lambda position: ("neutral", 0.5))
    ids = dict(LabelClass.objects.filter(project=project).values_list("name", "pk"))
    p = {"embarrassment": 0.91, "nervousness": 0.64, "disappointment": 0.3, "amusement": 0.05}
    QueueEntry.objects.filter(item=items[1]).update(
        suggested_tags={
            "tags": tag_ids(project, ["embarrassment", "nervousness"]),
            "p": {str(ids[k]): v for k, v in p.items()},
        },
        suggested_confidence=0.64,
    )
    page = open_page(PHONE, **PHONE_PAGE)
    log_in(page, annotator.username, PASSWORD, next_path=f"/projects/{project.pk}/label")
    assert shown(page) == "msg-001"
    assert_fits_the_phone(page)
    assert page.evaluate(BROKEN_NAMES) == []
    page.screenshot(path=str(artifacts_dir / "multilabel-labelling-phone.png"), full_page=True)

    # Taps turn tags on and off again; no button moves, however long the name it ticks.
    buttons = page.evaluate(BUTTON_BOXES)
    save = page.locator("#save-tags")
    save_box = save.evaluate(BOX_ON_PAGE)
    for name in ("disappointment", "embarrassment", "sadness", "embarrassment"):
        page.locator(f'.label-btn[data-label="{name}"]').tap()
    assert page.get_attribute("#labeller", "data-picked") == "disappointment|sadness"
    assert page.locator('.label-btn[aria-pressed="true"]').count() == 2
    assert page.evaluate(BROKEN_NAMES) == []
    assert page.evaluate(BUTTON_BOXES) == buttons
    # "Save 2 tags" stays where "Save tags" was.
    assert save.inner_text().startswith("Save 2 tags") and save.evaluate(BOX_ON_PAGE) == save_box
    assert_fits_the_phone(page)
    assert not Annotation.objects.filter(user=annotator).exists()

    # The save button sits below 28 tags, the text far above: the tap saves and brings the next
    # text into view, with no tag on and no button keeping the focus.
    save.scroll_into_view_if_needed()
    assert page.evaluate("document.getElementById('item-panel').getBoundingClientRect().bottom") < 0
    page.screenshot(path=str(artifacts_dir / "multilabel-labelling-phone-save.png"))
    save.tap()
    assert wait_for_item_other_than(page, "msg-001") == "msg-002"
    assert_text_in_view(page)
    assert page.get_attribute("#labeller", "data-picked") == ""
    assert page.locator('.label-btn[aria-pressed="true"], .label-btn.is-chosen').count() == 0
    assert not page.evaluate(FOCUS_ON_A_BUTTON)
    assert Annotation.objects.get(user=annotator, item__external_id="msg-001").tags == tag_ids(
        project, ["disappointment", "sadness"]
    )

    # The model's tags with their probabilities fit too; a tap takes them, another saves them.
    page.locator("#suggest-toggle").tap()
    page.locator("#suggestion").get_by_text("Model suggests").wait_for()
    assert page.locator('.label-btn[data-label="embarrassment"] [data-p]').inner_text() == "model 91%"
    assert_fits_the_phone(page)
    assert page.evaluate(BROKEN_NAMES) == []
    page.screenshot(path=str(artifacts_dir / "multilabel-labelling-phone-suggestion.png"))
    page.locator('[data-action="use-suggestion"]').tap()
    assert page.get_attribute("#labeller", "data-picked") == "embarrassment|nervousness"
    assert page.evaluate(BROKEN_NAMES) == []
    assert_fits_the_phone(page)
    save.scroll_into_view_if_needed()
    save.tap()
    assert wait_for_item_other_than(page, "msg-002") == "msg-003"
    assert_text_in_view(page)
    assert not page.evaluate(FOCUS_ON_A_BUTTON)
    assert Annotation.objects.get(user=annotator, item__external_id="msg-002").tags == tag_ids(
        project, ["embarrassment", "nervousness"]
    )
    assert not page.errors, page.errors


# --- review ------------------------------------------------------------------------------------

# (text, maria's tags, jonas's tags): they split on every tag of both items.
SPLIT = [
    (COMMENTS[0], ["disappointment", "sadness"], ["annoyance"]),
    (COMMENTS[1], ["embarrassment"], ["embarrassment", "nervousness", "amusement"]),
]


def review_shown(page, other_than: str | None = None) -> str:
    """External id of the review task on screen (one other than ``other_than``) once the page accepts input."""
    page.wait_for_function(
        """(previous) => {
            const root = document.getElementById("reviewer");
            return root.dataset.state === "ready" && root.dataset.accepting === "true"
              && root.dataset.externalId && root.dataset.externalId !== previous;
        }""",
        arg=other_than,
    )
    return page.get_attribute("#reviewer", "data-external-id")


def test_deciding_a_disputed_tag_set_on_a_phone(open_page, admin_user, make_user, quiet_loop, artifacts_dir):
    people = {name: make_user(name, password=PASSWORD) for name in ("maria", "jonas", "rita")}
    project = emotions_project(
        admin_user,
        {"maria": Role.ANNOTATOR, "jonas": Role.ANNOTATOR, "rita": Role.REVIEWER},
        max_labels_per_item=2,
    )
    items = queue_texts(project, [text for text, _, _ in SPLIT], lambda position: ("neutral", 0.5))
    plan = {item.external_id: SPLIT[i] for i, item in enumerate(items)}
    for column, username in ((1, "maria"), (2, "jonas")):  # through the services: two answers an item
        for _ in SPLIT:
            result = services.assignment_next(project=project, user=people[username])
            services.annotation_submit(
                assignment_id=result.assignment.pk,
                user=people[username],
                labels=plan[result.assignment.item.external_id][column],
                time_spent_ms=900,
            )
    assert ReviewTask.objects.filter(project=project, status=ReviewStatus.OPEN).count() == 2

    page = open_page(PHONE, **PHONE_PAGE)
    log_in(page, "rita", PASSWORD, next_path=f"/projects/{project.pk}/review")
    first = review_shown(page)
    assert page.locator("#disputed").is_visible()
    assert_fits_the_phone(page)
    assert page.evaluate(BROKEN_NAMES) == []
    page.screenshot(path=str(artifacts_dir / "multilabel-review-phone.png"), full_page=True)

    # maria's set, by taps: the confirm button names both tags and still fits the screen.
    names = plan[first][1]
    buttons = page.evaluate(BUTTON_BOXES)
    for name in names:
        page.locator(f'.label-btn[data-label="{name}"]').tap()
    assert page.get_attribute("#reviewer", "data-picked") == "|".join(names)
    confirm = page.locator("#confirm")
    assert confirm.inner_text().startswith("Resolve as " + ", ".join(names))
    assert page.evaluate(BROKEN_NAMES) == []
    assert page.evaluate(BUTTON_BOXES) == buttons
    assert_fits_the_phone(page)
    confirm.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "multilabel-review-phone-confirm.png"))
    confirm.tap()
    assert review_shown(page, other_than=first) != first
    assert_text_in_view(page)
    assert page.get_attribute("#reviewer", "data-picked") == ""
    assert page.locator('.label-btn[aria-pressed="true"], .label-btn.is-chosen').count() == 0
    assert not page.evaluate(FOCUS_ON_A_BUTTON)
    assert_fits_the_phone(page)
    task = ReviewTask.objects.get(item__external_id=first)
    assert task.status == ReviewStatus.RESOLVED and task.decision_tags == tag_ids(project, names)
    assert not page.errors, page.errors


# --- dashboard and models page -------------------------------------------------------------


@pytest.fixture
def trained_project(settings, tmp_path, make_project, make_user, recording_supply):
    """A multi-label project whose model was trained on three long-named tags (separable clusters),
    with GoEmotions' other 25 tags added afterwards and two annotators' tag sets aggregated (the
    per-tag kappa line and the agreement heatmap)."""
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    trained = ["disappointment", "embarrassment", "nervousness"]
    project = make_project(
        "Reddit emotions",
        labels=trained,
        embedding_dim=8,
        batch_size=12,
        retrain_after=30,
        task_type="multi_label",
        acquisition_strategy="margin",
    )
    cluster_pool(project, per_cluster=80, dim=8, scale=0.5)
    finalise(project, 35)
    job = run_job(project)
    assert job.outcome == "promoted", job.error
    services.project_update(
        project=project, labels=[LabelSpec(name) for name in trained + [n for n in EMOTIONS if n not in trained]]
    )
    label_ids = list(project.labels.order_by("order", "pk").values_list("pk", flat=True))
    for username in ("annotator_with_a_rather_long_name_1", "annotator_with_a_rather_long_name_2"):
        user = make_user(username)
        for pk in project.by_cluster[1][40:60]:
            Annotation.objects.create(project=project, item_id=pk, user=user, tags=[label_ids[1]])
    project_aggregate(project=project)
    return project


@pytest.mark.parametrize("path", ["dashboard", "models"])
def test_dashboard_and_models_page_of_a_multi_label_project_on_a_phone(
    open_page, admin_user, trained_project, path, artifacts_dir
):
    admin_user.set_password(PASSWORD)
    admin_user.save()
    page = open_page(PHONE, **PHONE_PAGE)
    log_in(page, admin_user.username, PASSWORD, f"/projects/{trained_project.pk}/{path}")
    page.screenshot(path=str(artifacts_dir / f"multilabel-{path}-phone.png"), full_page=True)
    assert_fits_the_phone(page)
    if path == "dashboard":
        assert page.locator('[data-testid="per-tag-kappa"]').inner_text().startswith("Kappa per tag: disappointment")
        chart = page.locator('svg[data-chart="bar"]')
        assert chart.locator("g.bar").count() == 28
        box = chart.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    else:
        # The versions table stacks its cells, each under the multi-label name of its figure.
        row = page.locator("tr.version-current")
        names = row.locator("td").evaluate_all("cells => cells.map(c => getComputedStyle(c, '::before').content)")
        for name in ("Subset accuracy", "Micro-F1", "Hamming loss", "ECE (mean per tag)"):
            assert f'"{name}"' in names, names
        actions = row.locator('[data-testid="version-actions"]')
        box = actions.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    assert not page.errors, page.errors
