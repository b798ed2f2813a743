"""The annotation queue's writes that the model side uses: atomic replacement of a project's queue.

A scoring run (or the cold-start sampler) ranks candidate items and hands them here. The swap is
one transaction: annotators keep seeing the previous queue until it commits, then the new one;
never an empty or half-written queue. Entries that annotators have started (``labels_taken > 0``)
survive every replacement, so a lease in flight is never pulled from under anyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from quorum.chunks import iter_chunks

from ..models import Item, ItemStatus, Project, QueueEntry, QueueReason

CHUNK = 2000  # ids per statement: under SQLite's bound-parameter limit


@dataclass(frozen=True, slots=True)
class QueueCandidate:
    """One item offered to the queue. Higher ``priority`` is served first."""

    item_id: int
    priority: float
    score: float | None = None
    reason: str = QueueReason.ACQUISITION
    suggested_label_id: int | None = None  # the model's predicted LabelClass, if any
    suggested_confidence: float | None = None
    suggested_tags: dict | None = None  # multi-label: {"tags": [label ids], "p": {id: p}}


@dataclass(frozen=True, slots=True)
class QueueReplaceReport:
    written: int  # new entries
    kept: int  # started entries left in place
    removed: int  # untouched entries replaced
    skipped: int  # candidates refused (unknown, final, in review or already queued and started)


def queue_replace(
    *, project: Project, candidates: Sequence[QueueCandidate], strategy: str, run=None
) -> QueueReplaceReport:
    """Replace the project's untouched queue entries with ``candidates``, atomically.

    Candidates that are not items of this project, that are final or in review, or whose item
    already has a started entry are skipped; duplicates keep their first occurrence.
    """
    with transaction.atomic():
        # Serialise queue writers of one project (two scoring runs never interleave). NO KEY: rows
        # that only reference the project (new assignments, annotations) are not blocked by it;
        # a plain FOR UPDATE would deadlock with an annotator holding an entry this waits for.
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        untouched = QueueEntry.objects.filter(project=project, labels_taken=0)
        removed_item_ids = list(untouched.values_list("item_id", flat=True))
        untouched.delete()
        kept_item_ids = set(QueueEntry.objects.filter(project=project).values_list("item_id", flat=True))

        wanted: dict[int, QueueCandidate] = {}
        for candidate in candidates:
            if candidate.item_id not in kept_item_ids:
                wanted.setdefault(int(candidate.item_id), candidate)
        eligible: set[int] = set()
        for chunk in iter_chunks(list(wanted), CHUNK):
            eligible.update(
                Item.objects.filter(project=project, pk__in=chunk)
                .exclude(status__in=[ItemStatus.FINALIZED, ItemStatus.IN_REVIEW])
                .values_list("pk", flat=True)
            )
        entries = [
            QueueEntry(
                project=project,
                item_id=item_id,
                priority=float(candidate.priority),
                score=None if candidate.score is None else float(candidate.score),
                strategy=strategy,
                reason=candidate.reason,
                run=run,
                suggested_label_id=candidate.suggested_label_id,
                suggested_confidence=candidate.suggested_confidence,
                suggested_tags=candidate.suggested_tags,
                labels_needed=project.labels_per_item,
            )
            for item_id, candidate in wanted.items()
            if item_id in eligible
        ]
        QueueEntry.objects.bulk_create(entries, batch_size=500)

        queued_ids = [entry.item_id for entry in entries]
        back_to_pool = sorted(set(removed_item_ids) - set(queued_ids))
        for chunk in iter_chunks(back_to_pool, CHUNK):
            Item.objects.filter(pk__in=chunk, status=ItemStatus.QUEUED).update(status=ItemStatus.UNLABELED)
        for chunk in iter_chunks(queued_ids, CHUNK):
            Item.objects.filter(pk__in=chunk, status=ItemStatus.UNLABELED).update(status=ItemStatus.QUEUED)

    return QueueReplaceReport(
        written=len(entries),
        kept=len(kept_item_ids),
        removed=len(removed_item_ids),
        skipped=len(candidates) - len(entries),
    )
