"""The queue's rules through the services: overlap, leases, expiry, skip, submit, change, undo,
the consensus rule on the submit path, refill requests and the fallback order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from acquisition.models import ScoringRun
from annotation import ports, services
from annotation.models import (
    Annotation,
    Assignment,
    AssignmentStatus,
    Item,
    ItemStatus,
    LabelClass,
    LabelSource,
    QueueEntry,
    QueueReason,
)
from annotation.routing import Outcome, Policy, route, vote_shares
from annotation.services import leases
from loop.supply import ScoringSupply
from quorum.errors import Conflict, NotFound, ServiceError
from tests.invariants import assert_queue_consistent, enqueue, make_items

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def refill_calls(recording_supply, settings):
    """Record refill requests (project ids) instead of starting scoring runs (tests that need
    another queue supply install it). Expired leases are swept on every call."""
    settings.QUORUM_LEASE_SWEEP_SECONDS = 0
    return recording_supply.requests


@pytest.fixture
def annotators(member):
    return [member(f"ann{i}") for i in range(5)]


@pytest.fixture
def queued(project):
    items = make_items(project, 6)
    enqueue(project, items)
    return items


def label(project, name):
    return LabelClass.objects.get(project=project, name=name)


def take(project, user, held=()):
    result = services.assignment_next(project=project, user=user, held=held)
    assert result.assignment is not None, result.code
    return result.assignment


def submit(assignment, user, name="refund", ms=1200):
    return services.annotation_submit(assignment_id=assignment.pk, user=user, label=name, time_spent_ms=ms)


def expire(assignment):
    Assignment.objects.filter(pk=assignment.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


# --- handing out items -----------------------------------------------------------------------


def test_next_leases_the_highest_priority_item(project, annotators, queued):
    before = timezone.now()
    assignment = take(project, annotators[0])
    assert assignment.item_id == queued[0].pk
    assert assignment.status == AssignmentStatus.LEASED
    assert before + timedelta(seconds=project.lease_seconds) <= assignment.expires_at
    entry = QueueEntry.objects.get(item=queued[0])
    assert entry.labels_taken == 1
    assert Item.objects.get(pk=queued[0].pk).status == ItemStatus.IN_PROGRESS
    assert_queue_consistent(project)


def test_overlap_gives_each_item_labels_per_item_distinct_annotators(project, annotators, queued):
    a, b, c = annotators[:3]
    assert take(project, a).item_id == queued[0].pk
    assert take(project, b).item_id == queued[0].pk
    assert take(project, c).item_id == queued[1].pk  # item 0 is full (2 of 2)
    assert QueueEntry.objects.get(item=queued[0]).labels_taken == 2
    assert_queue_consistent(project)


def test_an_annotator_never_gets_an_item_twice(project, annotators, queued):
    a = annotators[0]
    first = take(project, a)
    submit(first, a)
    second = take(project, a)
    assert second.item_id != first.item_id
    submit(second, a)
    seen = set(Assignment.objects.filter(user=a).values_list("item_id", flat=True))
    assert len(seen) == 2
    assert_queue_consistent(project)


def test_queue_empty_when_nothing_is_left_for_the_user(project, annotators, queued):
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)
    a = annotators[0]
    for _ in queued:
        submit(take(project, a), a)
    result = services.assignment_next(project=project, user=a)
    assert result.assignment is None and result.code == "queue_empty"
    assert_queue_consistent(project)


def test_reload_returns_the_live_lease_instead_of_a_new_one(project, annotators, queued):
    a = annotators[0]
    first = take(project, a)
    again = take(project, a)  # a page reload: the client holds nothing
    assert again.pk == first.pk
    assert Assignment.objects.filter(user=a).count() == 1
    assert QueueEntry.objects.get(item_id=first.item_id).labels_taken == 1


def test_prefetch_and_lease_limit(project, annotators, queued):
    a = annotators[0]
    current = take(project, a)
    prefetched = take(project, a, held=[current.pk])
    assert prefetched.pk != current.pk
    limited = services.assignment_next(project=project, user=a, held=[current.pk, prefetched.pk])
    assert limited.assignment is None and limited.code == "lease_limit"
    # a reload that only shows the current item gets the prefetched one back, not a third
    assert take(project, a, held=[current.pk]).pk == prefetched.pk
    assert Assignment.objects.filter(user=a, status=AssignmentStatus.LEASED).count() == services.MAX_LIVE_LEASES
    # submitting the current one makes room again
    submit(current, a)
    third = take(project, a, held=[prefetched.pk])
    assert third.pk not in (current.pk, prefetched.pk)
    assert_queue_consistent(project)


def test_held_ids_of_other_users_are_ignored(project, annotators, queued):
    a, b = annotators[:2]
    foreign = take(project, b)
    assignment = take(project, a, held=[foreign.pk, 999999])
    assert assignment.user_id == a.pk


def test_suggestion_and_reason_come_with_the_entry(project, annotators):
    items = make_items(project, 2)
    enqueue(project, items, suggested_label_id=label(project, "other").pk, suggested_confidence=0.7)
    result = services.assignment_next(project=project, user=annotators[0])
    assert result.entry.suggested_label.name == "other"
    assert result.entry.reason == QueueReason.ACQUISITION


# --- leases that run out ---------------------------------------------------------------------


def test_an_expired_lease_returns_its_slot(project, annotators, queued):
    a, b, c = annotators[:3]
    stale = take(project, a)
    take(project, b)
    expire(stale)
    assert take(project, c).item_id == stale.item_id  # the freed slot of item 0
    stale.refresh_from_db()
    assert stale.status == AssignmentStatus.EXPIRED and stale.finished_at is not None
    assert QueueEntry.objects.get(item_id=stale.item_id).labels_taken == 2
    assert_queue_consistent(project)


def test_the_sweep_expires_each_lease_once(project, annotators, queued):
    stale = take(project, annotators[0])
    expire(stale)
    assert services.leases_expire(project=project) == 1
    assert services.leases_expire(project=project) == 0
    entry = QueueEntry.objects.get(item_id=stale.item_id)
    assert entry.labels_taken == 0
    assert Item.objects.get(pk=stale.item_id).status == ItemStatus.QUEUED
    assert_queue_consistent(project)


def test_an_expired_lease_of_the_same_user_is_renewed_not_duplicated(project, annotators, queued):
    a = annotators[0]
    stale = take(project, a)
    expire(stale)
    renewed = take(project, a)  # the sweep frees it, then the same item is the top again
    assert renewed.pk == stale.pk and renewed.status == AssignmentStatus.LEASED
    assert renewed.expires_at > timezone.now()
    assert Assignment.objects.filter(user=a).count() == 1
    assert_queue_consistent(project)


def test_submit_on_an_expired_lease_is_accepted_while_the_slot_is_free(project, annotators, queued):
    a = annotators[0]
    stale = take(project, a)
    expire(stale)
    services.leases_expire(project=project)
    result = submit(stale, a)
    assert result.created
    assert QueueEntry.objects.get(item_id=stale.item_id).labels_taken == 1
    assert_queue_consistent(project)


def test_submit_on_an_expired_lease_whose_slot_went_to_others_is_refused(project, annotators, queued):
    a, b, c = annotators[:3]
    stale = take(project, a)
    take(project, b)
    expire(stale)
    take(project, c)  # sweeps a's lease and takes its slot
    with pytest.raises(Conflict) as caught:
        submit(stale, a)
    assert caught.value.code == "lease_expired" and caught.value.status_code == 409
    assert not Annotation.objects.filter(user=a).exists()
    assert_queue_consistent(project)


def test_submit_after_the_deadline_but_before_any_sweep_is_accepted(project, annotators, queued):
    a = annotators[0]
    stale = take(project, a)
    expire(stale)  # still "leased": its slot was never given away
    assert submit(stale, a).created
    assert_queue_consistent(project)


# --- skip ------------------------------------------------------------------------------------


def test_skip_returns_the_slot_and_the_item_never_comes_back(project, annotators, queued):
    a, b = annotators[:2]
    first = take(project, a)
    skipped = services.assignment_skip(assignment_id=first.pk, user=a, reason="not English")
    assert skipped.status == AssignmentStatus.SKIPPED and skipped.skip_reason == "not English"
    assert QueueEntry.objects.get(item_id=first.item_id).labels_taken == 0
    assert take(project, b).item_id == first.item_id  # others get it
    for _ in range(len(queued) - 1):
        assignment = take(project, a)
        assert assignment.item_id != first.item_id
        submit(assignment, a)
    assert_queue_consistent(project)


def test_skip_twice_is_harmless_and_a_labelled_item_cannot_be_skipped(project, annotators, queued):
    a = annotators[0]
    first = take(project, a)
    services.assignment_skip(assignment_id=first.pk, user=a)
    services.assignment_skip(assignment_id=first.pk, user=a)
    assert QueueEntry.objects.get(item_id=first.item_id).labels_taken == 0
    second = take(project, a)
    submit(second, a)
    with pytest.raises(Conflict) as caught:
        services.assignment_skip(assignment_id=second.pk, user=a)
    assert caught.value.code == "already_submitted"
    with pytest.raises(Conflict) as caught:
        submit(first, a)
    assert caught.value.code == "skipped"
    assert_queue_consistent(project)


def test_skip_of_someone_elses_assignment_is_not_found(project, annotators, queued):
    foreign = take(project, annotators[1])
    with pytest.raises(NotFound):
        services.assignment_skip(assignment_id=foreign.pk, user=annotators[0])


# --- submit ----------------------------------------------------------------------------------


def test_submit_records_label_time_and_closes_the_lease(project, annotators, queued):
    a = annotators[0]
    assignment = take(project, a)
    result = submit(assignment, a, "card_lost", ms=4321)
    assert result.created
    annotation = result.annotation
    assert annotation.label.name == "card_lost" and annotation.time_spent_ms == 4321
    assert annotation.assignment_id == assignment.pk and annotation.user_id == a.pk
    assignment.refresh_from_db()
    assert assignment.status == AssignmentStatus.SUBMITTED and assignment.finished_at is not None
    assert_queue_consistent(project)


def test_resubmission_is_idempotent(project, annotators, queued):
    a = annotators[0]
    assignment = take(project, a)
    first = submit(assignment, a, "refund")
    again = submit(assignment, a, "refund")
    assert not again.created and again.annotation.pk == first.annotation.pk
    assert Annotation.objects.filter(user=a).count() == 1
    changed = submit(assignment, a, "other")
    assert not changed.created and changed.annotation.pk == first.annotation.pk
    assert Annotation.objects.get(pk=first.annotation.pk).label.name == "other"
    assert_queue_consistent(project)


def test_submit_checks_the_label_and_the_holder(project, annotators, queued):
    a, b = annotators[:2]
    assignment = take(project, a)
    with pytest.raises(ServiceError) as caught:
        submit(assignment, a, "refnud")
    assert caught.value.code == "unknown_label"
    message = caught.value.detail["errors"]["label"]
    assert "'refnud'" in message and "'refund'" in message and "'card_lost'" in message
    with pytest.raises(ServiceError):
        submit(assignment, a, "")
    with pytest.raises(NotFound):
        submit(assignment, b)
    with pytest.raises(NotFound):
        services.annotation_submit(assignment_id=987654, user=a, label="refund")
    with pytest.raises(ServiceError) as caught:
        submit(assignment, a, ms=-1)
    assert caught.value.code == "invalid_time_spent"
    assert not Annotation.objects.exists()
    assert_queue_consistent(project)


def test_a_label_of_another_project_is_unknown(project, annotators, queued, make_project):
    make_project("Other", labels=("elsewhere",))
    a = annotators[0]
    with pytest.raises(ServiceError) as caught:
        submit(take(project, a), a, "elsewhere")
    assert caught.value.code == "unknown_label"


# --- consensus (majority-vote shares before any aggregation; Dawid-Skene in test_consensus) ---


@pytest.mark.parametrize(
    ("labels", "needed", "cap", "outcome", "confidence"),
    [
        ([1, 1], 2, 3, Outcome.FINAL, 1.0),
        ([1, 2], 2, 3, Outcome.EXTRA_LABEL, None),
        ([1, 2], 2, 2, Outcome.REVIEW, None),
        ([1, 2, 1], 3, 3, Outcome.FINAL, 2 / 3),
        ([1, 2, 3], 3, 4, Outcome.EXTRA_LABEL, None),
        ([1, 1, 2, 2], 4, 4, Outcome.REVIEW, None),
        ([0], 1, 1, Outcome.FINAL, 1.0),
    ],
)
def test_vote_share_decision(labels, needed, cap, outcome, confidence):
    """With majority-vote shares as the posterior and a 0.6 threshold, the rule is the plain
    majority rule: a strict majority is final, anything else asks for a label, then review."""
    decision = route(
        vote_shares(labels, 4),
        labels,
        labels_needed=needed,
        labels_per_item=2,
        max_labels=cap,
        min_confidence=0.6,
        policy=Policy.DISAGREEMENTS,
    )
    assert decision.outcome == outcome
    if confidence is None:
        assert decision.label is None and decision.confidence is None
    else:
        assert decision.label == max(set(labels), key=labels.count)
        assert decision.confidence == pytest.approx(confidence)


def test_agreement_finalises_the_item(project, annotators, queued):
    a, b = annotators[:2]
    first, second = take(project, a), take(project, b)
    submit(first, a, "card_lost")
    assert Item.objects.get(pk=first.item_id).status == ItemStatus.IN_PROGRESS
    submit(second, b, "card_lost")
    item = Item.objects.get(pk=first.item_id)
    assert item.status == ItemStatus.FINALIZED
    assert item.final_label.name == "card_lost" and item.final_confidence == 1.0
    assert item.final_source == LabelSource.CONSENSUS and item.finalized_at is not None
    assert not QueueEntry.objects.filter(item=item).exists()
    assert_queue_consistent(project)


def test_disagreement_asks_for_one_more_label_then_finalises(project, annotators, queued):
    project.min_consensus_confidence = 0.6  # a 2:1 majority is enough
    project.save()
    a, b, c = annotators[:3]
    submit(take(project, a), a, "refund")
    submit(take(project, b), b, "other")
    entry = QueueEntry.objects.get(item=queued[0])
    assert entry.labels_needed == 3 and entry.reason == QueueReason.EXTRA_LABEL
    third = take(project, c)
    assert third.item_id == queued[0].pk  # the disputed item keeps its place at the top
    submit(third, c, "refund")
    item = Item.objects.get(pk=queued[0].pk)
    assert item.status == ItemStatus.FINALIZED and item.final_label.name == "refund"
    assert item.final_confidence == pytest.approx(2 / 3)
    assert_queue_consistent(project)


def test_disagreement_at_the_cap_goes_to_review(project, annotators, queued):
    a, b, c = annotators[:3]
    submit(take(project, a), a, "refund")
    submit(take(project, b), b, "other")
    submit(take(project, c), c, "card_lost")
    item = Item.objects.get(pk=queued[0].pk)
    assert item.status == ItemStatus.IN_REVIEW and item.final_label is None
    assert not QueueEntry.objects.filter(item=item).exists()
    assert_queue_consistent(project)


# --- change and undo -------------------------------------------------------------------------


def test_change_own_annotation_while_open(project, annotators, queued):
    a, b = annotators[:2]
    annotation = submit(take(project, a), a, "refund").annotation
    changed = services.annotation_change(annotation_id=annotation.pk, user=a, label="other")
    assert changed.pk == annotation.pk and changed.label.name == "other"
    with pytest.raises(NotFound):
        services.annotation_change(annotation_id=annotation.pk, user=b, label="refund")
    with pytest.raises(ServiceError) as caught:
        services.annotation_change(annotation_id=annotation.pk, user=a, label="nope")
    assert caught.value.code == "unknown_label"
    assert_queue_consistent(project)


def test_no_change_or_undo_once_final_or_in_review(project, annotators, queued):
    a, b = annotators[:2]
    mine = submit(take(project, a), a, "refund").annotation
    submit(take(project, b), b, "refund")
    for call in (
        lambda: services.annotation_change(annotation_id=mine.pk, user=a, label="other"),
        lambda: services.annotation_undo(annotation_id=mine.pk, user=a),
        lambda: submit(Assignment.objects.get(pk=mine.assignment_id), a, "other"),
    ):
        with pytest.raises(Conflict) as caught:
            call()
        assert caught.value.code == "item_final"
    assert Annotation.objects.get(pk=mine.pk).label.name == "refund"
    assert_queue_consistent(project)


def test_undo_releases_the_item_back_to_the_same_user(project, annotators, queued):
    a, b = annotators[:2]
    assignment = take(project, a)
    annotation = submit(assignment, a, "refund").annotation
    with pytest.raises(NotFound):
        services.annotation_undo(annotation_id=annotation.pk, user=b)
    back = services.annotation_undo(annotation_id=annotation.pk, user=a)
    assert back.pk == assignment.pk and back.item_id == assignment.item_id
    assert back.status == AssignmentStatus.LEASED and back.finished_at is None
    assert back.expires_at > timezone.now()
    assert not Annotation.objects.filter(pk=annotation.pk).exists()
    assert QueueEntry.objects.get(item_id=assignment.item_id).labels_taken == 1
    assert_queue_consistent(project)
    # the page shows it again; labelling it again works and counts once
    assert take(project, a).pk == back.pk
    assert submit(back, a, "other").created
    assert QueueEntry.objects.get(item_id=assignment.item_id).labels_taken == 1
    with pytest.raises(NotFound):
        services.annotation_undo(annotation_id=annotation.pk, user=a)  # already undone
    assert_queue_consistent(project)


def test_undo_after_a_tie_keeps_the_extra_slot(project, annotators, queued):
    a, b = annotators[:2]
    submit(take(project, a), a, "refund")
    deciding = submit(take(project, b), b, "other").annotation  # a tie: one more label needed
    back = services.annotation_undo(annotation_id=deciding.pk, user=b)
    assert back.status == AssignmentStatus.LEASED
    entry = QueueEntry.objects.get(item_id=deciding.item_id)
    assert entry.labels_needed == 3 and entry.labels_taken == 2
    assert_queue_consistent(project)


# --- refill and fallback ---------------------------------------------------------------------


def test_refill_is_requested_when_open_slots_fall_under_the_threshold(project, annotators, settings, refill_calls):
    settings.QUORUM_REFILL_THRESHOLD = 5
    items = make_items(project, 3)  # 6 open slots
    enqueue(project, items)
    take(project, annotators[0])  # 5 left: not under the threshold
    assert refill_calls == []
    result = services.assignment_next(project=project, user=annotators[1])  # 4 left
    assert refill_calls == [project.pk]
    assert result.progress["refill_running"] is False  # the recording supply started no run


def test_default_threshold_is_half_a_batch_of_slots(project, annotators, settings, refill_calls):
    settings.QUORUM_REFILL_THRESHOLD = None
    assert leases.refill_threshold(project) == project.batch_size * project.labels_per_item // 2
    enqueue(project, make_items(project, project.batch_size + 1))
    take(project, annotators[0])
    assert refill_calls == []


def test_threshold_zero_never_requests(project, annotators, settings, refill_calls):
    settings.QUORUM_REFILL_THRESHOLD = 0
    enqueue(project, make_items(project, 1))
    take(project, annotators[0])
    assert refill_calls == []


def test_no_refill_request_while_a_run_is_active(project, annotators, settings, refill_calls):
    settings.QUORUM_REFILL_THRESHOLD = 100
    enqueue(project, make_items(project, 2))
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.RUNNING)
    take(project, annotators[0])
    assert refill_calls == []


def test_refill_request_tolerates_a_missing_or_failing_supply(project, annotators, settings, install_supply):
    settings.QUORUM_REFILL_THRESHOLD = 100
    enqueue(project, make_items(project, 3))
    install_supply(ports.ItemOrderSupply())  # nothing fills the queue but item order
    result = services.assignment_next(project=project, user=annotators[0])
    assert result.assignment is not None and result.progress["refill_running"] is False
    assert not ScoringRun.objects.exists()

    class BrokenSupply(ports.ItemOrderSupply):
        def request(self, project):
            raise RuntimeError("broker down")

    install_supply(BrokenSupply())
    assert take(project, annotators[1])
    assert_queue_consistent(project)


def test_without_the_loop_item_order_feeds_the_queue(project, annotators, install_supply):
    """The people side's own supply (nothing else installed): a model fill never starts, so item
    order tops the queue up even where the loop's scoring runs would not let it."""
    make_items(project, 3)
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)
    install_supply(ports.ItemOrderSupply())
    assignment = take(project, annotators[0])
    assert QueueEntry.objects.get(item_id=assignment.item_id).reason == QueueReason.FALLBACK
    assert_queue_consistent(project)


def test_refill_request_reaches_the_scoring_service(project, annotators, settings, monkeypatch, install_supply):
    settings.QUORUM_REFILL_THRESHOLD = 100
    enqueue(project, make_items(project, 3))
    install_supply(ScoringSupply())  # the loop's supply: a scoring run per refill
    calls = []

    def scoring_request(*, project, trigger):
        calls.append(trigger)
        return ScoringRun.objects.create(project=project, strategy="margin", trigger=trigger)

    monkeypatch.setattr("loop.supply.scoring_request", scoring_request)
    result = services.assignment_next(project=project, user=annotators[0])
    assert calls == ["low_queue"] and result.progress["refill_running"]
    services.assignment_next(project=project, user=annotators[1])
    assert calls == ["low_queue"]  # a run is active now


def test_fallback_seeds_the_queue_from_item_order(project, annotators):
    items = make_items(project, 120)
    Item.objects.filter(pk=items[0].pk).update(status=ItemStatus.FINALIZED)
    assignment = take(project, annotators[0])
    assert assignment.item_id == items[1].pk  # the first open item in item order
    entries = QueueEntry.objects.filter(project=project)
    assert entries.count() == project.batch_size
    assert set(entries.values_list("reason", flat=True)) == {QueueReason.FALLBACK}
    assert Item.objects.filter(project=project, status=ItemStatus.QUEUED).count() == project.batch_size - 1
    assert_queue_consistent(project)


def test_fallback_tops_up_when_the_user_has_nothing_left(project, annotators, settings):
    settings.QUORUM_REFILL_THRESHOLD = 0
    project.batch_size = 2
    project.save()
    items = make_items(project, 5)
    a = annotators[0]
    handed = []
    for _ in range(5):
        assignment = take(project, a)
        handed.append(assignment.item_id)
        submit(assignment, a)
    assert handed == [item.pk for item in items]
    assert services.assignment_next(project=project, user=a).code == "queue_empty"  # pool exhausted
    assert_queue_consistent(project)


def test_no_fallback_once_a_scoring_run_succeeded_or_while_one_runs(project, annotators):
    make_items(project, 10)
    run = ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.RUNNING)
    result = services.assignment_next(project=project, user=annotators[0])
    assert result.code == "queue_empty" and not QueueEntry.objects.exists()
    run.status, run.selected = ScoringRun.Status.SUCCEEDED, 5
    run.save()
    assert services.assignment_next(project=project, user=annotators[0]).code == "queue_empty"
    # A run that found nothing to score (no vectors yet) leaves item order in charge.
    run.selected = 0
    run.save()
    assert take(project, annotators[0])


def test_projects_do_not_mix(project, annotators, make_project, admin_user):
    other = make_project("Other")
    enqueue(other, make_items(other, 3, prefix="o"))
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)
    assert services.assignment_next(project=project, user=annotators[0]).code == "queue_empty"
    assert take(other, admin_user).project_id == other.pk


def test_the_sweep_runs_at_most_once_per_interval(project, annotators, queued, settings):
    settings.QUORUM_LEASE_SWEEP_SECONDS = 3600
    leases._last_sweep.pop(project.pk, None)
    a, b, c = annotators[:3]
    stale = take(project, a)  # sweeps (first call of this process for the project)
    take(project, b)
    expire(stale)
    assert take(project, c).item_id != stale.item_id  # not swept yet: the slot is still a's
    settings.QUORUM_LEASE_SWEEP_SECONDS = 0
    assert take(project, annotators[3]).item_id == stale.item_id
    assert_queue_consistent(project)


def test_progress_snapshot(project, annotators, queued, settings):
    from annotation import selectors

    a, b = annotators[:2]
    first = take(project, a)
    submit(first, a)
    stale = take(project, a)
    expire(stale)
    services.leases_expire(project=project)
    snapshot = selectors.queue_snapshot(project, a, slots_limit=100)
    assert snapshot["done_today"] == snapshot["done_total"] == 1
    # 6 entries: one labelled by a (not counted), one whose lease of a expired (counted: a may
    # take it again)
    assert snapshot["remaining"] == 5 and not snapshot["remaining_capped"]
    assert snapshot["open_slots"] == 2 * 6 - 1
    assert "refill_running" not in snapshot  # the queue's supply says (below)
    assert ports.queue_supply().running(project) is False
    assert selectors.annotator_progress(project, b) == {
        "done_today": 0,
        "done_total": 0,
        "remaining": 6,
        "remaining_capped": False,
        "refill_running": False,
    }
