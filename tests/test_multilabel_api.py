"""Multi-label projects through the REST API: creation, ingest of known tag sets, the tag-set answer,
per-tag consensus and the review of disputed tags; single-label projects refuse tag sets."""

from __future__ import annotations

import json

import pytest

from annotation.models import Annotation, Item, ItemStatus, LabelClass, Project, ReviewTask, Role
from annotation.services import membership_set
from tests.invariants import assert_queue_consistent, enqueue, make_items

pytestmark = pytest.mark.django_db

TAGS = ["refund", "complaint", "card", "praise"]


@pytest.fixture(autouse=True)
def no_refill(settings, recording_supply):
    settings.QUORUM_REFILL_THRESHOLD = 0
    settings.QUORUM_LEASE_SWEEP_SECONDS = 0


def create(api, **fields) -> dict:
    body = {"name": "Tags", "labels": TAGS, "encoder": "hashing:4", "task_type": "multi_label", **fields}
    response = api.post("/api/v1/projects", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def ml_project(admin_api) -> Project:
    return Project.objects.get(pk=create(admin_api, labels_per_item=2, max_labels_per_item=3)["id"])


@pytest.fixture
def annotators(ml_project, make_user, api_for):
    people = []
    for name in ("ann", "bob", "cat"):
        user = make_user(name)
        membership_set(project=ml_project, username=name, role=Role.ANNOTATOR)
        people.append((user, api_for(user)))
    return people


def lease(api, project) -> dict:
    response = api.post(f"/api/v1/projects/{project.pk}/next", {"suggest": True}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def submit(api, assignment_id, **body):
    return api.post(f"/api/v1/assignments/{assignment_id}/annotation", body, format="json")


def ids(project, names) -> list[int]:
    found = dict(LabelClass.objects.filter(project=project).values_list("name", "pk"))
    return sorted(found[name] for name in names)


def test_create_multi_label_project_and_its_settings(admin_api):
    body = create(admin_api, allow_empty_tags=False)
    assert body["task_type"] == "multi_label"
    assert body["allow_empty_tags"] is False
    # A single-label-only strategy is refused for a multi-label project, naming the field.
    response = admin_api.post(
        "/api/v1/projects",
        {
            "name": "x",
            "labels": TAGS,
            "encoder": "hashing:4",
            "task_type": "multi_label",
            "acquisition_strategy": "bald",
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "acquisition_strategy" in json.dumps(response.json())
    # ... and a multi-label-only one for a single-label project.
    response = admin_api.post(
        "/api/v1/projects",
        {"name": "y", "labels": TAGS, "encoder": "hashing:4", "acquisition_strategy": "mmc"},
        format="json",
    )
    assert response.status_code == 400, response.content
    # The task type is fixed once the project exists.
    response = admin_api.patch(f"/api/v1/projects/{body['id']}", {"task_type": "text_classification"}, format="json")
    assert response.status_code == 400
    assert "task_type" in response.json()["errors"] if "errors" in response.json() else "task_type" in response.json()


def test_a_project_without_a_strategy_starts_with_its_task_types_default(admin_api):
    # multi-label: the cardinality margin (measured on GoEmotions); single-label keeps msal
    assert create(admin_api)["acquisition_strategy"] == "margin"
    body = {"name": "single", "labels": TAGS, "encoder": "hashing:4"}
    response = admin_api.post("/api/v1/projects", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["acquisition_strategy"] == "msal"
    # a strategy named in the request is kept
    assert create(admin_api, name="named", acquisition_strategy="mmc")["acquisition_strategy"] == "mmc"


def test_two_agreeing_tag_sets_make_the_item_final(ml_project, annotators):
    item = make_items(ml_project, 1)[0]
    enqueue(ml_project, [item])
    (_, ann), (_, bob), _ = annotators
    first = lease(ann, ml_project)["assignment"]
    response = submit(ann, first["id"], labels=["complaint", "refund"])
    assert response.status_code == 201, response.content
    assert response.json()["annotation"]["labels"] == ["refund", "complaint"]  # the project's label order
    assert "label" not in response.json()["annotation"]
    second = lease(bob, ml_project)["assignment"]
    assert second["item"]["id"] == item.pk
    assert submit(bob, second["id"], labels=["refund", "complaint"]).status_code == 201
    item.refresh_from_db()
    assert item.status == ItemStatus.FINALIZED
    assert item.final_label_id is None
    assert item.final_tags == ids(ml_project, ["refund", "complaint"])
    assert item.final_confidence == pytest.approx(1.0)
    assert_queue_consistent(ml_project)


def test_a_split_tag_asks_for_a_third_label_then_the_majority_decides(ml_project, annotators):
    item = make_items(ml_project, 1)[0]
    enqueue(ml_project, [item])
    (_, ann), (_, bob), (_, cat) = annotators
    submit(ann, lease(ann, ml_project)["assignment"]["id"], labels=["refund", "card"])
    submit(bob, lease(bob, ml_project)["assignment"]["id"], labels=["refund"])
    item.refresh_from_db()
    assert item.status != ItemStatus.FINALIZED  # "card" is split 1:1
    third = lease(cat, ml_project)["assignment"]
    assert third is not None and third["item"]["id"] == item.pk
    submit(cat, third["id"], labels=["refund", "card"])
    item.refresh_from_db()
    # With no aggregation yet the vote shares decide: card 2/3 under the 0.8 threshold -> review.
    assert item.status == ItemStatus.IN_REVIEW
    task = ReviewTask.objects.get(item=item)
    assert task.disputed_tags == ids(ml_project, ["card"])
    assert task.posterior[str(ids(ml_project, ["refund"])[0])] == pytest.approx(1.0)


def test_tag_set_answers_are_validated_and_name_the_field(ml_project, annotators):
    make_items(ml_project, 1)
    enqueue(ml_project, list(Item.objects.filter(project=ml_project)))
    (_, ann), _, _ = annotators
    assignment = lease(ann, ml_project)["assignment"]["id"]
    cases = [
        ({"label": "refund"}, "label"),
        ({"labels": ["refund", "nope"]}, "labels"),
        ({"labels": ["refund", "refund"]}, "labels"),
        ({"labels": "refund"}, "labels"),
        ({"labels": ["refund"], "label": "refund"}, "labels"),
    ]
    for body, field in cases:
        response = submit(ann, assignment, **body)
        assert response.status_code == 400, (body, response.content)
        assert field in json.dumps(response.json()), (body, response.json())
    assert not Annotation.objects.filter(project=ml_project).exists()
    # The empty set is an answer where the project allows it ...
    assert submit(ann, assignment, labels=[]).status_code == 201
    assert Annotation.objects.get(project=ml_project).tags == []
    # ... and a change of the answer is a PATCH with another set.
    annotation = Annotation.objects.get(project=ml_project)
    response = ann.patch(f"/api/v1/annotations/{annotation.pk}", {"labels": ["praise"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["annotation"]["labels"] == ["praise"]


def test_empty_set_refused_where_the_project_does_not_allow_it(admin_api, make_user, api_for):
    project = Project.objects.get(pk=create(admin_api, allow_empty_tags=False)["id"])
    user = make_user("dan")
    membership_set(project=project, username="dan", role=Role.ANNOTATOR)
    enqueue(project, make_items(project, 1))
    api = api_for(user)
    assignment = lease(api, project)["assignment"]["id"]
    response = submit(api, assignment, labels=[])
    assert response.status_code == 400
    assert "labels" in response.json()["errors"]


def test_single_label_projects_refuse_tag_sets(project, member, api_for):
    user = member("eve")
    api = api_for(user)
    enqueue(project, make_items(project, 1))
    assignment = lease(api, project)["assignment"]["id"]
    response = submit(api, assignment, labels=["refund"])
    assert response.status_code == 400
    assert "labels" in response.json()["errors"]
    assert submit(api, assignment, label="refund").status_code == 201


def test_ingest_known_tag_sets_json_and_csv(ml_project, admin_api):
    url = f"/api/v1/projects/{ml_project.pk}/items"
    records = [
        {"external_id": "a", "text": "refund and a complaint", "labels": ["refund", "complaint"]},
        {"external_id": "b", "text": "nothing to tag", "labels": []},
        {"external_id": "c", "text": "unlabelled"},
    ]
    response = admin_api.post(url, records, format="json")
    assert response.status_code in (200, 201), response.content
    a = Item.objects.get(project=ml_project, external_id="a")
    assert (a.status, a.final_source, a.final_tags) == (
        ItemStatus.FINALIZED,
        "gold",
        ids(ml_project, ["refund", "complaint"]),
    )
    assert Item.objects.get(project=ml_project, external_id="b").final_tags == []
    assert Item.objects.get(project=ml_project, external_id="c").final_tags is None
    # CSV: names joined by "|".
    csv_body = "external_id,text,labels,honeypot\nd,card lost and I want it back,card|refund,true\ne,no tags,,\n"
    response = admin_api.generic("POST", url, csv_body.encode(), content_type="text/csv")
    assert response.status_code in (200, 201), response.content
    d = Item.objects.get(project=ml_project, external_id="d")
    assert d.final_tags == ids(ml_project, ["card", "refund"]) and d.honeypot
    assert Item.objects.get(project=ml_project, external_id="e").status == ItemStatus.UNLABELED
    # A changed gold set on a re-push replaces the old one.
    response = admin_api.post(
        url, [{"external_id": "a", "text": "refund and a complaint", "labels": ["praise"]}], format="json"
    )
    assert response.status_code in (200, 201), response.content
    assert Item.objects.get(pk=a.pk).final_tags == ids(ml_project, ["praise"])


def test_ingest_rejects_bad_tag_sets_per_record_and_writes_nothing(ml_project, admin_api, project):
    url = f"/api/v1/projects/{ml_project.pk}/items"
    records = [
        {"external_id": "ok", "text": "fine", "labels": ["refund"]},
        {"external_id": "bad1", "text": "x", "labels": ["refund", "unknown"]},
        {"external_id": "bad2", "text": "x", "label": "refund"},
        {"external_id": "bad3", "text": "x", "honeypot": True},
    ]
    response = admin_api.post(url, records, format="json")
    assert response.status_code == 400, response.content
    text = json.dumps(response.json())
    assert "unknown" in text and "labels" in text and "honeypot" in text
    assert not Item.objects.filter(project=ml_project).exists()
    # A single-label project refuses a labels field, naming it.
    response = admin_api.post(
        f"/api/v1/projects/{project.pk}/items", [{"external_id": "z", "text": "z", "labels": ["refund"]}], format="json"
    )
    assert response.status_code == 400
    assert "labels" in json.dumps(response.json())


def _export(api, project, fmt="jsonl") -> str:
    response = api.get(f"/api/v1/projects/{project.pk}/export", {"format": fmt})
    assert response.status_code == 200, response
    return b"".join(response.streaming_content).decode("utf-8")


def test_export_carries_tag_sets_per_tag_confidence_and_the_annotations(ml_project, annotators, admin_api):
    import csv
    import io

    item = make_items(ml_project, 1)[0]
    enqueue(ml_project, [item])
    (_, ann), (_, bob), _ = annotators
    submit(ann, lease(ann, ml_project)["assignment"]["id"], labels=["card", "refund"])
    submit(bob, lease(bob, ml_project)["assignment"]["id"], labels=["refund", "card"])
    admin_api.post(
        f"/api/v1/projects/{ml_project.pk}/items",
        [{"external_id": "g", "text": "gold", "labels": ["praise"]}, {"external_id": "u", "text": "open"}],
        format="json",
    )
    records = {r["external_id"]: r for r in map(json.loads, _export(admin_api, ml_project).splitlines())}
    consensus = records[item.external_id]
    assert consensus["labels"] == ["refund", "card"]  # the project's label order
    assert consensus["tags"] == {"refund": 1.0, "card": 1.0}
    assert consensus["source"] == "consensus" and "label" not in consensus
    assert [a["labels"] for a in consensus["annotations"]] == [["refund", "card"], ["refund", "card"]]
    assert records["g"]["labels"] == ["praise"] and records["g"]["tags"] == {"praise": 1.0}
    assert records["g"]["gold"] is True
    assert records["u"]["labels"] is None and records["u"]["tags"] is None
    rows = {row["external_id"]: row for row in csv.DictReader(io.StringIO(_export(admin_api, ml_project, "csv")))}
    assert rows[item.external_id]["labels"] == "refund|card"
    assert json.loads(rows[item.external_id]["tags"]) == {"refund": 1.0, "card": 1.0}
    assert rows["u"]["labels"] == ""
    # Only decided items with status=final.
    final = [json.loads(line)["external_id"] for line in _export(admin_api, ml_project).splitlines()]
    assert "u" in final
    response = admin_api.get(f"/api/v1/projects/{ml_project.pk}/export", {"status": "final"})
    finals = [json.loads(line)["external_id"] for line in b"".join(response.streaming_content).decode().splitlines()]
    assert sorted(finals) == sorted([item.external_id, "g"])


def test_aggregation_fits_tag_posteriors_agreement_and_the_submit_path_reuses_them(ml_project, annotators):
    """Binary-relevance Dawid-Skene over the project's tag sets: the snapshot carries the MASI
    agreement figures and per-tag kappa, and the submit path's posterior for an item equals the
    fitted one (the stored per-annotator log-odds and the tags' prior log-odds)."""
    import numpy as np

    from annotation.services.aggregation import project_aggregate
    from annotation.services.consensus import item_tag_posterior
    from annotation.tagsets import BinaryRelevanceDawidSkene

    rng = np.random.default_rng(0)
    tag_ids = ids(ml_project, TAGS)
    items = make_items(ml_project, 40)
    users = [user for user, _ in annotators]
    truth = {item.pk: tuple(sorted(t for t in tag_ids if rng.random() < 0.4)) for item in items}
    rows = []
    for item in items:
        for r, user in enumerate(users):
            answer = set(truth[item.pk])
            if r == 2 and rng.random() < 0.5:  # the third annotator adds a wrong tag half the time
                answer ^= {tag_ids[int(rng.integers(len(tag_ids)))]}
            rows.append(Annotation(project=ml_project, item=item, user=user, tags=sorted(answer)))
    Annotation.objects.bulk_create(rows)
    snapshot = project_aggregate(project=ml_project)
    assert snapshot.method == "binary_relevance_ds"
    assert snapshot.label_ids == tag_ids and len(snapshot.priors) == len(TAGS)
    assert snapshot.krippendorff_alpha is not None and -1 <= snapshot.krippendorff_alpha <= 1
    assert len(snapshot.kappa_matrix["per_label"]) == len(TAGS)
    names = {a["username"]: a for a in snapshot.annotators}
    assert names["ann"]["agreement_rate"] > names["cat"]["agreement_rate"]
    # The stored weights reproduce the fitted posterior of an item from its answers.
    item = items[0]
    answers = [(a.user_id, tuple(a.tags)) for a in Annotation.objects.filter(item=item).order_by("id")]
    served = item_tag_posterior(ml_project.pk, answers, snapshot)
    model = BinaryRelevanceDawidSkene()
    user_index = {u.pk: r for r, u in enumerate(sorted(users, key=lambda u: u.pk))}
    all_rows = list(Annotation.objects.filter(project=ml_project).order_by("id"))
    item_index = {i.pk: n for n, i in enumerate(sorted(items, key=lambda i: i.pk))}
    Y = np.array([[int(t in a.tags) for t in tag_ids] for a in all_rows])
    model.fit(
        [item_index[a.item_id] for a in all_rows],
        [user_index[a.user_id] for a in all_rows],
        Y,
        n_items=len(items),
        n_workers=3,
        n_labels=len(tag_ids),
    )
    expected = model.posteriors_[item_index[item.pk]]
    assert [served[t] for t in tag_ids] == pytest.approx(expected.tolist(), abs=1e-4)
