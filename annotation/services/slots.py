"""The queue's slots and locks, shared by leases (``leases``) and annotations (``annotations``).

Counting rule. ``QueueEntry.labels_taken`` counts the item's live leases (assignments in status
``leased``) plus its submitted annotations; every service here keeps that true in the same
transaction as the change it makes. An entry has an open slot while ``labels_taken <
labels_needed``.

Rules
-----
- Overlap: an item gets ``labels_needed`` distinct annotators (``labels_per_item``, more after a
  disagreement, see ``consensus``). One ``Assignment`` per (item, annotator): a skipped or
  labelled item never comes back to the same person.
- Expiry: a lease whose ``expires_at`` has passed is marked ``expired`` by the next call of
  ``assignment_next`` in its project, and its slot returns to the queue. An expired lease is not
  a decision about the item, so the same annotator may be handed that item again later (the row
  goes back to ``leased``); a submission on an expired lease is accepted when its slot can still
  be taken back, else it is refused with ``lease_expired``.
- Prefetch: an annotator holds at most ``MAX_LIVE_LEASES`` live leases (the item on screen and the
  prefetched one). ``held`` lists the ids the client already shows; a live lease not in ``held``
  is handed out again (with a fresh expiry) instead of a new one, so reloading a page never hoards
  items.
- Fallback: until the queue's supply has started (a scoring run of the project succeeded, or one
  is pending or running), an annotator who finds nothing to take tops the queue up from item order
  (``QueueReason.FALLBACK``, ``batch_size`` items at a time) so that labelling can start before any
  model exists.
- Refill: when the project's open slots fall under the refill threshold (``QUORUM_REFILL_THRESHOLD``
  slots; by default half a batch, ``batch_size * labels_per_item // 2``; ``0`` turns it off) the
  queue's supply is asked for more (``ports.queue_supply``: the loop requests a scoring run, which
  refuses a second active one).

Locking. Every write of one annotator starts by locking that user's row (``FOR NO KEY UPDATE``),
which serialises one person's requests (two tabs, a double click, prefetch racing submit) without
touching anyone else. Then, always in this order: assignment row, queue entry, item. Picking an
entry uses ``SELECT … FOR UPDATE SKIP LOCKED`` so annotators racing for the head of the queue never
wait on each other; PostgreSQL re-checks ``labels_taken < labels_needed`` on the locked row. SQLite
has no row locks, but its write transactions are serialised (``BEGIN IMMEDIATE``), so the same code
is correct there.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import F
from django.utils import timezone

from quorum.errors import Conflict, NotFound

from ..models import Assignment, Item, ItemStatus, Project, QueueEntry

CLOSED_ITEM_STATUSES = (ItemStatus.FINALIZED, ItemStatus.IN_REVIEW)


def lock_user(user) -> None:
    """Serialise one annotator's writes (see the module docstring)."""
    list(get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("pk", flat=True))


def lease_end(project: Project, now) -> timezone.datetime:
    return now + timedelta(seconds=project.lease_seconds)


def text_changed_conflict(kind: str, pk: int) -> Conflict:
    return Conflict(
        f"the item's text changed after {kind} {pk} was handed out; it is a new question now: "
        "fetch the next item and label the current text",
        code="text_changed",
    )


def own_assignment(assignment_id: int, user, *, lock: bool = False, with_item: bool = False) -> Assignment:
    """One of ``user``'s assignments; ``Conflict(text_changed)`` for a lease that showed an older
    text of its item (``ingest._text_reset``)."""
    queryset = Assignment.all_revisions.filter(pk=assignment_id, user=user)
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    assignment = queryset.select_related(*(("project", "item") if with_item else ("project",))).first()
    if assignment is None:
        raise NotFound(f"assignment {assignment_id} does not exist or is not yours", code="not_found")
    if assignment.superseded_at is not None:
        raise text_changed_conflict("assignment", assignment_id)
    return assignment


def locked_entry(item_id: int) -> QueueEntry | None:
    # Only the entry's row: the model's default ordering starts with ``project``, so a plain
    # ``.first()`` would join the project and lock its row too, which the aggregation and the
    # queue's writers hold for seconds (a deadlock between submit and aggregation on PostgreSQL).
    return QueueEntry.objects.select_for_update(of=("self",)).filter(item_id=item_id).order_by("pk").first()


def require_open_item(item_id: int, entry: QueueEntry | None) -> None:
    """Annotations of an item may change only while it is in the queue (not final, not in review)."""
    status = Item.objects.filter(pk=item_id).values_list("status", flat=True).first()
    if entry is None or status in CLOSED_ITEM_STATUSES:
        state = "in review" if status == ItemStatus.IN_REVIEW else "final"
        raise Conflict(f"item {item_id} is {state}; its annotations can no longer change", code="item_final")


def slot_take(entry: QueueEntry) -> None:
    """One more lease on ``entry`` (locked by the caller, with an open slot)."""
    QueueEntry.objects.filter(pk=entry.pk).update(labels_taken=F("labels_taken") + 1)
    if entry.labels_taken == 0:
        Item.objects.filter(pk=entry.item_id, status__in=[ItemStatus.QUEUED, ItemStatus.UNLABELED]).update(
            status=ItemStatus.IN_PROGRESS
        )
        # The first lease records why the item was picked (exploration items become the
        # unbiased evaluation set of training).
        Item.objects.filter(pk=entry.item_id, selected_as="").update(selected_as=entry.reason)
    entry.labels_taken += 1


def slot_release(item_id: int) -> None:
    """A lease ended without a label (expiry, skip): its slot goes back to the queue."""
    entry = locked_entry(item_id)
    if entry is None or entry.labels_taken == 0:
        return
    QueueEntry.objects.filter(pk=entry.pk).update(labels_taken=F("labels_taken") - 1)
    if entry.labels_taken == 1:
        Item.objects.filter(pk=item_id, status=ItemStatus.IN_PROGRESS).update(status=ItemStatus.QUEUED)
