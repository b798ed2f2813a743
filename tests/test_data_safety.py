"""Data safety: a changed text is a new question; deleting a user keeps their annotations; deleting
a project takes everything under it (files too); a removed annotator's leases come back at once."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.test import Client

from acquisition.embeddings import cache_folder
from acquisition.models import ModelVersion
from annotation import services
from annotation.models import (
    Annotation,
    Assignment,
    AssignmentStatus,
    Item,
    ItemRevision,
    ItemStatus,
    LabelClass,
    LabelSource,
    Membership,
    Project,
    QueueEntry,
    ReviewStatus,
    ReviewTask,
    Role,
)
from annotation.services.review import review_resolve
from quorum.errors import Conflict
from tests.invariants import assert_queue_consistent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_refill(settings, recording_supply):
    settings.QUORUM_REFILL_THRESHOLD = 0
    settings.QUORUM_LEASE_SWEEP_SECONDS = 0


def push(api, project, records):
    response = api.post(
        f"/api/v1/projects/{project.pk}/items", data=json.dumps(records), content_type="application/json"
    )
    assert response.status_code in (200, 201), response.content
    return response.json()


def take(api, project) -> dict:
    response = api.post(f"/api/v1/projects/{project.pk}/next", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["assignment"]


def submit(api, assignment_id, label):
    return api.post(f"/api/v1/assignments/{assignment_id}/annotation", {"label": label}, format="json")


def export(api, project, query=""):
    response = api.get(f"/api/v1/projects/{project.pk}/export{query}")
    assert response.status_code == 200
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


@pytest.fixture
def team(member, api_for):
    users = {name: member(name) for name in ("ann1", "ann2", "ann3")}
    return users, {name: api_for(user) for name, user in users.items()}


def label_final(project, team, external_id="a"):
    """Push item ``external_id`` and have ann1 and ann2 agree on ``refund`` (it becomes final)."""
    users, apis = team
    for name in ("ann1", "ann2"):
        assignment = take(apis[name], project)
        assert assignment["item"]["external_id"] == external_id
        assert submit(apis[name], assignment["id"], "refund").status_code == 201
    item = Item.objects.get(project=project, external_id=external_id)
    assert item.status == ItemStatus.FINALIZED and item.final_label.name == "refund"
    return item


# --- 1. a changed text is a new question -------------------------------------------------------


def test_changed_text_requeues_the_item_and_keeps_its_labels_as_history(admin_api, project, team):
    users, apis = team
    push(admin_api, project, [{"external_id": "a", "text": "I want my money back"}])
    item = label_final(project, team)

    report = push(admin_api, project, [{"external_id": "a", "text": "My card is gone"}])
    assert report["updated"] == 1
    item.refresh_from_db()
    assert item.text == "My card is gone" and item.text_revision == 2
    assert item.status == ItemStatus.UNLABELED and item.final_label is None and item.final_source == ""
    assert Annotation.objects.filter(item=item).count() == 0  # nothing counts any more
    old = Annotation.all_revisions.filter(item=item)
    assert old.count() == 2 and all(a.superseded_at is not None and a.item_revision == 1 for a in old)
    assert ItemRevision.objects.get(item=item, revision=1).text == "I want my money back"

    # the same annotators may label the new text; their new labels are what counts
    for name, label in (("ann1", "card_lost"), ("ann2", "card_lost")):
        assignment = take(apis[name], project)
        assert assignment["item"]["text"] == "My card is gone"
        assert submit(apis[name], assignment["id"], label).status_code == 201
    item.refresh_from_db()
    assert item.status == ItemStatus.FINALIZED and item.final_label.name == "card_lost"
    assert Annotation.objects.filter(item=item).count() == 2
    assert_queue_consistent(project)

    current = export(admin_api, project)
    assert [(a["annotator"], a["label"]) for a in current[0]["annotations"]] == [
        ("ann1", "card_lost"),
        ("ann2", "card_lost"),
    ]
    assert "history" not in current[0]
    with_history = export(admin_api, project, "?history=1")
    (revision,) = with_history[0]["history"]
    assert revision["revision"] == 1 and revision["text"] == "I want my money back"
    assert [(a["annotator"], a["label"]) for a in revision["annotations"]] == [("ann1", "refund"), ("ann2", "refund")]
    csv_text = b"".join(
        admin_api.get(f"/api/v1/projects/{project.pk}/export?format=csv&history=1").streaming_content
    ).decode()
    assert csv_text.splitlines()[0].endswith(",annotations,history")
    assert admin_api.get(f"/api/v1/projects/{project.pk}/export?history=maybe").status_code == 400


def test_a_lease_that_showed_the_old_text_is_refused_with_409(admin_api, project, team):
    users, apis = team
    push(admin_api, project, [{"external_id": "a", "text": "old text"}])
    first = take(apis["ann1"], project)
    done = submit(apis["ann1"], first["id"], "refund").json()["annotation"]
    stale = take(apis["ann2"], project)
    assert stale["item"]["text"] == "old text"

    push(admin_api, project, [{"external_id": "a", "text": "new text"}])
    response = submit(apis["ann2"], stale["id"], "refund")
    assert response.status_code == 409
    assert response.json()["code"] == "text_changed" and "text changed" in response.json()["detail"]
    assert apis["ann2"].post(f"/api/v1/assignments/{stale['id']}/skip", {}, format="json").status_code == 409
    # the annotation given to the old text can no longer be changed or taken back either
    patch = apis["ann1"].patch(f"/api/v1/annotations/{done['id']}", {"label": "other"}, format="json")
    assert patch.status_code == 409 and patch.json()["code"] == "text_changed"
    assert Assignment.all_revisions.get(pk=stale["id"]).status == AssignmentStatus.EXPIRED
    # the fresh lease shows the new text, and the submit on it is accepted
    fresh = take(apis["ann2"], project)
    assert fresh["id"] != stale["id"] and fresh["item"]["text"] == "new text"
    assert submit(apis["ann2"], fresh["id"], "refund").status_code == 201
    assert_queue_consistent(project)


def test_changed_text_cancels_the_open_review_and_leaves_aggregation_to_current_labels(admin_api, project, team):
    users, apis = team
    push(admin_api, project, [{"external_id": "a", "text": "ambiguous"}])
    item = Item.objects.get(external_id="a")
    for name, label in (("ann1", "refund"), ("ann2", "other")):
        assert submit(apis[name], take(apis[name], project)["id"], label).status_code == 201
    task = ReviewTask.objects.filter(item=item, status=ReviewStatus.OPEN).first()
    if task is None:  # the disagreement asked for a third label first: send it to review now
        QueueEntry.objects.filter(item=item).delete()
        Item.objects.filter(pk=item.pk).update(status=ItemStatus.IN_REVIEW)
        task = ReviewTask.objects.create(project=project, item=item, reason="disagreement")

    push(admin_api, project, [{"external_id": "a", "text": "clear now"}])
    task.refresh_from_db()
    assert task.status == ReviewStatus.CANCELLED
    with pytest.raises(Conflict, match="cancelled"):
        review_resolve(review_id=task.pk, user=project.created_by, label="refund")
    item.refresh_from_db()
    assert item.status == ItemStatus.UNLABELED and not QueueEntry.objects.filter(item=item).exists()
    snapshot = services.project_aggregate(project=project)
    assert snapshot.n_annotations == Annotation.objects.filter(project=project).count()
    assert not Annotation.objects.filter(item=item).exists()


def test_unchanged_repush_stays_idempotent(admin_api, project, team):
    push(admin_api, project, [{"external_id": "a", "text": "same"}])
    item = label_final(project, team)
    report = push(admin_api, project, [{"external_id": "a", "text": "same"}])
    assert (report["updated"], report["unchanged"]) == (0, 1)
    item.refresh_from_db()
    assert item.text_revision == 1 and item.status == ItemStatus.FINALIZED
    assert Annotation.objects.filter(item=item).count() == 2
    assert not ItemRevision.objects.exists()


def test_changed_text_with_a_gold_label_is_gold_again(admin_api, project):
    refund = LabelClass.objects.get(project=project, name="refund")
    for text in ("one", "two"):
        push(admin_api, project, [{"external_id": "g", "text": text, "label": "refund"}])
    item = Item.objects.get(external_id="g")
    assert (item.text, item.text_revision, item.final_label_id, item.final_source) == (
        "two",
        2,
        refund.pk,
        LabelSource.GOLD,
    )


# --- 2. deleting a user keeps their annotations -----------------------------------------------


def test_deleting_a_user_keeps_their_annotations(admin_api, project, team):
    users, apis = team
    push(admin_api, project, [{"external_id": "a", "text": "refund please"}, {"external_id": "b", "text": "x"}])
    item = label_final(project, team)
    held = take(apis["ann1"], project)  # a live lease on b, released by the deletion
    gone = users["ann1"].pk
    users["ann1"].delete()

    item.refresh_from_db()
    assert item.status == ItemStatus.FINALIZED
    kept = Annotation.objects.get(item=item, former_user_id=gone)
    assert kept.user_id is None and kept.annotator_key == gone and kept.annotator_name == f"deleted-user-{gone}"
    assert not Assignment.all_revisions.filter(pk=held["id"]).exists()
    assert QueueEntry.objects.get(item__external_id="b").labels_taken == 0
    record = export(admin_api, project)[0]
    assert {a["annotator"] for a in record["annotations"]} == {f"deleted-user-{gone}", "ann2"}
    snapshot = services.project_aggregate(project=project)
    assert snapshot.n_annotations == 2
    assert f"deleted-user-{gone}" in [row["username"] for row in snapshot.annotators]
    listing = admin_api.get(f"/api/v1/projects/{project.pk}/annotations").json()["results"]
    assert f"deleted-user-{gone}" in {row["user"] for row in listing}


def test_deleting_a_user_in_the_django_admin_works(admin_api, project, team, make_user):
    users, _ = team
    push(admin_api, project, [{"external_id": "a", "text": "refund please"}])
    item = label_final(project, team)
    boss = make_user("boss", superuser=True)
    client = Client()
    client.force_login(boss)
    target = users["ann2"]
    assert client.get(f"/admin/auth/user/{target.pk}/delete/").status_code == 200
    response = client.post(f"/admin/auth/user/{target.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=target.pk).exists()
    assert Annotation.objects.filter(item=item).count() == 2
    assert Annotation.objects.get(item=item, former_user_id=target.pk).user_id is None


# --- 3. deleting a project -------------------------------------------------------------------


def test_delete_project_with_annotations_reviews_models_and_files(
    admin_api, project, team, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    users, apis = team
    push(admin_api, project, [{"external_id": "a", "text": "refund"}, {"external_id": "b", "text": "lost"}])
    item = label_final(project, team)
    other = Item.objects.get(external_id="b")
    task = ReviewTask.objects.create(project=project, item=other, reason="disagreement")
    review_resolve(review_id=task.pk, user=project.created_by, label="other")
    version = ModelVersion.objects.create(project=project, version=1)
    version.weights.save(f"project-{project.pk}/v1.pt", ContentFile(b"weights"), save=True)
    weights = tmp_path / "media" / version.weights.name
    folder = cache_folder(project.pk)
    folder.mkdir(parents=True)
    np.save(folder / "vectors.npy", np.zeros((2, 4), dtype=np.float32))
    assert weights.exists() and item.final_label_id is not None

    other_project = Project.objects.create(name="Kept", created_by=project.created_by)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_api.delete(f"/api/v1/projects/{project.pk}")
    assert response.status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not Annotation.all_revisions.filter(project_id=project.pk).exists()
    assert not LabelClass.objects.filter(project_id=project.pk).exists()
    assert not ModelVersion.objects.filter(project_id=project.pk).exists()
    assert not weights.exists() and not folder.exists()
    assert Project.objects.filter(pk=other_project.pk).exists()


def test_delete_project_needs_the_admin_role(api_for, project, team):
    users, apis = team
    assert apis["ann1"].delete(f"/api/v1/projects/{project.pk}").status_code == 403
    assert api_for(None).delete(f"/api/v1/projects/{project.pk}").status_code in (401, 403)
    assert Project.objects.filter(pk=project.pk).exists()


def test_a_label_in_use_cannot_be_deleted_alone(admin_api, project, team):
    push(admin_api, project, [{"external_id": "a", "text": "refund please"}])
    label_final(project, team)
    from django.db.models import RestrictedError  # the database error this test expects

    with pytest.raises(RestrictedError):
        LabelClass.objects.get(project=project, name="refund").delete()


# --- 4. a removed annotator's leases come back at once ------------------------------------------


@pytest.mark.parametrize("how", ["remove", "role"])
def test_a_removed_annotators_leases_are_released(admin_api, project, team, how):
    users, apis = team
    push(admin_api, project, [{"external_id": "a", "text": "one"}])
    held = take(apis["ann1"], project)
    entry = QueueEntry.objects.get(item__external_id="a")
    assert entry.labels_taken == 1
    if how == "remove":
        assert admin_api.delete(f"/api/v1/projects/{project.pk}/members/ann1").status_code == 204
    else:
        response = admin_api.patch(f"/api/v1/projects/{project.pk}/members/ann1", {"role": "reviewer"}, format="json")
        assert response.status_code == 200
    entry.refresh_from_db()
    assert entry.labels_taken == 0
    assert Assignment.objects.get(pk=held["id"]).status == AssignmentStatus.EXPIRED
    assert Membership.objects.filter(user=users["ann1"], role=Role.ANNOTATOR).count() == 0
    assert_queue_consistent(project)
