"""The annotator's side of the queue: next item (a lease), submit, skip, change and undo.

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
- Fallback: until a scoring run of the project has succeeded (and while none is pending or
  running), an annotator who finds nothing to take tops the queue up from item order
  (``QueueReason.FALLBACK``, ``batch_size`` items at a time) so that labelling can start before any
  model exists.
- Refill: when the project's open slots fall under the refill threshold (``QUORUM_REFILL_THRESHOLD``
  slots; by default one batch, ``batch_size * labels_per_item``; ``0`` turns it off) a scoring run
  is requested (``acquisition.services.scoring_request``, which refuses a second active run).

Locking. Every write of one annotator starts by locking that user's row (``FOR NO KEY UPDATE``),
which serialises one person's requests (two tabs, a double click, prefetch racing submit) without
touching anyone else. Then, always in this order: assignment row, queue entry, item. Picking an
entry uses ``SELECT … FOR UPDATE SKIP LOCKED`` so annotators racing for the head of the queue never
wait on each other; PostgreSQL re-checks ``labels_taken < labels_needed`` on the locked row. SQLite
has no row locks, but its write transactions are serialised (``BEGIN IMMEDIATE``), so the same code
is correct there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.utils import timezone

from acquisition.models import ScoringRun
from quorum.errors import Conflict, NotFound, ServiceError

from ..models import (
    Annotation,
    Assignment,
    AssignmentStatus,
    Item,
    ItemStatus,
    LabelClass,
    Project,
    QueueEntry,
    QueueReason,
)
from .aggregation import aggregation_request
from .consensus import item_consensus_apply
from .queue import QueueCandidate, queue_replace

logger = logging.getLogger(__name__)

MAX_LIVE_LEASES = 2  # the item on screen and the prefetched one
SWEEP_LIMIT = 200  # stale leases expired per call (the rest go on the next call)
FALLBACK_STRATEGY = "fallback"
MAX_TIME_SPENT_MS = 2**31 - 1

CLOSED_ITEM_STATUSES = (ItemStatus.FINALIZED, ItemStatus.IN_REVIEW)


class NextCode:
    QUEUE_EMPTY = "queue_empty"
    LEASE_LIMIT = "lease_limit"


@dataclass(frozen=True, slots=True)
class NextResult:
    """What ``assignment_next`` hands out: a lease (with its queue entry), or why there is none."""

    assignment: Assignment | None
    entry: QueueEntry | None = None
    code: str | None = None
    # The annotator's progress line, read after the lease (``selectors.queue_snapshot``).
    progress: dict | None = None


@dataclass(frozen=True, slots=True)
class SubmitResult:
    annotation: Annotation
    created: bool  # False: an idempotent resubmission (or a change through resubmission)


# --- helpers ---------------------------------------------------------------------------------


def _lock_user(user) -> None:
    """Serialise one annotator's writes (see the module docstring)."""
    list(get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("pk", flat=True))


def _lease_end(project: Project, now) -> timezone.datetime:
    return now + timedelta(seconds=project.lease_seconds)


def _label_of_project(project_id: int, label) -> LabelClass:
    """The project's label called ``label``; a clear error listing the valid names otherwise."""
    found = (
        LabelClass.objects.filter(project_id=project_id, name=label).first()
        if isinstance(label, str) and label
        else None
    )
    if found is None:
        names = list(
            LabelClass.objects.filter(project_id=project_id).order_by("order", "id").values_list("name", flat=True)
        )
        shown = ", ".join(repr(name) for name in names[:50]) + (f" … ({len(names)} in all)" if len(names) > 50 else "")
        message = f"unknown label {label!r}; valid labels: {shown}"
        raise ServiceError({"detail": message, "errors": {"label": message}}, code="unknown_label")
    return found


def _check_time_spent(time_spent_ms) -> int:
    if (
        isinstance(time_spent_ms, bool)
        or not isinstance(time_spent_ms, int)
        or not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS
    ):
        message = f"time_spent_ms must be an integer between 0 and {MAX_TIME_SPENT_MS}"
        raise ServiceError({"detail": message, "errors": {"time_spent_ms": message}}, code="invalid_time_spent")
    return time_spent_ms


def _own_assignment(assignment_id: int, user, *, lock: bool = False) -> Assignment:
    queryset = Assignment.objects.filter(pk=assignment_id, user=user)
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    assignment = queryset.select_related("project").first()
    if assignment is None:
        raise NotFound(f"assignment {assignment_id} does not exist or is not yours", code="not_found")
    return assignment


def _own_annotation(annotation_id: int, user) -> Annotation:
    annotation = Annotation.objects.filter(pk=annotation_id, user=user).select_related("project").first()
    if annotation is None:
        raise NotFound(f"annotation {annotation_id} does not exist or is not yours", code="not_found")
    return annotation


def _locked_entry(item_id: int) -> QueueEntry | None:
    return QueueEntry.objects.select_for_update().filter(item_id=item_id).first()


def _require_open_item(item_id: int, entry: QueueEntry | None) -> None:
    """Annotations of an item may change only while it is in the queue (not final, not in review)."""
    status = Item.objects.filter(pk=item_id).values_list("status", flat=True).first()
    if entry is None or status in CLOSED_ITEM_STATUSES:
        state = "in review" if status == ItemStatus.IN_REVIEW else "final"
        raise Conflict(f"item {item_id} is {state}; its annotations can no longer change", code="item_final")


def _slot_take(entry: QueueEntry) -> None:
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


def _slot_release(item_id: int) -> None:
    """A lease ended without a label (expiry, skip): its slot goes back to the queue."""
    entry = _locked_entry(item_id)
    if entry is None or entry.labels_taken == 0:
        return
    QueueEntry.objects.filter(pk=entry.pk).update(labels_taken=F("labels_taken") - 1)
    if entry.labels_taken == 1:
        Item.objects.filter(pk=item_id, status=ItemStatus.IN_PROGRESS).update(status=ItemStatus.QUEUED)


# --- leases ----------------------------------------------------------------------------------


_last_sweep: dict[int, float] = {}  # project id -> monotonic time of this process's last sweep


def _sweep_due(project: Project) -> bool:
    """Sweep a project at most every ``QUORUM_LEASE_SWEEP_SECONDS`` (default 1) per process: one
    read saved on most requests; an expired slot comes back at most that much later."""
    interval = float(getattr(settings, "QUORUM_LEASE_SWEEP_SECONDS", 1.0))
    now = time.monotonic()
    if interval > 0 and now - _last_sweep.get(project.pk, -interval) < interval:
        return False
    _last_sweep[project.pk] = now
    return True


def leases_expire(*, project: Project, now=None) -> int:
    """Mark the project's leases past ``expires_at`` expired and return their slots. Returns how many.

    One short transaction per lease (assignment, then entry: the order every service uses), so
    sweeping never holds one entry while waiting for another.
    """
    now = now or timezone.now()
    stale = list(
        Assignment.objects.filter(project=project, status=AssignmentStatus.LEASED, expires_at__lt=now)
        .order_by("id")
        .values_list("id", "item_id")[:SWEEP_LIMIT]
    )
    expired = 0
    for assignment_id, item_id in stale:
        with transaction.atomic():
            changed = Assignment.objects.filter(
                pk=assignment_id, status=AssignmentStatus.LEASED, expires_at__lt=now
            ).update(status=AssignmentStatus.EXPIRED, finished_at=now)
            if changed:
                _slot_release(item_id)
                expired += 1
    return expired


def _open_entries_for(project: Project, user):
    """Entries with an open slot that ``user`` may take: never handed to them, or only as a
    lease that expired."""
    mine = Assignment.objects.filter(item_id=OuterRef("item_id"), user=user).exclude(status=AssignmentStatus.EXPIRED)
    return QueueEntry.objects.filter(project=project, labels_taken__lt=F("labels_needed")).filter(~Exists(mine))


def _pick(project: Project, user) -> QueueEntry | None:
    """Lock the highest-priority entry with an open slot that this user may take, skipping
    entries other transactions hold. Annotates ``own_expired_id`` (a lease of this user on the
    item that expired, to renew instead of creating a second row)."""
    expired = Assignment.objects.filter(item_id=OuterRef("item_id"), user=user, status=AssignmentStatus.EXPIRED)
    return (
        _open_entries_for(project, user)
        .annotate(own_expired_id=Subquery(expired.values("id")[:1]))
        .select_related("item", "suggested_label")
        .order_by("-priority", "id")
        .select_for_update(skip_locked=True, of=("self",))
        .first()
    )


def _lease(project: Project, user, entry: QueueEntry, now) -> Assignment:
    _slot_take(entry)
    expires_at = _lease_end(project, now)
    if entry.own_expired_id is not None:
        Assignment.objects.filter(pk=entry.own_expired_id).update(
            status=AssignmentStatus.LEASED, leased_at=now, expires_at=expires_at, finished_at=None
        )
        assignment = Assignment.objects.get(pk=entry.own_expired_id)
    else:
        assignment = Assignment.objects.create(
            project=project, item=entry.item, user=user, leased_at=now, expires_at=expires_at
        )
    assignment.item = entry.item
    return assignment


def _fallback_allowed(project: Project) -> bool:
    """Item order stands in for the strategy until a scoring run has succeeded (and none is busy)."""
    return not ScoringRun.objects.filter(
        project=project, status__in=[ScoringRun.Status.SUCCEEDED, *ScoringRun.ACTIVE]
    ).exists()


def queue_fallback_fill(*, project: Project, user=None) -> int:
    """Top the queue up with the next ``batch_size`` unqueued items in item order (reason
    ``fallback``). Returns the number of new entries (0 when the pool is used up).

    Goes through ``queue_replace`` (project row locked, started entries kept); the untouched
    entries are offered again with their priorities, so only new items are added. With ``user``,
    nothing is added when that user can already take an entry (another annotator filled the
    queue while this one waited for the lock).
    """
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        if user is not None and _open_entries_for(project, user).exists():
            return 0
        new_ids = list(
            Item.objects.filter(project=project, status=ItemStatus.UNLABELED)
            .order_by("id")
            .values_list("id", flat=True)[: project.batch_size]
        )
        if not new_ids:
            return 0
        untouched = list(
            QueueEntry.objects.filter(project=project, labels_taken=0).values_list(
                "item_id", "priority", "score", "reason", "suggested_label_id", "suggested_confidence"
            )
        )
        candidates = [
            QueueCandidate(
                item_id=item_id,
                priority=priority,
                score=score,
                reason=reason,
                suggested_label_id=suggested_label_id,
                suggested_confidence=suggested_confidence,
            )
            for item_id, priority, score, reason, suggested_label_id, suggested_confidence in untouched
        ]
        candidates += [
            QueueCandidate(item_id=item_id, priority=-float(item_id), reason=QueueReason.FALLBACK)
            for item_id in new_ids
        ]
        queue_replace(project=project, candidates=candidates, strategy=FALLBACK_STRATEGY)
        return len(new_ids)


def refill_threshold(project: Project) -> int:
    """Open slots under which a refill is requested (``QUORUM_REFILL_THRESHOLD``; 0 = never)."""
    configured = getattr(settings, "QUORUM_REFILL_THRESHOLD", None)
    if configured is None:
        return max(1, project.batch_size * project.labels_per_item // 2)
    return int(configured)


def _load_scoring_request():
    try:
        from acquisition.services import scoring_request
    except ImportError:
        logger.info("acquisition.services.scoring_request is not available; no refill requested")
        return None
    return scoring_request


def queue_refill_if_low(*, project: Project, user=None) -> dict:
    """Request a scoring run when the project's open slots are under the threshold. Never raises:
    a refill is best effort. Returns the queue snapshot it decided on (``selectors.queue_snapshot``
    for ``user``: the annotator's progress line, with ``refill_running`` up to date)."""
    from ..selectors import queue_snapshot

    threshold = refill_threshold(project)
    snapshot = queue_snapshot(project, user, slots_limit=threshold) if user is not None else None
    if snapshot is None:
        from ..selectors import open_slots, refill_running

        snapshot = {"open_slots": open_slots(project, limit=threshold), "refill_running": refill_running(project)}
    if threshold <= 0 or snapshot["open_slots"] >= threshold or snapshot["refill_running"]:
        return snapshot
    scoring_request = _load_scoring_request()
    if scoring_request is None:
        return snapshot
    try:
        snapshot["refill_running"] = scoring_request(project=project, trigger="low_queue") is not None
    except Exception:
        logger.exception("refill request for project %s failed", project.pk)
    return snapshot


def assignment_next(*, project: Project, user, held: Iterable[int] = ()) -> NextResult:
    """Hand ``user`` the next item of ``project`` (see the module docstring for the rules)."""
    if _sweep_due(project):
        leases_expire(project=project)
    held_ids = {int(assignment_id) for assignment_id in held}
    now = timezone.now()
    with transaction.atomic():
        _lock_user(user)
        live = list(
            Assignment.objects.filter(
                project=project, user=user, status=AssignmentStatus.LEASED, expires_at__gte=now
            ).order_by("leased_at", "id")
        )
        for assignment in live:
            if assignment.pk not in held_ids:
                assignment.expires_at = _lease_end(project, now)
                Assignment.objects.filter(pk=assignment.pk).update(expires_at=assignment.expires_at)
                entry = (
                    QueueEntry.objects.filter(item_id=assignment.item_id)
                    .select_related("item", "suggested_label")
                    .first()
                )
                assignment.item = entry.item if entry is not None else Item.objects.get(pk=assignment.item_id)
                return NextResult(assignment, entry)
        if len(live) >= MAX_LIVE_LEASES:
            return NextResult(None, code=NextCode.LEASE_LIMIT)

        entry = _pick(project, user)
        if entry is None and _fallback_allowed(project) and queue_fallback_fill(project=project, user=user):
            entry = _pick(project, user)
        assignment = _lease(project, user, entry, now) if entry is not None else None
    snapshot = queue_refill_if_low(project=project, user=user)
    snapshot.pop("open_slots")
    if assignment is None:
        return NextResult(None, code=NextCode.QUEUE_EMPTY, progress=snapshot)
    return NextResult(assignment, entry, progress=snapshot)


def assignment_skip(*, assignment_id: int, user, reason: str = "") -> Assignment:
    """Give an item back: its slot returns to others and the user never gets it again.
    Skipping twice is harmless; a labelled item cannot be skipped (undo it first)."""
    now = timezone.now()
    with transaction.atomic():
        _lock_user(user)
        assignment = _own_assignment(assignment_id, user, lock=True)
        if assignment.status == AssignmentStatus.SKIPPED:
            return assignment
        if assignment.status == AssignmentStatus.SUBMITTED:
            raise Conflict(f"assignment {assignment_id} is already labelled; undo it first", code="already_submitted")
        if assignment.status == AssignmentStatus.LEASED:
            _slot_release(assignment.item_id)
        assignment.status = AssignmentStatus.SKIPPED
        assignment.finished_at = now
        assignment.skip_reason = (reason or "")[:500]
        assignment.save(update_fields=["status", "finished_at", "skip_reason"])
    return assignment


# --- annotations -----------------------------------------------------------------------------


def _finalise_if_complete(project: Project, entry: QueueEntry) -> None:
    """On the item's ``labels_needed``-th annotation, apply the consensus rule."""
    if entry.labels_taken < entry.labels_needed:
        return
    annotations = list(
        Annotation.objects.filter(item_id=entry.item_id).order_by("id").values_list("user_id", "label_id")
    )
    if len(annotations) >= entry.labels_needed:
        item_consensus_apply(project=project, entry=entry, annotations=annotations)


def annotation_submit(*, assignment_id: int, user, label: str, time_spent_ms: int = 0) -> SubmitResult:
    """Record the lease holder's label for the assigned item.

    Resubmitting the same label returns the same annotation (``created=False``); a different
    label changes it while the item is open. A lease that expired is still accepted when its slot
    can be taken back; otherwise ``Conflict(lease_expired)``.
    """
    time_spent_ms = _check_time_spent(time_spent_ms)
    now = timezone.now()
    with transaction.atomic():
        _lock_user(user)
        assignment = _own_assignment(assignment_id, user, lock=True)
        label_obj = _label_of_project(assignment.project_id, label)
        project = assignment.project
        if assignment.status == AssignmentStatus.SUBMITTED:
            annotation = Annotation.objects.get(item_id=assignment.item_id, user=user)
            if annotation.label_id != label_obj.pk:
                annotation = _annotation_relabel(annotation, label_obj)
            return SubmitResult(annotation, created=False)
        if assignment.status == AssignmentStatus.SKIPPED:
            raise Conflict(f"assignment {assignment_id} was skipped; it cannot be labelled", code="skipped")

        entry = _locked_entry(assignment.item_id)
        if assignment.status == AssignmentStatus.EXPIRED:
            if entry is None or entry.labels_taken >= entry.labels_needed:
                raise Conflict(
                    f"the lease of assignment {assignment_id} expired and its slot went to someone else",
                    code="lease_expired",
                )
            _slot_take(entry)
        elif entry is None:
            _require_open_item(assignment.item_id, entry)

        Assignment.objects.filter(pk=assignment.pk).update(status=AssignmentStatus.SUBMITTED, finished_at=now)
        annotation = Annotation.objects.create(
            project=project,
            item_id=assignment.item_id,
            user=user,
            assignment=assignment,
            label=label_obj,
            time_spent_ms=time_spent_ms,
        )
        _finalise_if_complete(project, entry)
        aggregation_request(project=project)
    return SubmitResult(annotation, created=True)


def _annotation_relabel(annotation: Annotation, label: LabelClass) -> Annotation:
    entry = _locked_entry(annotation.item_id)
    _require_open_item(annotation.item_id, entry)
    annotation.label = label
    annotation.save(update_fields=["label", "updated_at"])
    aggregation_request(project=annotation.project)
    return annotation


def annotation_change(*, annotation_id: int, user, label: str) -> Annotation:
    """Change one's own label while the item is neither final nor in review."""
    annotation = _own_annotation(annotation_id, user)
    label_obj = _label_of_project(annotation.project_id, label)
    with transaction.atomic():
        _lock_user(user)
        annotation = _own_annotation(annotation_id, user)
        if annotation.label_id == label_obj.pk:
            return annotation
        return _annotation_relabel(annotation, label_obj)


def annotation_undo(*, annotation_id: int, user) -> Assignment:
    """Take one's own label back while the item is open: the annotation goes and the same item is
    leased to the same user again (fresh expiry; the slot stays counted, now as a lease)."""
    now = timezone.now()
    with transaction.atomic():
        _lock_user(user)
        annotation = _own_annotation(annotation_id, user)
        project = annotation.project
        assignment = Assignment.objects.select_for_update().filter(item_id=annotation.item_id, user=user).first()
        entry = _locked_entry(annotation.item_id)
        _require_open_item(annotation.item_id, entry)
        annotation.delete()
        if assignment is None:
            assignment = Assignment(project=project, item_id=annotation.item_id, user=user)
        assignment.status = AssignmentStatus.LEASED
        assignment.leased_at = now
        assignment.expires_at = _lease_end(project, now)
        assignment.finished_at = None
        assignment.save()
        assignment.item = entry.item
        aggregation_request(project=project)
    return assignment
