"""No item waits for ever (issue 13, point 2): an item that needs another label when nobody who has
not labelled it can give one goes to review (``no_annotator``), or is final with its low
confidence when nobody could review it either; changes of ``labels_per_item`` /
``max_labels_per_item`` re-route the queue. Projects with exactly two annotators and with one,
through the services and through the API."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from acquisition.models import ScoringRun
from annotation import routing, services
from annotation.models import (
    Assignment,
    Item,
    ItemStatus,
    LabelSource,
    Membership,
    QueueEntry,
    QueueReason,
    ReviewStatus,
    ReviewTask,
    Role,
)
from annotation.routing import Outcome, Policy, ReviewReason
from annotation.selectors import eligible_annotators, labelling_states
from annotation.services import projects as projects_module
from annotation.services.aggregation import project_aggregate
from tests.invariants import assert_queue_consistent, enqueue, make_items

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_refill(recording_supply):
    """Refills are recorded, never requested (no scoring runs are started)."""


@pytest.fixture
def scored(project):
    """A succeeded scoring run: the queue holds only the items a test puts there."""
    return ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)


def take(project, user):
    result = services.assignment_next(project=project, user=user)
    assert result.assignment is not None, result.code
    return result.assignment


def submit(project, user, name):
    assignment = take(project, user)
    services.annotation_submit(assignment_id=assignment.pk, user=user, label=name)
    return assignment.item_id


def pause(project, user):
    Membership.objects.filter(project=project, user=user).update(paused_at=timezone.now(), pause_reason="test")


# --- the pure rule ---------------------------------------------------------------------------


def decide(posterior, labels, *, needed=2, per_item=2, cap=3, conf=0.8, policy=Policy.DISAGREEMENTS, **kwargs):
    return routing.route(
        np.asarray(posterior, dtype=float),
        labels,
        labels_needed=needed,
        labels_per_item=per_item,
        max_labels=cap,
        min_confidence=conf,
        policy=policy,
        **kwargs,
    )


def test_route_sends_an_item_nobody_can_label_to_review():
    # a 1:1 split that would ask for a third label
    assert decide([0.5, 0.5, 0], [0, 1]).outcome is Outcome.EXTRA_LABEL
    decision = decide([0.5, 0.5, 0], [0, 1], can_extend=False)
    assert decision.outcome is Outcome.REVIEW and decision.reason is ReviewReason.NO_ANNOTATOR
    assert decision.value == pytest.approx(1.0)
    # nobody to review it either: final with its (low) confidence
    decision = decide([0.55, 0.45, 0], [0, 1], can_extend=False, has_reviewer=False)
    assert decision.outcome is Outcome.FINAL and decision.label == 0
    assert decision.confidence == pytest.approx(0.55)
    # a confident item is final whoever is left; one at the cap keeps the reasons it always had
    assert decide([0.9, 0.1, 0], [0, 0], can_extend=False).outcome is Outcome.FINAL
    at_cap = decide([0.5, 0.5, 0], [0, 1], cap=2, can_extend=False)
    assert at_cap.reason is ReviewReason.DISAGREEMENT
    assert decide([0.5, 0.5, 0], [0, 1], cap=2, can_extend=False, has_reviewer=False).reason is (
        ReviewReason.DISAGREEMENT
    )


def test_route_an_incomplete_item_only_when_nobody_is_left():
    # one label of the two asked for: review (never final on fewer labels while someone can review)
    decision = decide([1.0, 0, 0], [0], can_extend=False)
    assert decision.outcome is Outcome.REVIEW and decision.reason is ReviewReason.NO_ANNOTATOR
    decision = decide([0.7, 0.3, 0], [0], can_extend=False, has_reviewer=False)
    assert decision.outcome is Outcome.FINAL and decision.confidence == pytest.approx(0.7)
    # two of three labels in the lowest kappa band: reviewed as every multi-labelled item is
    decision = decide([0.5, 0.5, 0], [0, 1], needed=3, per_item=3, policy=Policy.ALL, can_extend=False)
    assert decision.reason is ReviewReason.POLICY_ALL
    with pytest.raises(ValueError, match="incomplete"):
        decide([1.0, 0, 0], [0])


# --- who is left -------------------------------------------------------------------------------


def test_eligible_annotators_are_active_unpaused_labellers(project, member, admin_user, scored):
    a, b = member("a"), member("b")
    reviewer = member("rev", Role.REVIEWER)
    gone = member("gone")
    gone.is_active = False
    gone.save()
    assert eligible_annotators(project) == sorted([a.pk, b.pk])  # the admin and reviewer never labelled
    pause(project, b)
    assert eligible_annotators(project) == [a.pk]
    enqueue(project, make_items(project, 1))
    take(project, reviewer)  # a reviewer who takes items from the queue labels too
    assert eligible_annotators(project) == sorted([a.pk, reviewer.pk])
    assert admin_user.pk not in eligible_annotators(project)


# --- two annotators ------------------------------------------------------------------------------


@pytest.fixture
def two(member):
    return member("a"), member("b")


def test_two_annotators_disagree_and_the_item_goes_to_review_not_in_progress_for_ever(project, two, scored):
    """The issue's bug: labels_per_item 2 / max 3 with two annotators left the 1:1 items in
    progress for ever (an extra-label entry nobody could take)."""
    a, b = two
    assert (project.labels_per_item, project.max_labels_per_item) == (2, 3)
    enqueue(project, make_items(project, 3))
    first = submit(project, a, "refund")
    assert submit(project, b, "other") == first
    item = Item.objects.get(pk=first)
    assert item.status == ItemStatus.IN_REVIEW
    task = ReviewTask.objects.get(item=item)
    assert task.reason == ReviewReason.NO_ANNOTATOR and task.status == ReviewStatus.OPEN
    assert not QueueEntry.objects.filter(item=item).exists()
    # agreement is final as before
    second = submit(project, a, "refund")
    submit(project, b, "refund")
    assert Item.objects.get(pk=second).status == ItemStatus.FINALIZED
    assert_queue_consistent(project)


def test_a_third_annotator_gets_the_extra_label_and_a_paused_one_does_not(project, two, member, scored):
    a, b = two
    c = member("c")
    enqueue(project, make_items(project, 4))
    first = submit(project, a, "refund")
    submit(project, b, "other")
    entry = QueueEntry.objects.get(item_id=first)
    assert entry.reason == QueueReason.EXTRA_LABEL and entry.labels_needed == 3
    pause(project, c)
    second = submit(project, a, "refund")
    submit(project, b, "other")
    assert ReviewTask.objects.get(item_id=second).reason == ReviewReason.NO_ANNOTATOR
    assert_queue_consistent(project)


def test_without_a_reviewer_a_split_is_final_with_its_low_confidence(make_project, make_user, recording_supply):
    """The project's only admin labels too: nobody who has not labelled the item could review it."""
    boss = make_user("boss")
    project = make_project("Pair", user=boss, labels=("refund", "other"))
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)
    ann = make_user("ann")
    services.membership_set(project=project, username="ann", role=Role.ANNOTATOR)
    enqueue(project, make_items(project, 2))
    first = submit(project, boss, "refund")
    assert submit(project, ann, "other") == first
    item = Item.objects.get(pk=first)
    assert item.status == ItemStatus.FINALIZED and item.final_source == LabelSource.CONSENSUS
    assert item.final_confidence == pytest.approx(0.5, abs=0.05)  # a 1:1 split: low, and said so
    assert item.final_confidence < project.min_consensus_confidence
    assert not ReviewTask.objects.filter(item=item).exists()
    assert_queue_consistent(project)


# --- one annotator -------------------------------------------------------------------------------


def test_one_annotator_each_label_goes_to_review_at_once(project, member, scored):
    solo = member("solo")
    enqueue(project, make_items(project, 3))
    first = submit(project, solo, "refund")
    item = Item.objects.get(pk=first)
    assert item.status == ItemStatus.IN_REVIEW
    assert ReviewTask.objects.get(item=item).reason == ReviewReason.NO_ANNOTATOR
    # the annotator goes on with the next item
    assert submit(project, solo, "other") != first
    assert Item.objects.filter(project=project, status=ItemStatus.IN_REVIEW).count() == 2
    assert_queue_consistent(project)


def test_a_lone_admin_labelling_a_project_gets_final_labels(make_project, make_user, recording_supply):
    boss = make_user("boss")
    project = make_project("Solo", user=boss, labels=("refund", "other"))
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)
    enqueue(project, make_items(project, 2))
    first = submit(project, boss, "refund")
    item = Item.objects.get(pk=first)
    assert item.status == ItemStatus.FINALIZED and item.final_label.name == "refund"
    assert item.final_source == LabelSource.CONSENSUS
    assert not QueueEntry.objects.filter(item=item).exists()


def test_the_item_waits_while_someone_else_holds_a_lease(project, two, scored):
    a, b = two
    enqueue(project, make_items(project, 1))
    b_lease = take(project, b)
    first = submit(project, a, "refund")
    assert first == b_lease.item_id
    assert Item.objects.get(pk=first).status == ItemStatus.IN_PROGRESS  # b's label is on its way
    services.annotation_submit(assignment_id=b_lease.pk, user=b, label="refund")
    assert Item.objects.get(pk=first).status == ItemStatus.FINALIZED


def test_when_the_other_annotator_skips_the_item_goes_to_review(project, two, scored):
    a, b = two
    enqueue(project, make_items(project, 2))
    first = submit(project, a, "refund")
    lease = take(project, b)
    assert lease.item_id == first
    services.assignment_skip(assignment_id=lease.pk, user=b, reason="unclear")
    assert Item.objects.get(pk=first).status == ItemStatus.IN_REVIEW
    assert ReviewTask.objects.get(item_id=first).reason == ReviewReason.NO_ANNOTATOR
    assert_queue_consistent(project)


# --- items already waiting are released by the aggregation --------------------------------------


def test_aggregation_releases_items_waiting_for_a_paused_or_removed_annotator(project, two, member, scored):
    a, b = two
    c = member("c")
    member("d")
    items = make_items(project, 4)
    enqueue(project, items)
    split = submit(project, a, "refund")
    submit(project, b, "other")
    half = submit(project, a, "card_lost")  # one label of two
    assert QueueEntry.objects.get(item_id=split).reason == QueueReason.EXTRA_LABEL
    assert QueueEntry.objects.get(item_id=half).labels_taken == 1
    pause(project, c)
    services.membership_remove(project=project, username="d")
    # b skipped the half-labelled item: nobody is left for either
    Assignment.objects.create(
        project=project,
        item_id=half,
        user=b,
        status="skipped",
        leased_at=timezone.now(),
        expires_at=timezone.now(),
        finished_at=timezone.now(),
    )
    states = labelling_states(project, [split, half])
    assert not states[split].can_extend and not states[half].can_extend

    snap = project_aggregate(project=project)

    for item_id in (split, half):
        assert Item.objects.get(pk=item_id).status == ItemStatus.IN_REVIEW
        assert ReviewTask.objects.get(item_id=item_id).reason == ReviewReason.NO_ANNOTATOR
    assert snap.changes["to_review"] == 2
    assert not Item.objects.filter(project=project, status=ItemStatus.IN_PROGRESS).exists()
    assert_queue_consistent(project)


def test_aggregation_leaves_items_someone_can_still_label(project, two, member, scored):
    a, b = two
    member("c")
    enqueue(project, make_items(project, 2))
    split = submit(project, a, "refund")
    submit(project, b, "other")
    project_aggregate(project=project)
    entry = QueueEntry.objects.get(item_id=split)
    assert entry.reason == QueueReason.EXTRA_LABEL and entry.labels_needed == 3


# --- changing labels_per_item / max_labels_per_item re-routes the queue -------------------------


@pytest.fixture
def waiting(project, two, member, scored):
    """Three annotators; a and b split 1:1 on item 0, which waits for c's third label."""
    a, b = two
    c = member("c")
    items = make_items(project, 4)
    enqueue(project, items)
    split = submit(project, a, "refund")
    submit(project, b, "other")
    agreed = submit(project, a, "other")
    assert QueueEntry.objects.get(item_id=split).labels_needed == 3
    return {"a": a, "b": b, "c": c, "split": split, "half": agreed}


def test_lowering_max_labels_releases_the_items_waiting_for_a_label_over_the_new_cap(project, waiting):
    """The issue: lowering max_labels_per_item did not release the items waiting for a third label."""
    services.project_update(project=project, max_labels_per_item=2)
    item = Item.objects.get(pk=waiting["split"])
    assert item.status == ItemStatus.IN_REVIEW
    assert ReviewTask.objects.get(item=item).reason == ReviewReason.DISAGREEMENT
    assert not QueueEntry.objects.filter(item=item).exists()
    # the half-labelled item still waits for its second label (c and b can give it)
    assert QueueEntry.objects.get(item_id=waiting["half"]).labels_needed == 2
    assert_queue_consistent(project)


def test_lowering_labels_per_item_finalises_items_that_now_have_enough(project, waiting):
    services.project_update(project=project, labels_per_item=1, max_labels_per_item=1)
    half = Item.objects.get(pk=waiting["half"])
    assert half.status == ItemStatus.FINALIZED and half.final_label.name == "other"
    assert Item.objects.get(pk=waiting["split"]).status == ItemStatus.IN_REVIEW
    # untouched entries ask for one label now
    assert set(QueueEntry.objects.filter(project=project).values_list("labels_needed", flat=True)) == {1}
    assert_queue_consistent(project)


def test_raising_labels_per_item_asks_started_items_for_more(project, waiting):
    services.project_update(project=project, labels_per_item=3, max_labels_per_item=4)
    assert QueueEntry.objects.get(item_id=waiting["half"]).labels_needed == 3
    assert QueueEntry.objects.get(item_id=waiting["split"]).labels_needed == 3
    assert_queue_consistent(project)


def test_a_live_lease_over_the_new_cap_is_kept_and_routed_on_submit(project, waiting):
    lease = take(project, waiting["c"])
    assert lease.item_id == waiting["split"]
    services.project_update(project=project, max_labels_per_item=2)
    entry = QueueEntry.objects.get(item_id=waiting["split"])
    assert entry.labels_needed == 3 and entry.labels_taken == 3  # a lease cannot be taken back
    services.annotation_submit(assignment_id=lease.pk, user=waiting["c"], label="card_lost")
    task = ReviewTask.objects.get(item_id=waiting["split"])
    assert task.reason == ReviewReason.MAX_LABELS
    assert_queue_consistent(project)


def test_settings_change_is_atomic_with_the_reroute(project, waiting, monkeypatch):
    def boom(**kwargs):
        raise RuntimeError("routing failed")

    monkeypatch.setattr(projects_module, "entry_route_if_complete", boom)
    with pytest.raises(RuntimeError):
        services.project_update(project=project, max_labels_per_item=2)
    project.refresh_from_db()
    assert project.max_labels_per_item == 3
    assert QueueEntry.objects.get(item_id=waiting["split"]).labels_needed == 3


# --- through the API -------------------------------------------------------------------------------


def api_submit(api, project, label):
    body = api.post(f"/api/v1/projects/{project.pk}/next", {}, format="json").json()
    assignment = body["assignment"]
    assert assignment is not None, body
    response = api.post(f"/api/v1/assignments/{assignment['id']}/annotation", {"label": label}, format="json")
    assert response.status_code == 201, response.content
    return assignment["item"]["id"]


def test_two_annotators_through_the_api(project, two, member, api_for, admin_api, scored):
    a, b = two
    reviewer = member("rev", Role.REVIEWER)
    enqueue(project, make_items(project, 3))
    first = api_submit(api_for(a), project, "refund")
    assert api_submit(api_for(b), project, "other") == first
    body = api_for(reviewer).get(f"/api/v1/projects/{project.pk}/reviews?status=open").json()
    reviews = body["results"] if isinstance(body, dict) else body
    assert [r["item"]["id"] for r in reviews] == [first]
    review = reviews[0]
    assert review["reason"] == "no_annotator"
    assert "no annotator who has not labelled it" in review["reason_text"]
    assert "1-1 split of 2 labels" in review["reason_text"]
    assert review["reason_facts"]["labels"] == 2
    assert review["reason_facts"]["threshold"] == pytest.approx(project.min_consensus_confidence)


def test_one_annotator_through_the_api(project, member, api_for, scored):
    solo = member("solo")
    enqueue(project, make_items(project, 2))
    first = api_submit(api_for(solo), project, "card_lost")
    assert Item.objects.get(pk=first).status == ItemStatus.IN_REVIEW
    assert ReviewTask.objects.get(item_id=first).reason == ReviewReason.NO_ANNOTATOR


def test_patch_lowering_max_labels_releases_waiting_items(project, waiting, admin_api):
    response = admin_api.patch(f"/api/v1/projects/{project.pk}", {"max_labels_per_item": 2}, format="json")
    assert response.status_code == 200, response.content
    assert Item.objects.get(pk=waiting["split"]).status == ItemStatus.IN_REVIEW
    assert not Item.objects.filter(pk=waiting["split"], status=ItemStatus.IN_PROGRESS).exists()


def test_dashboard_settings_form_lowering_max_labels_releases_waiting_items(project, waiting, admin_user, client_for):
    response = client_for(admin_user).post(
        f"/projects/{project.pk}/dashboard", {"max_labels_per_item": "2"}, follow=True
    )
    assert response.status_code == 200 and "Settings saved" in response.content.decode()
    assert Item.objects.get(pk=waiting["split"]).status == ItemStatus.IN_REVIEW
    assert ReviewTask.objects.get(item_id=waiting["split"]).reason == ReviewReason.DISAGREEMENT


def test_patch_with_bad_label_counts_changes_nothing(project, waiting, admin_api):
    response = admin_api.patch(f"/api/v1/projects/{project.pk}", {"max_labels_per_item": 1}, format="json")
    assert response.status_code == 400
    assert "max_labels_per_item" in response.content.decode()
    assert QueueEntry.objects.get(item_id=waiting["split"]).labels_needed == 3
