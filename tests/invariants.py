"""Shared checks and helpers for the queue tests: the counting invariant of ``QueueEntry``."""

from __future__ import annotations

from collections import Counter

from django.utils import timezone

from annotation.ingest_records import text_digest
from annotation.models import (
    Annotation,
    Assignment,
    AssignmentStatus,
    Item,
    ItemStatus,
    QueueEntry,
    QueueReason,
)
from annotation.services.queue import QueueCandidate, queue_replace


def make_items(project, n: int, *, prefix: str = "t") -> list[Item]:
    items = [
        Item(project=project, external_id=f"{prefix}-{i}", text=f"text {i}", text_hash=text_digest(f"text {i}"))
        for i in range(n)
    ]
    Item.objects.bulk_create(items)
    return list(Item.objects.filter(project=project, external_id__startswith=f"{prefix}-").order_by("id"))


def enqueue(project, items, *, reason: str = QueueReason.ACQUISITION, run=None, **candidate_fields):
    """Queue ``items`` with priorities in the given order (first = highest)."""
    candidates = [
        QueueCandidate(item_id=item.pk, priority=float(len(items) - rank), reason=reason, **candidate_fields)
        for rank, item in enumerate(items)
    ]
    return queue_replace(project=project, candidates=candidates, strategy="test", run=run)


def assert_queue_consistent(project) -> None:
    """``labels_taken`` = live leases + annotations, never above ``labels_needed``; item statuses,
    assignments and annotations agree with each other."""
    leased = Counter(
        Assignment.objects.filter(project=project, status=AssignmentStatus.LEASED).values_list("item_id", flat=True)
    )
    annotated = Counter(Annotation.objects.filter(project=project).values_list("item_id", flat=True))
    entries = {entry.item_id: entry for entry in QueueEntry.objects.filter(project=project)}
    statuses = dict(Item.objects.filter(project=project).values_list("id", "status"))
    problems = []
    for item_id, entry in entries.items():
        expected = leased[item_id] + annotated[item_id]
        if entry.labels_taken != expected:
            problems.append(f"item {item_id}: labels_taken {entry.labels_taken} != {expected} (leases + annotations)")
        if entry.labels_taken > entry.labels_needed:
            problems.append(f"item {item_id}: labels_taken {entry.labels_taken} > labels_needed {entry.labels_needed}")
        want = ItemStatus.IN_PROGRESS if entry.labels_taken else ItemStatus.QUEUED
        if statuses[item_id] != want:
            problems.append(f"item {item_id}: status {statuses[item_id]} with labels_taken {entry.labels_taken}")
    honeypots = set(Item.objects.filter(project=project, honeypot=True).values_list("id", flat=True))
    for item_id in set(leased) - set(entries) - honeypots:  # honeypots are served outside the queue
        problems.append(f"item {item_id}: live lease without a queue entry")
    for item_id, status in statuses.items():
        if status in (ItemStatus.FINALIZED, ItemStatus.IN_REVIEW) and item_id in entries:
            problems.append(f"item {item_id}: {status} but still queued")
        if item_id not in entries and annotated[item_id] and status not in (ItemStatus.FINALIZED, ItemStatus.IN_REVIEW):
            problems.append(f"item {item_id}: annotated, not queued, yet {status}")
    submitted = set(
        Assignment.objects.filter(project=project, status=AssignmentStatus.SUBMITTED).values_list("id", flat=True)
    )
    with_annotation = set(
        Annotation.objects.filter(project=project, assignment__isnull=False).values_list("assignment_id", flat=True)
    )
    if submitted != with_annotation:
        problems.append(f"submitted assignments {sorted(submitted ^ with_annotation)} disagree with annotations")
    pairs = set(Assignment.objects.filter(project=project).values_list("item_id", "user_id"))
    for pair in Annotation.objects.filter(project=project).values_list("item_id", "user_id"):
        if pair not in pairs:
            problems.append(f"annotation {pair} without an assignment")
    assert not problems, "queue invariant broken:\n" + "\n".join(problems)


def annotate_directly(project, answers) -> list:
    """Submitted assignments and their annotations for ``answers`` = ``[(item, user, label), ...]``,
    written in two bulk statements (no queue): as if the submit path had taken them earlier."""
    now = timezone.now()
    assignments = Assignment.objects.bulk_create(
        [
            Assignment(
                project=project,
                item=item,
                user=user,
                status=AssignmentStatus.SUBMITTED,
                leased_at=now,
                expires_at=now,
                finished_at=now,
            )
            for item, user, _ in answers
        ]
    )
    return Annotation.objects.bulk_create(
        [
            Annotation(project=project, item=item, user=user, assignment=assignment, label=label)
            for (item, user, label), assignment in zip(answers, assignments, strict=True)
        ]
    )
