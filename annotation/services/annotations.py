"""Annotations: submit a label on a lease, change it, take it back.

The counting rule and the lock order are in ``slots``. Every change announces itself
(``signals.labels_changed``) so that the project's consensus is recomputed; the item's own
consensus rule applies at once on its ``labels_needed``-th label (``consensus``).

Honeypots (``Item.honeypot``) live outside the queue: an answer on one counts no slot and never
changes the item (its label is known, ``final_source`` gold); it is scored against that label
(``quality.quality_check``), which may pause the annotator. Like any open item, the answer can be
changed or taken back, so nothing in these responses tells a honeypot from another item. A paused
annotator's submissions, changes and undos are refused (409 ``paused``, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from quorum.errors import Conflict, NotFound, ServiceError

from .. import signals
from ..models import Annotation, Assignment, AssignmentStatus, Item, Project, QueueEntry
from ..task_types import task_of
from .consensus import entry_route_after_label
from .quality import is_paused, quality_check
from .slots import (
    lease_end,
    lock_user,
    locked_entry,
    own_assignment,
    require_open_item,
    slot_take,
    text_changed_conflict,
)

MAX_TIME_SPENT_MS = 2**31 - 1


@dataclass(frozen=True, slots=True)
class SubmitResult:
    annotation: Annotation
    created: bool  # False: an idempotent resubmission (or a change through resubmission)


def _check_time_spent(time_spent_ms) -> int:
    if (
        isinstance(time_spent_ms, bool)
        or not isinstance(time_spent_ms, int)
        or not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS
    ):
        message = f"time_spent_ms must be an integer between 0 and {MAX_TIME_SPENT_MS}"
        raise ServiceError({"detail": message, "errors": {"time_spent_ms": message}}, code="invalid_time_spent")
    return time_spent_ms


def _own_annotation(annotation_id: int, user) -> Annotation:
    annotation = Annotation.all_revisions.filter(pk=annotation_id, user=user).select_related("project").first()
    if annotation is None:
        raise NotFound(f"annotation {annotation_id} does not exist or is not yours", code="not_found")
    if annotation.superseded_at is not None:
        raise text_changed_conflict("annotation", annotation_id)
    return annotation


def _is_honeypot(item_id: int) -> bool:
    return Item.objects.filter(pk=item_id, honeypot=True).exists()


def _refuse_if_paused(project: Project, user) -> None:
    membership = is_paused(project, user)
    if membership is not None:
        message = membership.pause_reason or "you are paused on this project"
        raise Conflict(message, code="paused")


def _finalise_if_complete(project: Project, entry: QueueEntry) -> None:
    """On the item's ``labels_needed``-th annotation, apply the consensus rule; before it, when
    nobody is left to give the missing labels (``consensus.entry_route_after_label``)."""
    entry_route_after_label(project=project, entry=entry)


def annotation_submit(
    *, assignment_id: int, user, label: str | None = None, labels: list[str] | None = None, time_spent_ms: int = 0
) -> SubmitResult:
    """Record the lease holder's answer for the assigned item: a ``label`` name, or for a multi-label
    project a tag set ``labels`` (``task_types``).

    Resubmitting the same answer returns the same annotation (``created=False``); a different
    answer changes it while the item is open. A lease that expired is still accepted when its slot
    can be taken back; otherwise ``Conflict(lease_expired)``.
    """
    time_spent_ms = _check_time_spent(time_spent_ms)
    now = timezone.now()
    with transaction.atomic():
        lock_user(user)
        assignment = own_assignment(assignment_id, user, lock=True, with_item=True)
        project = assignment.project
        task = task_of(project)
        answer = task.parse(project, label=label, labels=labels)
        if assignment.status == AssignmentStatus.SUBMITTED:
            annotation = Annotation.objects.get(item_id=assignment.item_id, user=user)
            if task.answer_of(annotation) != answer:
                _refuse_if_paused(project, user)
                annotation = _annotation_relabel(annotation, task.fields(answer))
            return SubmitResult(annotation, created=False)
        if assignment.status == AssignmentStatus.SKIPPED:
            raise Conflict(f"assignment {assignment_id} was skipped; it cannot be labelled", code="skipped")
        _refuse_if_paused(project, user)

        if _is_honeypot(assignment.item_id):
            annotation = _record(project, user, assignment, task.fields(answer), time_spent_ms, now)
            quality_check(project=project, user=user)
            signals.labels_changed.send(sender=Project, project=project)
            return SubmitResult(annotation, created=True)

        entry = locked_entry(assignment.item_id)
        if assignment.status == AssignmentStatus.EXPIRED:
            if entry is None or entry.labels_taken >= entry.labels_needed:
                raise Conflict(
                    f"the lease of assignment {assignment_id} expired and its slot went to someone else",
                    code="lease_expired",
                )
            slot_take(entry)
        elif entry is None:
            require_open_item(assignment.item_id, entry)

        annotation = _record(project, user, assignment, task.fields(answer), time_spent_ms, now)
        _finalise_if_complete(project, entry)
        signals.labels_changed.send(sender=Project, project=project)
    return SubmitResult(annotation, created=True)


def _annotation_relabel(annotation: Annotation, fields: dict) -> Annotation:
    """Store a changed answer (``fields``: the task type's ``Annotation`` columns for it)."""
    honeypot = _is_honeypot(annotation.item_id)
    if not honeypot:
        entry = locked_entry(annotation.item_id)
        require_open_item(annotation.item_id, entry)
    for name, value in fields.items():
        setattr(annotation, name, value)
    annotation.save(update_fields=[*fields, "updated_at"])
    if honeypot:
        quality_check(project=annotation.project, user=annotation.user)
    signals.labels_changed.send(sender=Project, project=annotation.project)
    return annotation


def annotation_change(
    *, annotation_id: int, user, label: str | None = None, labels: list[str] | None = None
) -> Annotation:
    """Change one's own answer (a label, or a tag set) while the item is neither final nor in review."""
    annotation = _own_annotation(annotation_id, user)
    task = task_of(annotation.project)
    answer = task.parse(annotation.project, label=label, labels=labels)
    with transaction.atomic():
        lock_user(user)
        annotation = _own_annotation(annotation_id, user)
        if task.answer_of(annotation) == answer:
            return annotation
        _refuse_if_paused(annotation.project, user)
        return _annotation_relabel(annotation, task.fields(answer))


def annotation_undo(*, annotation_id: int, user) -> Assignment:
    """Take one's own label back while the item is open: the annotation goes and the same item is
    leased to the same user again (fresh expiry; the slot stays counted, now as a lease)."""
    now = timezone.now()
    with transaction.atomic():
        lock_user(user)
        annotation = _own_annotation(annotation_id, user)
        project = annotation.project
        _refuse_if_paused(project, user)
        assignment = Assignment.objects.select_for_update().filter(item_id=annotation.item_id, user=user).first()
        honeypot = _is_honeypot(annotation.item_id)
        entry = None if honeypot else locked_entry(annotation.item_id)
        if not honeypot:
            require_open_item(annotation.item_id, entry)
        annotation.delete()
        if assignment is None:
            assignment = Assignment(project=project, item_id=annotation.item_id, user=user)
        assignment.status = AssignmentStatus.LEASED
        assignment.leased_at = now
        assignment.expires_at = lease_end(project, now)
        assignment.finished_at = None
        assignment.save()
        assignment.item = entry.item if entry is not None else Item.objects.get(pk=annotation.item_id)
        signals.labels_changed.send(sender=Project, project=project)
    return assignment


def _record(project, user, assignment, fields: dict, time_spent_ms: int, now) -> Annotation:
    """Close the lease as submitted and store the answer (``fields``: the task type's columns), for
    the item's current text."""
    Assignment.objects.filter(pk=assignment.pk).update(status=AssignmentStatus.SUBMITTED, finished_at=now)
    return Annotation.objects.create(
        project=project,
        item_id=assignment.item_id,
        user=user,
        assignment=assignment,
        **fields,
        item_revision=assignment.item.text_revision,
        time_spent_ms=time_spent_ms,
    )
