"""Expert review and agreement through the REST API: shapes, claims, resolution, idempotency,
permissions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import (
    AggregationState,
    AgreementSnapshot,
    Annotation,
    Item,
    ItemStatus,
    LabelClass,
    LabelSource,
    ReviewStatus,
    ReviewTask,
    Role,
)
from annotation.routing import review_reason_text
from annotation.services.aggregation import project_aggregate
from quorum.errors import Conflict, PermissionDenied
from tests.invariants import make_items

pytestmark = pytest.mark.django_db


def label(project, name):
    return LabelClass.objects.get(project=project, name=name)


@pytest.fixture
def people(member):
    return {
        "ann1": member("ann1"),
        "ann2": member("ann2"),
        "rev": member("rev", Role.REVIEWER),
        "rev2": member("rev2", Role.REVIEWER),
    }


@pytest.fixture
def tasks(project, people):
    """Three open review tasks: item 0 a 1:1 split (hardest), items 1 and 2 easier."""
    items = make_items(project, 3)
    refund, other = label(project, "refund"), label(project, "other")
    out = []
    for i, item in enumerate(items):
        Annotation.objects.create(project=project, item=item, user=people["ann1"], label=refund)
        Annotation.objects.create(project=project, item=item, user=people["ann2"], label=other)
        Item.objects.filter(pk=item.pk).update(status=ItemStatus.IN_REVIEW)
        p = 0.5 if i == 0 else 0.7
        out.append(
            ReviewTask.objects.create(
                project=project,
                item=item,
                reason="disagreement",
                priority=1 - (p - (1 - p)),
                posterior={str(refund.pk): p, str(other.pk): 1 - p},
                model_label=other if i == 0 else None,
                model_confidence=0.6 if i == 0 else None,
            )
        )
    return out


def reviews_url(project, query=""):
    return f"/api/v1/projects/{project.pk}/reviews{query}"


def test_review_detail_shape(project, people, tasks, api_for):
    response = api_for(people["rev"]).get(f"/api/v1/reviews/{tasks[0].pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {
        "id",
        "item",
        "reason",
        "reason_text",
        "reason_facts",
        "status",
        "created_at",
        "annotations",
        "posterior",
        "model_prediction",
        "claimed_by",
        "resolved_by",
        "resolved_at",
        "decision",
        "note",
    }
    assert body["item"]["external_id"] == "t-0" and body["item"]["text"] == "text 0"
    assert [(a["username"], a["label"]) for a in body["annotations"]] == [("ann1", "refund"), ("ann2", "other")]
    assert all(a["annotator_quality"] is None for a in body["annotations"])  # no aggregation yet
    assert body["posterior"] == [{"label": "refund", "p": 0.5}, {"label": "other", "p": 0.5}]
    assert body["model_prediction"] == {"label": "other", "confidence": 0.6}
    assert body["status"] == "open" and body["decision"] is None and body["claimed_by"] is None
    assert body["reason_text"] == "No label holds a majority: a 1-1 split of 2 labels"
    assert body["reason_facts"] == {
        "labels": 2,
        "votes": [{"label": "refund", "n": 1}, {"label": "other", "n": 1}],
        "confidence": 0.5,
        "threshold": 0.8,
    }


def test_annotator_quality_shows_after_an_aggregation(project, people, tasks, api_for):
    project_aggregate(project=project)
    body = api_for(people["rev"]).get(f"/api/v1/reviews/{tasks[1].pk}").json()
    assert all(isinstance(a["annotator_quality"], float) for a in body["annotations"])
    assert body["posterior"][0]["p"] >= body["posterior"][-1]["p"]


def test_list_filters_by_status_newest_first(project, people, tasks, api_for):
    api = api_for(people["rev"])
    body = api.get(reviews_url(project, "?status=open")).json()
    assert [r["id"] for r in body["results"]] == [t.pk for t in reversed(tasks)]
    services.review_resolve(review_id=tasks[1].pk, user=people["rev"], label="refund")
    assert [r["id"] for r in api.get(reviews_url(project, "?status=resolved")).json()["results"]] == [tasks[1].pk]
    assert len(api.get(reviews_url(project)).json()["results"]) == 3
    bad = api.get(reviews_url(project, "?status=maybe"))
    assert bad.status_code == 400 and "status" in bad.json()["errors"]


def test_next_claims_hardest_first_and_never_twice(project, people, tasks, api_for):
    rev, rev2 = api_for(people["rev"]), api_for(people["rev2"])
    url = reviews_url(project, "/next")
    first = rev.post(url).json()
    assert first["review"]["id"] == tasks[0].pk and first["open"] == 3
    assert first["review"]["claimed_by"] == "rev"
    assert rev.post(url).json()["review"]["id"] == tasks[0].pk  # my claim again, not a second one
    second = rev2.post(url).json()["review"]
    assert second["id"] == tasks[1].pk  # equal priority: the older one
    assert rev2.post(url).json()["review"]["id"] == tasks[1].pk
    # an expired claim is free for others
    ReviewTask.objects.filter(pk=tasks[0].pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    ReviewTask.objects.filter(pk=tasks[1].pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert rev2.post(url).json()["review"]["id"] == tasks[0].pk


def test_next_is_null_when_nothing_is_open(project, people, api_for):
    body = api_for(people["rev"]).post(reviews_url(project, "/next")).json()
    assert body == {"review": None, "open": 0}


def test_resolve_finalises_the_item_and_requests_an_aggregation(project, people, tasks, api_for):
    api = api_for(people["rev"])
    url = f"/api/v1/reviews/{tasks[0].pk}/resolve"
    response = api.post(url, {"label": "other", "note": "refund is for money back"}, format="json")
    assert response.status_code == 200, response.content
    review = response.json()["review"]
    assert review["status"] == "resolved" and review["decision"] == "other" and review["resolved_by"] == "rev"
    assert review["note"] == "refund is for money back" and review["resolved_at"] is not None
    item = Item.objects.get(pk=tasks[0].item_id)
    assert item.status == ItemStatus.FINALIZED and item.final_label.name == "other"
    assert item.final_source == LabelSource.REVIEW and item.final_confidence == 1.0
    assert AggregationState.objects.get(project=project).requested_at is not None
    # the same decision again: 200, unchanged
    again = api.post(url, {"label": "other"}, format="json")
    assert again.status_code == 200 and again.json()["review"]["note"] == "refund is for money back"
    # another label, or another reviewer: 409
    assert api.post(url, {"label": "refund"}, format="json").status_code == 409
    other = api_for(people["rev2"]).post(url, {"label": "other"}, format="json")
    assert other.status_code == 409 and other.json()["code"] == "already_resolved"


def test_resolve_validates_the_label(project, people, tasks, api_for):
    api = api_for(people["rev"])
    url = f"/api/v1/reviews/{tasks[0].pk}/resolve"
    response = api.post(url, {"label": "nope"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "unknown_label"
    assert api.post(url, {}, format="json").status_code == 400
    assert ReviewTask.objects.get(pk=tasks[0].pk).status == ReviewStatus.OPEN


def test_review_decisions_become_gold_for_the_next_aggregation(project, people, tasks):
    services.review_resolve(review_id=tasks[0].pk, user=people["rev"], label="other")
    snap = project_aggregate(project=project)
    assert snap.n_gold == 1
    by_name = {a["username"]: a for a in snap.annotators}
    assert by_name["ann2"]["gold_accuracy"] == 1.0 and by_name["ann1"]["gold_accuracy"] == 0.0
    assert Item.objects.get(pk=tasks[0].item_id).final_source == LabelSource.REVIEW


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/reviews/{task}", None),
        ("post", "/api/v1/reviews/{task}/resolve", {"label": "refund"}),
        ("get", "/api/v1/projects/{project}/reviews", None),
        ("post", "/api/v1/projects/{project}/reviews/next", None),
        ("get", "/api/v1/projects/{project}/agreement", None),
        ("post", "/api/v1/projects/{project}/agreement", None),
    ],
)
def test_permissions(project, people, tasks, api_for, make_user, method, path, body):
    url = path.format(task=tasks[0].pk, project=project.pk)

    def call(user):
        return getattr(api_for(user), method)(url, body, format="json")

    assert call(people["ann1"]).status_code == 403
    assert call(make_user("stranger")).status_code == 404
    assert call(None).status_code in (401, 403)
    assert ReviewTask.objects.get(pk=tasks[0].pk).status == ReviewStatus.OPEN


def test_services_check_roles(project, people, tasks, make_user):
    with pytest.raises(PermissionDenied):
        services.review_resolve(review_id=tasks[0].pk, user=people["ann1"], label="refund")
    with pytest.raises(PermissionDenied):
        services.review_next(project=project, user=people["ann1"])
    services.review_resolve(review_id=tasks[0].pk, user=people["rev"], label="refund")
    with pytest.raises(Conflict):
        services.review_resolve(review_id=tasks[0].pk, user=people["rev"], label="other")


def test_admins_review_too(project, admin_api, tasks):
    assert (
        admin_api.post(f"/api/v1/reviews/{tasks[2].pk}/resolve", {"label": "refund"}, format="json").status_code == 200
    )


def test_agreement_before_and_after_an_aggregation(project, people, tasks, admin_api, api_for):
    url = f"/api/v1/projects/{project.pk}/agreement"
    empty = api_for(people["rev"]).get(url)
    assert empty.status_code == 200
    body = empty.json()
    assert body["computed_at"] is None and body["project_kappa"] is None and body["policy"] is None
    assert body["annotators"] == [] and body["kappa_matrix"] == {"annotators": [], "values": []}
    assert api_for(people["rev"]).post(url).status_code == 403  # recomputing is for admins
    response = admin_api.post(url)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["computed_at"] is not None and body["policy"] == "disagreements"  # too little overlap yet
    assert {a["username"] for a in body["annotators"]} == {"ann1", "ann2"}
    assert body["kappa_matrix"]["annotators"] == [a["username"] for a in body["annotators"]]
    assert body["n_annotations"] == 6 and AgreementSnapshot.objects.filter(project=project).count() == 1
    assert api_for(people["rev"]).get(url).json()["computed_at"] == body["computed_at"]


@pytest.mark.django_db(transaction=True)
def test_racing_reviewers_never_get_the_same_task(project, make_user):
    """Each thread on its own connection: SKIP LOCKED on PostgreSQL, serialised writers on SQLite."""
    from collections import Counter

    from annotation.models import Membership
    from tests.test_concurrency import run_threads

    reviewers = [make_user(f"racer-rev{i}") for i in range(6)]
    Membership.objects.bulk_create([Membership(project=project, user=u, role=Role.REVIEWER) for u in reviewers])
    items = make_items(project, 10)
    ReviewTask.objects.bulk_create(
        [ReviewTask(project=project, item=item, reason="disagreement", priority=0.5) for item in items]
    )
    handed = Counter()

    def review_all(user):
        while True:
            result = services.review_next(project=project, user=user)
            if result.review is None:
                return
            handed[result.review.pk] += 1
            services.review_resolve(review_id=result.review.pk, user=user, label="refund")

    run_threads(review_all, [(user,) for user in reviewers])
    assert sorted(handed) == sorted(ReviewTask.objects.values_list("id", flat=True))
    assert set(handed.values()) == {1}
    assert not ReviewTask.objects.filter(status=ReviewStatus.OPEN).exists()
    assert (
        Item.objects.filter(project=project, status=ItemStatus.FINALIZED, final_source=LabelSource.REVIEW).count() == 10
    )


# --- honest chips (issue 13, point 6) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "votes", "confidence", "says", "never"),
    [
        # a 2:1 item sent to review at the cap has a majority: it is unresolved, not "no majority"
        (
            "max_labels",
            [2, 1],
            2 / 3,
            ["Unresolved after 3 labels", "2-1 split", "67 %", "under the 80 %"],
            ["majority"],
        ),
        ("max_labels", [1, 1, 1], 1 / 3, ["No label holds a majority", "1-1-1 split of 3 labels"], ["under"]),
        # a posterior that rose past the threshold is never called "under" it
        ("low_confidence", [2], 0.92, ["92 %", "at or above the 80 % threshold"], ["under 80", "under the 80"]),
        ("low_confidence", [2], 0.7, ["Consensus 70 %, under the 80 % threshold", "2 labels, all the same"], []),
        # a figure that rounds onto the threshold gets the decimals that tell them apart
        ("low_confidence", [1, 1], 0.796, ["79.6 %", "under the 80 %"], ["80 %,"]),
        ("disagreement", [1, 1], 0.5, ["No label holds a majority: a 1-1 split of 2 labels"], []),
        ("disagreement", [2, 1], 0.9, ["now a 2-1 split", "90 %"], ["No label holds"]),
        ("no_annotator", [1, 1], 0.5, ["no annotator who has not labelled it", "1-1 split", "50 %"], []),
        ("no_annotator", [1], None, ["1 label", "no consensus estimate yet"], []),
        ("policy_all", [2], 1.0, ["every item with two or more labels", "kappa under 0.60"], ["majority"]),
    ],
)
def test_review_reason_text_states_the_actual_figures(reason, votes, confidence, says, never):
    text = review_reason_text(reason, votes=votes, confidence=confidence, threshold=0.8, review_all_below_kappa=0.6)
    for words in says:
        assert words in text
    for words in never:
        assert words not in text


def test_chip_of_a_low_confidence_task_whose_posterior_rose_is_not_under_the_threshold(project, people, api_for):
    item = make_items(project, 1, prefix="rose")[0]
    refund = label(project, "refund")
    for user in (people["ann1"], people["ann2"]):
        Annotation.objects.create(project=project, item=item, user=user, label=refund)
    task = ReviewTask.objects.create(
        project=project, item=item, reason="low_confidence", priority=0.1, posterior={str(refund.pk): 0.92}
    )
    body = api_for(people["rev"]).get(f"/api/v1/reviews/{task.pk}").json()
    assert "now consensus 92 %, at or above the 80 % threshold" in body["reason_text"]
    assert "under the 80" not in body["reason_text"]
    assert body["reason_facts"]["confidence"] == pytest.approx(0.92)
    # the threshold shown is the one in force
    project.min_consensus_confidence = 0.95
    project.save()
    body = api_for(people["rev"]).get(f"/api/v1/reviews/{task.pk}").json()
    assert "92 %, under the 95 % threshold" in body["reason_text"]


def test_a_stale_reason_does_not_survive_a_re_aggregation(project, people, api_for):
    """An open task's reason and posterior are refreshed by the aggregation: a 1:1 item within
    labels_per_item labels is a disagreement, not "max_labels"; a split item is not "low_confidence"."""
    refund, other = label(project, "refund"), label(project, "other")
    stale = {}
    for n, old_reason in enumerate(["max_labels", "low_confidence"]):
        item = make_items(project, 1, prefix=f"stale{n}")[0]
        Annotation.objects.create(project=project, item=item, user=people["ann1"], label=refund)
        Annotation.objects.create(project=project, item=item, user=people["ann2"], label=other)
        Item.objects.filter(pk=item.pk).update(status=ItemStatus.IN_REVIEW)
        stale[old_reason] = ReviewTask.objects.create(
            project=project, item=item, reason=old_reason, priority=0.0, posterior={str(refund.pk): 0.9}
        )
    snapshot = project_aggregate(project=project)
    assert snapshot.changes["review_reasons"] == 2
    for task in stale.values():
        task.refresh_from_db()
        assert task.reason == "disagreement"
        # the stale 90 % is gone: a 1:1 split of two unknown annotators is no better than even
        assert task.posterior[str(refund.pk)] == pytest.approx(task.posterior[str(other.pk)], abs=0.05)
        assert task.posterior[str(refund.pk)] <= 0.55
        body = api_for(people["rev"]).get(f"/api/v1/reviews/{task.pk}").json()
        assert body["reason_text"] == "No label holds a majority: a 1-1 split of 2 labels"
    # nothing moved: a second aggregation rewrites nothing
    assert project_aggregate(project=project).changes["review_reasons"] == 0


def test_no_annotator_and_label_error_reasons_are_kept_by_the_aggregation(project, people):
    refund, other = label(project, "refund"), label(project, "other")
    item = make_items(project, 1, prefix="kept")[0]
    Annotation.objects.create(project=project, item=item, user=people["ann1"], label=refund)
    Annotation.objects.create(project=project, item=item, user=people["ann2"], label=other)
    Item.objects.filter(pk=item.pk).update(status=ItemStatus.IN_REVIEW)
    task = ReviewTask.objects.create(project=project, item=item, reason="no_annotator", priority=1.0)
    project_aggregate(project=project)
    task.refresh_from_db()
    assert task.reason == "no_annotator" and task.posterior  # posterior refreshed, reason kept
