"""Constraints the database itself enforces (bypassing services and validation)."""

import pytest
from django.db import IntegrityError, transaction

from acquisition.models import ItemEmbedding
from annotation.ingest_records import text_digest
from annotation.models import EmbeddingState, Item, ItemStatus, LabelClass, Membership, Project, Role

pytestmark = pytest.mark.django_db


def make_item(project, external_id="a", text="hello", **fields):
    return Item.objects.create(
        project=project, external_id=external_id, text=text, text_hash=text_digest(text), **fields
    )


def assert_rejected_by_db(create):
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


@pytest.fixture
def bare_project(db):
    return Project.objects.create(name="Bare")


# --- items ----------------------------------------------------------------------------------


def test_item_defaults(bare_project):
    item = make_item(bare_project)
    item.refresh_from_db()
    assert item.status == ItemStatus.UNLABELED
    assert item.embedding_state == EmbeddingState.PENDING
    assert item.metadata == {}


def test_duplicate_external_id_in_a_project(bare_project):
    make_item(bare_project, "a")
    assert_rejected_by_db(lambda: make_item(bare_project, "a", text="other"))
    assert Item.objects.filter(project=bare_project).count() == 1


def test_same_external_id_in_two_projects(bare_project):
    other = Project.objects.create(name="Other")
    make_item(bare_project, "a")
    make_item(other, "a")
    assert Item.objects.filter(external_id="a").count() == 2


def test_bulk_create_of_duplicates_is_rejected_too(bare_project):
    items = [Item(project=bare_project, external_id="x", text="t", text_hash=text_digest("t")) for _ in range(2)]
    assert_rejected_by_db(lambda: Item.objects.bulk_create(items))
    assert not Item.objects.exists()


def test_empty_external_id(bare_project):
    assert_rejected_by_db(lambda: make_item(bare_project, ""))


@pytest.mark.parametrize("field, value", [("status", "done"), ("status", ""), ("embedding_state", "maybe")])
def test_invalid_choice_values(bare_project, field, value):
    assert_rejected_by_db(lambda: make_item(bare_project, **{field: value}))


def test_invalid_status_via_update(bare_project):
    item = make_item(bare_project)
    assert_rejected_by_db(lambda: Item.objects.filter(pk=item.pk).update(status="archived"))
    item.refresh_from_db()
    assert item.status == ItemStatus.UNLABELED


@pytest.mark.parametrize("status", ItemStatus.values)
def test_every_valid_status_is_accepted(bare_project, status):
    assert make_item(bare_project, status=status).pk


def test_deleting_a_project_deletes_its_items_and_embeddings(bare_project):
    item = make_item(bare_project)
    ItemEmbedding.objects.create(item=item, project=bare_project, vector=b"\x00" * 16, dim=4, source="provided")
    bare_project.delete()
    assert not Item.objects.exists()
    assert not ItemEmbedding.objects.exists()


def test_one_embedding_per_item(bare_project):
    item = make_item(bare_project)
    ItemEmbedding.objects.create(item=item, project=bare_project, vector=b"\x00" * 16, dim=4, source="provided")
    assert_rejected_by_db(
        lambda: ItemEmbedding.objects.bulk_create(
            [ItemEmbedding(item=item, project=bare_project, vector=b"\x01" * 16, dim=4, source="x")]
        )
    )


def test_embedding_dim_positive(bare_project):
    item = make_item(bare_project)
    assert_rejected_by_db(
        lambda: ItemEmbedding.objects.create(item=item, project=bare_project, vector=b"", dim=0, source="x")
    )


def test_embedding_as_array_round_trip(bare_project):
    import numpy as np

    item = make_item(bare_project)
    vector = np.array([0.25, -1.5, 3.0, 1e-3], dtype="<f4")
    ItemEmbedding.objects.create(item=item, project=bare_project, vector=vector.tobytes(), dim=4, source="provided")
    stored = ItemEmbedding.objects.get(item=item)
    assert stored.as_array().dtype == np.dtype("<f4")
    np.testing.assert_array_equal(stored.as_array(), vector)


# --- projects -------------------------------------------------------------------------------


def test_project_defaults(settings):
    project = Project.objects.create(name="Defaults")
    project.refresh_from_db()
    assert project.encoder == settings.QUORUM_ENCODER
    assert project.embedding_dim == settings.QUORUM_EMBEDDING_DIM
    assert project.labels_per_item <= project.max_labels_per_item
    assert 0 <= project.exploration_fraction <= 1


@pytest.mark.parametrize(
    "fields",
    [
        {"labels_per_item": 3, "max_labels_per_item": 2},
        {"labels_per_item": 0},
        {"exploration_fraction": 1.01},
        {"exploration_fraction": -0.1},
        {"batch_size": 0},
        {"min_consensus_confidence": 1.5},
        {"review_all_below_kappa": 0.9, "review_disagreements_below_kappa": 0.8},
        {"review_all_below_kappa": -1.5},
        {"review_disagreements_below_kappa": 1.2},
        {"retrain_after": 0},
        {"lease_seconds": 9},
        {"embedding_dim": 0},
        {"task_type": "ner"},
        {"acquisition_strategy": "magic"},
    ],
    ids=lambda fields: ",".join(f"{k}={v}" for k, v in fields.items()),
)
def test_project_check_constraints(db, fields):
    assert_rejected_by_db(lambda: Project.objects.create(name="Bad", **fields))
    assert not Project.objects.filter(name="Bad").exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"labels_per_item": 3, "max_labels_per_item": 3},
        {"exploration_fraction": 0.0},
        {"exploration_fraction": 1.0},
        {"review_all_below_kappa": 0.7, "review_disagreements_below_kappa": 0.7},
        {"review_all_below_kappa": -1, "review_disagreements_below_kappa": 1},
        {"lease_seconds": 10},
    ],
    ids=lambda fields: ",".join(f"{k}={v}" for k, v in fields.items()),
)
def test_project_boundaries_are_accepted(db, fields):
    assert Project.objects.create(name="Edge", **fields).pk


def test_project_constraint_also_enforced_on_update(bare_project):
    assert_rejected_by_db(
        lambda: Project.objects.filter(pk=bare_project.pk).update(max_labels_per_item=1, labels_per_item=2)
    )
    bare_project.refresh_from_db()
    assert bare_project.labels_per_item == 2


# --- labels ---------------------------------------------------------------------------------


def test_duplicate_label_name_in_a_project(bare_project):
    LabelClass.objects.create(project=bare_project, name="refund", order=0, shortcut="1")
    assert_rejected_by_db(lambda: LabelClass.objects.create(project=bare_project, name="refund", order=1, shortcut="2"))


def test_duplicate_label_shortcut_in_a_project(bare_project):
    LabelClass.objects.create(project=bare_project, name="refund", order=0, shortcut="1")
    assert_rejected_by_db(lambda: LabelClass.objects.create(project=bare_project, name="other", order=1, shortcut="1"))


def test_many_labels_without_shortcut(bare_project):
    for order, name in enumerate(["a", "b", "c"]):
        LabelClass.objects.create(project=bare_project, name=name, order=order, shortcut="")
    assert LabelClass.objects.filter(project=bare_project, shortcut="").count() == 3


def test_empty_label_name(bare_project):
    assert_rejected_by_db(lambda: LabelClass.objects.create(project=bare_project, name="", order=0))


def test_same_label_name_and_shortcut_in_two_projects(bare_project):
    other = Project.objects.create(name="Other")
    LabelClass.objects.create(project=bare_project, name="refund", order=0, shortcut="1")
    LabelClass.objects.create(project=other, name="refund", order=0, shortcut="1")
    assert LabelClass.objects.filter(name="refund").count() == 2


# --- memberships ----------------------------------------------------------------------------


def test_duplicate_membership(bare_project, make_user):
    user = make_user("bob")
    Membership.objects.create(user=user, project=bare_project, role=Role.ANNOTATOR)
    assert_rejected_by_db(lambda: Membership.objects.create(user=user, project=bare_project, role=Role.ADMIN))
    assert Membership.objects.get(user=user, project=bare_project).role == Role.ANNOTATOR


def test_invalid_role(bare_project, make_user):
    user = make_user("bob")
    assert_rejected_by_db(lambda: Membership.objects.create(user=user, project=bare_project, role="owner"))


def test_same_user_in_two_projects(bare_project, make_user):
    user = make_user("bob")
    other = Project.objects.create(name="Other")
    Membership.objects.create(user=user, project=bare_project, role=Role.ANNOTATOR)
    Membership.objects.create(user=user, project=other, role=Role.ADMIN)
    assert user.memberships.count() == 2
