"""The multi-label labelling and review pages through Django's test client, and the review API for tag
sets: the pages hand their script the task type (and only on multi-label projects), who may open them,
and a reviewer decides a disputed tag set through the API (``labels``, never ``label``)."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import Item, ItemStatus, LabelClass, LabelSource, Project, ReviewStatus, ReviewTask, Role
from annotation.selectors import tags_reason_text
from annotation.services.projects import SHORTCUT_KEYS, LabelSpec
from annotation.views import CHORD_PREFIXES, NONE_KEY
from tests.invariants import enqueue, make_items

pytestmark = pytest.mark.django_db

TAGS = ["refund", "complaint", "card", "praise"]


@pytest.fixture(autouse=True)
def no_refill(settings, recording_supply):
    settings.QUORUM_REFILL_THRESHOLD = 0
    settings.QUORUM_LEASE_SWEEP_SECONDS = 0


def ml_project(user, *, allow_empty_tags=True, labels=TAGS, **settings) -> Project:
    return services.project_create(
        user=user,
        name="Tags",
        labels=[LabelSpec(name) for name in labels],
        embedding_dim=4,
        task_type="multi_label",
        allow_empty_tags=allow_empty_tags,
        **settings,
    )


def config_of(response, script_id: str) -> dict:
    match = re.search(rf'<script id="{script_id}" type="application/json">(.*?)</script>', response.content.decode())
    assert match, f"the page embeds {script_id}"
    return json.loads(match.group(1))


def label_url(project) -> str:
    return reverse("label", args=[project.pk])


def review_url(project) -> str:
    return reverse("review", args=[project.pk])


def ids(project, names) -> list[int]:
    found = dict(LabelClass.objects.filter(project=project).values_list("name", "pk"))
    return sorted(found[name] for name in names)


# --- the labelling page ------------------------------------------------------------------------


def test_labelling_page_of_a_multi_label_project_hands_its_script_the_task_type(client_for, admin_user):
    project = ml_project(admin_user)
    response = client_for(admin_user).get(label_url(project))
    assert response.status_code == 200
    config = config_of(response, "labeller-config")
    assert config["taskType"] == "multi_label"
    assert config["allowEmptyTags"] is True
    assert config["noneKey"] == NONE_KEY == "-"
    html = response.content.decode()
    for label in project.labels.all():
        button = re.search(rf'<button[^>]*data-label="{label.name}"[^>]*>', html).group(0)
        assert 'aria-pressed="false"' in button and f'data-key="{label.shortcut}"' in button
    none = re.search(r'<button[^>]*data-action="none"[^>]*>', html).group(0)
    assert 'aria-pressed="false"' in none and 'aria-keyshortcuts="-"' in none
    assert 'data-action="save-tags"' in html and 'aria-keyshortcuts="Enter"' in html
    assert "Choose every tag that applies" in html
    assert 'data-action="use-suggestion"' in html


def test_no_none_control_where_an_empty_set_is_not_an_answer(client_for, admin_user):
    project = ml_project(admin_user, allow_empty_tags=False)
    response = client_for(admin_user).get(label_url(project))
    config = config_of(response, "labeller-config")
    assert config["taskType"] == "multi_label" and config["allowEmptyTags"] is False
    html = response.content.decode()
    assert 'data-action="none"' not in html
    assert 'data-action="save-tags"' in html
    assert "none of these" not in html.lower()


def test_single_label_pages_stay_single_label(client_for, admin_user, project, member):
    config = config_of(client_for(admin_user).get(label_url(project)), "labeller-config")
    assert not {"taskType", "allowEmptyTags", "noneKey"} & set(config)
    html = client_for(admin_user).get(label_url(project)).content.decode()
    assert "aria-pressed" not in html
    assert 'data-action="none"' not in html and 'data-action="save-tags"' not in html
    assert "Choose a label" in html
    reviewer = member("rita", Role.REVIEWER)
    review = client_for(reviewer).get(review_url(project))
    assert not {"taskType", "allowEmptyTags", "noneKey"} & set(config_of(review, "reviewer-config"))
    assert 'data-action="none"' not in review.content.decode()
    assert "Consensus estimate" in review.content.decode()


def test_none_key_never_collides_with_a_label_key(client_for, admin_user):
    """A project with more labels than single keys: every key and chord on the page differs from
    the "none of these" key."""
    names = [f"tag_{i:02d}" for i in range(len(SHORTCUT_KEYS) + 5)]
    project = ml_project(admin_user, labels=names)
    html = client_for(admin_user).get(label_url(project)).content.decode()
    keys = re.findall(r'<button type="button" class="label-btn"[^>]*data-key="([^"]*)"', html)
    assert len(keys) == len(names)
    assert NONE_KEY not in keys and all(not key.startswith(NONE_KEY) for key in keys)
    assert NONE_KEY not in SHORTCUT_KEYS + CHORD_PREFIXES + "su/"
    # Every explicit shortcut a label may have (0-9, a-z) is a different key too.
    assert NONE_KEY not in "0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN])
def test_every_member_may_label_a_multi_label_project(client_for, admin_user, make_user, role):
    project = ml_project(admin_user)
    user = make_user(f"user-{role}")
    services.membership_set(project=project, username=user.username, role=role)
    assert client_for(user).get(label_url(project)).status_code == 200


def test_multi_label_pages_need_login_and_membership(client, client_for, admin_user, make_user):
    project = ml_project(admin_user)
    for url in (label_url(project), review_url(project)):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"] == f"{reverse('login')}?next={url}"
    outsider = make_user("eve")
    assert client_for(outsider).get(label_url(project)).status_code == 404
    assert client_for(outsider).get(review_url(project)).status_code == 404
    annotator = make_user("ann")
    services.membership_set(project=project, username="ann", role=Role.ANNOTATOR)
    assert client_for(annotator).get(review_url(project)).status_code == 403


# --- the review page ---------------------------------------------------------------------------


def test_review_page_of_a_multi_label_project(client_for, admin_user, make_user):
    project = ml_project(admin_user)
    reviewer = make_user("rita")
    services.membership_set(project=project, username="rita", role=Role.REVIEWER)
    response = client_for(reviewer).get(review_url(project))
    assert response.status_code == 200
    config = config_of(response, "reviewer-config")
    assert (config["taskType"], config["allowEmptyTags"], config["noneKey"]) == ("multi_label", True, "-")
    html = response.content.decode()
    assert 'id="disputed"' in html and "Tag estimate" in html and "Decide the tags" in html
    assert 'data-action="none"' in html
    assert '<script src="/static/js/review.js" defer></script>' in html
    strict = ml_project(admin_user, allow_empty_tags=False)
    services.membership_set(project=strict, username="rita", role=Role.REVIEWER)
    assert 'data-action="none"' not in client_for(reviewer).get(review_url(strict)).content.decode()


# --- the review API for tag sets ---------------------------------------------------------------


@pytest.fixture
def disputed(admin_user, make_user, api_for):
    """A multi-label project whose one item went to review: ann and cat chose refund and card, bob
    only refund (card 2 of 3, under the 0.8 threshold with no aggregation yet)."""
    project = ml_project(admin_user, labels_per_item=2, max_labels_per_item=3)
    item = make_items(project, 1)[0]
    enqueue(project, [item])
    plan = (("ann", ["refund", "card"]), ("bob", ["refund"]), ("cat", ["card", "refund"]))
    people = {name: make_user(name) for name, _ in plan}  # all members first: the item waits for them
    for name in people:
        services.membership_set(project=project, username=name, role=Role.ANNOTATOR)
    for name, tags in plan:
        api = api_for(people[name])
        assignment = api.post(f"/api/v1/projects/{project.pk}/next", {}, format="json").json()["assignment"]
        assert assignment["item"]["id"] == item.pk
        response = api.post(f"/api/v1/assignments/{assignment['id']}/annotation", {"labels": tags}, format="json")
        assert response.status_code == 201, response.content
    reviewer = make_user("rita")
    services.membership_set(project=project, username="rita", role=Role.REVIEWER)
    task = ReviewTask.objects.get(item=item)
    return project, item, task, api_for(reviewer)


def test_review_payload_of_a_tag_set_task(disputed):
    project, item, task, api = disputed
    body = api.get(f"/api/v1/reviews/{task.pk}").json()
    assert [(a["username"], a["labels"]) for a in body["annotations"]] == [
        ("ann", ["refund", "card"]),
        ("bob", ["refund"]),
        ("cat", ["refund", "card"]),
    ]
    assert all("label" not in a for a in body["annotations"])
    # Per tag P(tag present): the vote shares with no aggregation yet.
    posterior = {row["label"]: row["p"] for row in body["posterior"]}
    assert posterior == pytest.approx({"refund": 1.0, "card": 2 / 3}, abs=1e-6)
    assert [row["label"] for row in body["posterior"]] == ["refund", "card"]
    assert body["disputed"] == ["card"]
    assert body["decision"] is None and body["decision_labels"] is None
    facts = body["reason_facts"]
    assert facts["labels"] == 3
    assert facts["votes"] == [{"label": "refund", "n": 3}, {"label": "card", "n": 2}]
    assert facts["confidence"] == pytest.approx(2 / 3, abs=1e-6)  # the weakest tag's max(p, 1 - p)
    assert "card: 2 of 3 chose it" in body["reason_text"]
    assert (
        body["reason_text"]
        == "Unresolved after 3 labels (card: 2 of 3 chose it): weakest tag 67 %, under the 80 % threshold"
    )
    # The next task hands the same shape.
    assert api.post(f"/api/v1/projects/{project.pk}/reviews/next", {}, format="json").json()["review"]["disputed"] == [
        "card"
    ]


def test_resolve_a_tag_set_task_refuses_label_and_unknown_names(disputed):
    project, item, task, api = disputed
    url = f"/api/v1/reviews/{task.pk}/resolve"
    cases = [
        ({"label": "refund"}, "label", "wrong_answer_field"),
        ({"labels": ["refund", "nope"]}, "labels", "unknown_label"),
        ({"labels": ["refund", "refund"]}, "labels", "invalid"),
        ({"labels": "refund"}, "labels", "invalid"),
        ({"labels": ["refund"], "label": "refund"}, "labels", "invalid"),
        ({}, "labels", "required"),
    ]
    for body, field, code in cases:
        response = api.post(url, body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()["errors"], (body, response.json())
        assert response.json()["code"] == code, (body, response.json())
    assert "'nope'" in api.post(url, {"labels": ["nope"]}, format="json").json()["errors"]["labels"]
    task.refresh_from_db()
    item.refresh_from_db()
    assert task.status == ReviewStatus.OPEN and item.status == ItemStatus.IN_REVIEW


def test_resolve_a_tag_set_task_makes_the_item_final_with_the_set(disputed):
    project, item, task, api = disputed
    url = f"/api/v1/reviews/{task.pk}/resolve"
    response = api.post(url, {"labels": ["card", "refund"], "note": "both asked"}, format="json")
    assert response.status_code == 200, response.content
    review = response.json()["review"]
    assert review["status"] == "resolved" and review["resolved_by"] == "rita"
    assert review["decision"] is None and review["decision_labels"] == ["refund", "card"]
    task.refresh_from_db()
    item.refresh_from_db()
    assert task.decision_id is None and task.decision_tags == ids(project, ["refund", "card"])
    assert task.note == "both asked"
    assert item.status == ItemStatus.FINALIZED
    assert item.final_label_id is None
    assert item.final_tags == ids(project, ["refund", "card"])
    assert item.final_source == LabelSource.REVIEW and item.final_confidence == 1.0
    # The same set again (any order): 200, unchanged; another set: 409.
    again = api.post(url, {"labels": ["refund", "card"]}, format="json")
    assert again.status_code == 200 and again.json()["review"]["note"] == "both asked"
    other = api.post(url, {"labels": ["refund"]}, format="json")
    assert other.status_code == 409 and other.json()["code"] == "already_resolved"
    assert Item.objects.get(pk=item.pk).final_tags == ids(project, ["refund", "card"])


def test_resolve_with_the_empty_set_follows_the_project(admin_user, make_user, api_for):
    for allow in (True, False):
        project = ml_project(admin_user, allow_empty_tags=allow)
        item = make_items(project, 1)[0]
        Item.objects.filter(pk=item.pk).update(status=ItemStatus.IN_REVIEW)
        task = ReviewTask.objects.create(project=project, item=item, reason="disagreement", posterior={})
        api = api_for(admin_user)
        response = api.post(f"/api/v1/reviews/{task.pk}/resolve", {"labels": []}, format="json")
        item.refresh_from_db()
        if allow:
            assert response.status_code == 200, response.content
            assert response.json()["review"]["decision_labels"] == []
            assert item.final_tags == [] and item.status == ItemStatus.FINALIZED
        else:
            assert response.status_code == 400 and "labels" in response.json()["errors"]
            assert response.json()["code"] == "empty_tags"
            assert item.final_tags is None and item.status == ItemStatus.IN_REVIEW


def test_single_label_resolve_refuses_a_tag_set_naming_the_field(project, member, api_for):
    item = make_items(project, 1)[0]
    Item.objects.filter(pk=item.pk).update(status=ItemStatus.IN_REVIEW)
    task = ReviewTask.objects.create(project=project, item=item, reason="disagreement", posterior={})
    api = api_for(member("rev", Role.REVIEWER))
    response = api.post(f"/api/v1/reviews/{task.pk}/resolve", {"labels": ["refund"]}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "wrong_answer_field"
    assert "labels" in response.json()["errors"]
    response = api.post(f"/api/v1/reviews/{task.pk}/resolve", {}, format="json")
    assert response.status_code == 400 and "label" in response.json()["errors"]
    response = api.post(f"/api/v1/reviews/{task.pk}/resolve", {"label": "refund"}, format="json")
    assert response.status_code == 200 and response.json()["review"]["decision"] == "refund"
    assert "decision_labels" not in response.json()["review"] and "disputed" not in response.json()["review"]
    item.refresh_from_db()
    assert item.final_label.name == "refund" and item.final_tags is None


@pytest.mark.parametrize(
    ("reason", "disputed", "n_labels", "confidence", "says"),
    [
        ("disagreement", [("card", 1)], 2, 0.5, "Annotators split evenly: card: 1 of 2 chose it"),
        ("max_labels", [("card", 2)], 3, 2 / 3, "Unresolved after 3 labels (card: 2 of 3 chose it): weakest tag 67 %"),
        ("low_confidence", [], 2, 0.9, "Sent to review under the threshold; now weakest tag 90 %, at or above"),
        ("low_confidence", [("praise", 1)], 3, 0.7, "Weakest tag 70 %, under the 80 % threshold (praise: 1 of 3"),
        ("no_annotator", [("card", 1)], 2, None, "no annotator who has not labelled it is left (card: 1 of 2 chose"),
    ],
)
def test_tag_reason_text_states_the_actual_figures(reason, disputed, n_labels, confidence, says):
    text = tags_reason_text(reason, disputed=disputed, n_labels=n_labels, confidence=confidence, threshold=0.8)
    assert says in text, text


def test_none_key_steps_aside_for_a_label_that_took_it(client_for, admin_user):
    """A label given "-" as its shortcut outside the API keeps it; "none of these" takes the next key."""
    project = services.project_create(
        user=admin_user,
        name="Dash",
        labels=[LabelSpec("minus", shortcut="-"), LabelSpec("plus")],
        embedding_dim=4,
        task_type="multi_label",
    )
    response = client_for(admin_user).get(label_url(project))
    config = config_of(response, "labeller-config")
    assert {label["shortcut"] for label in config["labels"]} == {"-", "1"}
    assert config["noneKey"] == "="
    assert 'aria-keyshortcuts="="' in re.search(
        r'<button[^>]*data-action="none"[^>]*>', response.content.decode()
    ).group(0)
