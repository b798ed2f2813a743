"""The annotator's REST API: shapes, bad input, other people's ids, roles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from acquisition.models import ScoringRun
from annotation.models import Annotation, Assignment, ItemStatus, LabelClass, QueueEntry, Role
from tests.invariants import assert_queue_consistent, enqueue, make_items

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_refill(settings, recording_supply):
    settings.QUORUM_REFILL_THRESHOLD = 0
    settings.QUORUM_LEASE_SWEEP_SECONDS = 0


@pytest.fixture
def items(project):
    items = make_items(project, 5)
    enqueue(project, items)
    return items


@pytest.fixture
def ann(member, api_for):
    user = member("annie")
    return user, api_for(user)


@pytest.fixture
def bob(member, api_for):
    user = member("bob")
    return user, api_for(user)


def next_url(project):
    return f"/api/v1/projects/{project.pk}/next"


def get_next(api, project, **body):
    response = api.post(next_url(project), body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def submit_url(assignment_id):
    return f"/api/v1/assignments/{assignment_id}/annotation"


def assert_client_error(response, status, code=None):
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert body.get("detail"), body
    if code is not None:
        assert body["code"] == code, body
    return body


# --- shapes ----------------------------------------------------------------------------------


def test_next_shape(project, items, ann):
    _, api = ann
    body = get_next(api, project)
    assert set(body) == {"assignment", "suggestion", "progress", "code"}
    assignment = body["assignment"]
    assert {"id", "item", "leased_at", "expires_at", "reason", "status", "project"} <= set(assignment)
    assert set(assignment["item"]) == {"id", "external_id", "text", "metadata"}
    assert assignment["item"]["id"] == items[0].pk and assignment["item"]["text"] == items[0].text
    assert assignment["reason"] == "acquisition" and assignment["status"] == "leased"
    assert body["suggestion"] is None and body["code"] is None
    assert body["progress"] == {
        "done_today": 0,
        "done_total": 0,
        "remaining": 4,
        "remaining_capped": False,
        "refill_running": False,
    }


def test_next_with_an_empty_body_and_with_form_data(project, items, ann):
    _, api = ann
    assert api.post(next_url(project)).status_code == 200
    assert api.post(next_url(project), {}, format="multipart").status_code == 200


def test_suggestion_only_on_request(project, ann):
    _, api = ann
    entries = make_items(project, 2)
    enqueue(
        project,
        entries,
        suggested_label_id=LabelClass.objects.get(project=project, name="other").pk,
        suggested_confidence=0.75,
    )
    assert get_next(api, project)["suggestion"] is None
    body = get_next(api, project, suggest=True)  # the same live lease, now with the suggestion
    assert body["suggestion"] == {"label": "other", "confidence": 0.75}


def test_submit_shape_and_idempotency(project, items, ann, bob):  # bob: the item stays open after annie's label
    _, api = ann
    assignment = get_next(api, project)["assignment"]
    response = api.post(submit_url(assignment["id"]), {"label": "refund", "time_spent_ms": 2500}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    annotation = body["annotation"]
    assert {"id", "item", "label", "time_spent_ms", "created_at", "updated_at"} <= set(annotation)
    assert annotation["item"] == assignment["item"]["id"] and annotation["label"] == "refund"
    assert annotation["time_spent_ms"] == 2500 and annotation["user"] == "annie"
    assert body["progress"]["done_today"] == 1 and body["progress"]["done_total"] == 1
    again = api.post(submit_url(assignment["id"]), {"label": "refund", "time_spent_ms": 2500}, format="json")
    assert again.status_code == 200 and again.json()["annotation"]["id"] == annotation["id"]
    assert Annotation.objects.count() == 1
    changed = api.post(submit_url(assignment["id"]), {"label": "other"}, format="json")
    assert changed.status_code == 200 and changed.json()["annotation"]["label"] == "other"
    assert_queue_consistent(project)


def test_a_submit_reads_the_latest_agreement_snapshot_once(project, items, ann):
    # Before any aggregation there is no snapshot; the consensus path used to look it up again for
    # the posterior and for the policy (three identical queries on every submit of a new project).
    _, api = ann
    assignment = get_next(api, project)["assignment"]
    with CaptureQueriesContext(connection) as queries:
        response = api.post(submit_url(assignment["id"]), {"label": "refund"}, format="json")
    assert response.status_code == 201, response.content
    reads = [q["sql"] for q in queries.captured_queries if 'FROM "annotation_agreementsnapshot"' in q["sql"]]
    assert len(reads) == 1, reads


def test_skip_shape(project, items, ann, bob):
    _, api = ann
    assignment = get_next(api, project)["assignment"]
    response = api.post(f"/api/v1/assignments/{assignment['id']}/skip", {"reason": "unclear"}, format="json")
    assert response.status_code == 200, response.content
    skipped = response.json()["assignment"]
    assert skipped["status"] == "skipped" and skipped["id"] == assignment["id"]
    assert skipped["item"]["id"] == assignment["item"]["id"]
    assert api.post(f"/api/v1/assignments/{assignment['id']}/skip").status_code == 200  # no body, again
    assert get_next(api, project)["assignment"]["item"]["id"] != assignment["item"]["id"]
    assert_queue_consistent(project)


def test_change_and_undo(project, items, ann, bob):  # bob: the item stays open after annie's label
    _, api = ann
    assignment = get_next(api, project)["assignment"]
    annotation = api.post(submit_url(assignment["id"]), {"label": "refund"}, format="json").json()["annotation"]
    response = api.patch(f"/api/v1/annotations/{annotation['id']}", {"label": "card_lost"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["annotation"]["label"] == "card_lost"
    assert api.get(f"/api/v1/annotations/{annotation['id']}").json()["annotation"]["label"] == "card_lost"
    response = api.post(f"/api/v1/annotations/{annotation['id']}/undo")
    assert response.status_code == 200, response.content
    back = response.json()["assignment"]
    assert back["id"] == assignment["id"] and back["status"] == "leased"
    assert back["item"] == assignment["item"] and back["reason"] == "acquisition"
    assert not Annotation.objects.exists()
    assert get_next(api, project)["assignment"]["id"] == assignment["id"]
    assert_queue_consistent(project)


def test_list_own_annotations_newest_first(project, items, ann, bob):
    (_, api), (_, bob_api) = ann, bob
    for _ in range(3):
        assignment = get_next(api, project)["assignment"]
        api.post(submit_url(assignment["id"]), {"label": "refund"}, format="json")
    assignment = get_next(bob_api, project)["assignment"]
    bob_api.post(submit_url(assignment["id"]), {"label": "other"}, format="json")
    response = api.get(f"/api/v1/projects/{project.pk}/annotations")
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3 and {row["user"] for row in results} == {"annie"}
    assert [row["id"] for row in results] == sorted((row["id"] for row in results), reverse=True)
    assert {"id", "item", "label", "time_spent_ms", "created_at", "updated_at"} <= set(results[0])
    assert api.get(f"/api/v1/projects/{project.pk}/annotations?user=annie").status_code == 200
    assert_client_error(api.get(f"/api/v1/projects/{project.pk}/annotations?user=bob"), 403)
    first_item = results[-1]["item"]
    filtered = api.get(f"/api/v1/projects/{project.pk}/annotations?item={first_item}").json()["results"]
    assert [row["item"] for row in filtered] == [first_item]
    assert_client_error(api.get(f"/api/v1/projects/{project.pk}/annotations?item=x"), 400)


def test_reviewers_and_admins_list_everyones(project, items, ann, bob, member, api_for, admin_api):
    (_, api), (_, bob_api) = ann, bob
    for client in (api, bob_api):
        assignment = get_next(client, project)["assignment"]
        client.post(submit_url(assignment["id"]), {"label": "refund"}, format="json")
    reviewer = api_for(member("rita", Role.REVIEWER))
    for client in (reviewer, admin_api):
        rows = client.get(f"/api/v1/projects/{project.pk}/annotations").json()["results"]
        assert {row["user"] for row in rows} == {"annie", "bob"}
        rows = client.get(f"/api/v1/projects/{project.pk}/annotations?user=bob").json()["results"]
        assert {row["user"] for row in rows} == {"bob"}


def test_queue_empty_and_refill_running(project, ann):
    _, api = ann
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.RUNNING)
    body = get_next(api, project)
    assert body["assignment"] is None and body["code"] == "queue_empty"
    assert body["progress"]["refill_running"] is True and body["progress"]["remaining"] == 0


def test_lease_limit(project, items, ann):
    _, api = ann
    first = get_next(api, project)["assignment"]["id"]
    second = get_next(api, project, held=[first])["assignment"]["id"]
    body = get_next(api, project, held=[first, second])
    assert body["assignment"] is None and body["code"] == "lease_limit"


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"label": "nope"}, "label"),
        ({}, "label"),
        ({"label": ""}, "label"),
        ({"label": 3}, None),  # a number is coerced to "3": unknown label
        ({"label": ["refund"]}, "label"),
        ({"label": {"name": "refund"}}, "label"),
        ({"label": "refund", "time_spent_ms": "soon"}, "time_spent_ms"),
        ({"label": "refund", "time_spent_ms": -5}, "time_spent_ms"),
        ({"label": "refund", "time_spent_ms": 1.5}, "time_spent_ms"),
        ({"label": "refund", "time_spent_ms": 2**40}, "time_spent_ms"),
        (["refund"], "body"),
        ("refund", "body"),
    ],
)
def test_submit_bad_input_is_a_clear_400(project, items, ann, payload, field):
    _, api = ann
    assignment = get_next(api, project)["assignment"]
    body = assert_client_error(api.post(submit_url(assignment["id"]), payload, format="json"), 400)
    if field is not None:
        assert field in body["errors"], body
    if payload == {"label": "nope"}:
        assert body["code"] == "unknown_label" and "'refund'" in body["detail"]
    assert not Annotation.objects.exists()


def test_malformed_json_is_a_400(project, items, ann):
    _, api = ann
    assignment = get_next(api, project)["assignment"]
    response = api.post(submit_url(assignment["id"]), b'{"label": ', content_type="application/json")
    assert response.status_code == 400
    response = api.post(next_url(project), b"[[[[", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    "payload",
    [{"held": "3"}, {"held": ["x"]}, {"held": [None]}, {"held": [1] * 51}, {"suggest": "maybe"}, [1, 2]],
)
def test_next_bad_input_is_a_clear_400(project, items, ann, payload):
    _, api = ann
    assert_client_error(api.post(next_url(project), payload, format="json"), 400, "invalid")


def test_someone_elses_lease_is_not_found(project, items, ann, bob):
    (_, api), (_, bob_api) = ann, bob
    assignment = get_next(bob_api, project)["assignment"]
    assert_client_error(api.post(submit_url(assignment["id"]), {"label": "refund"}, format="json"), 404)
    assert_client_error(api.post(f"/api/v1/assignments/{assignment['id']}/skip"), 404)
    assert_client_error(api.post(submit_url(10**9), {"label": "refund"}, format="json"), 404)
    annotation = bob_api.post(submit_url(assignment["id"]), {"label": "refund"}, format="json").json()["annotation"]
    assert_client_error(api.patch(f"/api/v1/annotations/{annotation['id']}", {"label": "other"}, format="json"), 404)
    assert_client_error(api.get(f"/api/v1/annotations/{annotation['id']}"), 404)
    assert_client_error(api.post(f"/api/v1/annotations/{annotation['id']}/undo"), 404)
    assert Annotation.objects.get().label.name == "refund"


def test_expired_lease_whose_slot_went_elsewhere_is_a_409(project, items, ann, bob, member, api_for):
    (_, api), (_, bob_api) = ann, bob
    carl = api_for(member("carl"))
    mine = get_next(api, project)["assignment"]
    get_next(bob_api, project)
    Assignment.objects.filter(pk=mine["id"]).update(expires_at=timezone.now() - timedelta(seconds=5))
    assert get_next(carl, project)["assignment"]["item"]["id"] == mine["item"]["id"]
    assert_client_error(api.post(submit_url(mine["id"]), {"label": "refund"}, format="json"), 409, "lease_expired")


def test_final_item_is_a_409(project, items, ann, bob):
    (_, api), (_, bob_api) = ann, bob
    mine = get_next(api, project)["assignment"]
    annotation = api.post(submit_url(mine["id"]), {"label": "refund"}, format="json").json()["annotation"]
    theirs = get_next(bob_api, project)["assignment"]
    bob_api.post(submit_url(theirs["id"]), {"label": "refund"}, format="json")
    assert QueueEntry.objects.filter(item_id=mine["item"]["id"]).count() == 0
    url = f"/api/v1/annotations/{annotation['id']}"
    assert_client_error(api.patch(url, {"label": "other"}, format="json"), 409, "item_final")
    assert_client_error(api.post(url + "/undo"), 409, "item_final")
    assert_client_error(api.post(submit_url(mine["id"]), {"label": "other"}, format="json"), 409, "item_final")


def test_other_projects_ids_are_not_found(project, items, ann, make_project, admin_api):
    _, api = ann
    other = make_project("Other")
    enqueue(other, make_items(other, 2, prefix="o"))
    assert_client_error(api.post(next_url(other)), 404)
    assert_client_error(api.get(f"/api/v1/projects/{other.pk}/annotations"), 404)
    foreign = get_next(admin_api, other)["assignment"]
    assert_client_error(api.post(submit_url(foreign["id"]), {"label": "x"}, format="json"), 404)
    assert_client_error(api.post(f"/api/v1/projects/{10**9}/next"), 404)


# --- roles and authentication ----------------------------------------------------------------


def test_anonymous_gets_401(project, items):
    anonymous = APIClient()
    for response in (
        anonymous.post(next_url(project)),
        anonymous.post(submit_url(1), {"label": "refund"}, format="json"),
        anonymous.post("/api/v1/assignments/1/skip"),
        anonymous.get(f"/api/v1/projects/{project.pk}/annotations"),
        anonymous.patch("/api/v1/annotations/1", {"label": "refund"}, format="json"),
        anonymous.post("/api/v1/annotations/1/undo"),
    ):
        assert response.status_code == 401


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN])
def test_every_role_may_annotate(project, items, member, api_for, role):
    api = api_for(member("someone", role))
    assignment = get_next(api, project)["assignment"]
    assert api.post(submit_url(assignment["id"]), {"label": "refund"}, format="json").status_code == 201


def test_a_removed_member_can_no_longer_submit(project, items, ann):
    from annotation.services import membership_remove

    user, api = ann
    assignment = get_next(api, project)["assignment"]
    membership_remove(project=project, username=user.username)
    assert api.post(submit_url(assignment["id"]), {"label": "refund"}, format="json").status_code == 403
    assert_client_error(api.post(next_url(project)), 404)


def test_token_authentication_works_without_csrf(project, items, member, token_api):
    api = token_api(member("scripted"))
    assignment = get_next(api, project)["assignment"]
    assert api.post(submit_url(assignment["id"]), {"label": "refund"}, format="json").status_code == 201


def test_session_authentication_needs_csrf(project, items, member):
    member("browser")
    api = APIClient(enforce_csrf_checks=True)
    assert api.login(username="browser", password="pw-12345-quorum")
    assert api.post(next_url(project), {}, format="json").status_code == 403
    token = "k" * 32  # a CSRF secret as the cookie holds it; the header must repeat it
    api.cookies["csrftoken"] = token
    response = api.post(next_url(project), {}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200, response.content


def test_items_move_through_statuses(project, items, ann, bob):
    (_, api), (_, bob_api) = ann, bob
    mine = get_next(api, project)["assignment"]
    api.post(submit_url(mine["id"]), {"label": "refund"}, format="json")
    theirs = get_next(bob_api, project)["assignment"]
    bob_api.post(submit_url(theirs["id"]), {"label": "refund"}, format="json")
    from annotation.models import Item

    assert Item.objects.get(pk=mine["item"]["id"]).status == ItemStatus.FINALIZED
