"""``queue_replace``: the atomic swap of a project's queue that scoring runs and the fallback use."""

from __future__ import annotations

import pytest

from annotation import services
from annotation.models import Item, ItemStatus, QueueEntry, QueueReason
from annotation.services.queue import QueueCandidate, queue_replace
from tests.invariants import assert_queue_consistent, enqueue, make_items

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_refill(settings):
    settings.QUORUM_REFILL_THRESHOLD = 0
    settings.QUORUM_LEASE_SWEEP_SECONDS = 0


def candidates(items, *, start=100.0, **fields):
    return [QueueCandidate(item_id=item.pk, priority=start - rank, **fields) for rank, item in enumerate(items)]


def queued_ids(project):
    return list(
        QueueEntry.objects.filter(project=project).order_by("-priority", "id").values_list("item_id", flat=True)
    )


def test_replace_writes_entries_in_priority_order(project):
    items = make_items(project, 4)
    report = queue_replace(project=project, candidates=candidates(items[::-1], score=0.5), strategy="margin")
    assert (report.written, report.kept, report.removed, report.skipped) == (4, 0, 0, 0)
    assert queued_ids(project) == [item.pk for item in items[::-1]]
    entry = QueueEntry.objects.get(item=items[0])
    assert entry.strategy == "margin" and entry.score == 0.5 and entry.reason == QueueReason.ACQUISITION
    assert entry.labels_needed == project.labels_per_item and entry.labels_taken == 0
    assert set(Item.objects.filter(project=project).values_list("status", flat=True)) == {ItemStatus.QUEUED}
    assert_queue_consistent(project)


def test_replace_swaps_untouched_entries_and_returns_their_items_to_the_pool(project):
    items = make_items(project, 6)
    queue_replace(project=project, candidates=candidates(items[:3]), strategy="margin")
    report = queue_replace(project=project, candidates=candidates(items[2:5]), strategy="entropy")
    assert (report.written, report.removed) == (3, 3)
    assert queued_ids(project) == [item.pk for item in items[2:5]]
    statuses = dict(Item.objects.filter(project=project).values_list("id", "status"))
    assert [statuses[item.pk] for item in items] == [
        ItemStatus.UNLABELED,
        ItemStatus.UNLABELED,
        ItemStatus.QUEUED,
        ItemStatus.QUEUED,
        ItemStatus.QUEUED,
        ItemStatus.UNLABELED,
    ]
    assert_queue_consistent(project)


def test_started_entries_survive_a_replacement(project, member):
    annotator = member("ann")
    items = make_items(project, 4)
    enqueue(project, items)
    started = services.assignment_next(project=project, user=annotator).assignment
    assert started.item_id == items[0].pk
    report = queue_replace(project=project, candidates=candidates([items[0], items[3]]), strategy="margin")
    assert report.kept == 1 and report.skipped == 1  # items[0] is started: left as it was
    assert set(queued_ids(project)) == {items[0].pk, items[3].pk}
    assert QueueEntry.objects.get(item=items[0]).labels_taken == 1
    assert Item.objects.get(pk=items[0].pk).status == ItemStatus.IN_PROGRESS
    assert_queue_consistent(project)


def test_replace_refuses_final_in_review_foreign_and_duplicate_candidates(project, make_project):
    items = make_items(project, 4)
    Item.objects.filter(pk=items[0].pk).update(status=ItemStatus.FINALIZED)
    Item.objects.filter(pk=items[1].pk).update(status=ItemStatus.IN_REVIEW)
    other = make_project("Other")
    foreign = make_items(other, 1, prefix="o")
    offered = candidates([items[0], items[1], items[2], items[2], foreign[0]]) + [
        QueueCandidate(item_id=987654, priority=1.0)
    ]
    report = queue_replace(project=project, candidates=offered, strategy="margin")
    assert report.written == 1 and report.skipped == 5
    assert queued_ids(project) == [items[2].pk]
    assert not QueueEntry.objects.filter(project=other).exists()


def test_replace_with_nothing_empties_the_untouched_queue(project):
    items = make_items(project, 3)
    enqueue(project, items)
    report = queue_replace(project=project, candidates=[], strategy="margin")
    assert report.removed == 3 and not QueueEntry.objects.exists()
    assert set(Item.objects.values_list("status", flat=True)) == {ItemStatus.UNLABELED}


def test_suggestions_and_reasons_are_stored(project):
    items = make_items(project, 2)
    label = project.labels.get(name="other")
    queue_replace(
        project=project,
        candidates=candidates(
            items, reason=QueueReason.EXPLORATION, suggested_label_id=label.pk, suggested_confidence=0.4
        ),
        strategy="random",
    )
    entry = QueueEntry.objects.get(item=items[0])
    assert entry.reason == QueueReason.EXPLORATION
    assert entry.suggested_label == label and entry.suggested_confidence == 0.4


def test_fallback_fill_follows_item_order_and_keeps_its_place(project):
    project.batch_size = 3
    project.save()
    items = make_items(project, 8)
    assert services.queue_fallback_fill(project=project) == 3
    assert queued_ids(project) == [item.pk for item in items[:3]]
    assert services.queue_fallback_fill(project=project) == 3  # three more after the first three
    assert queued_ids(project) == [item.pk for item in items[:6]]
    assert set(QueueEntry.objects.values_list("reason", "strategy")) == {(QueueReason.FALLBACK, "fallback")}
    assert_queue_consistent(project)
