"""Expert review: reviewers claim the next open task and decide the item's label.

Rules
-----
- Reviewers and admins of the project only (``PermissionDenied``; a non-member gets ``NotFound``).
- ``review_next`` hands the reviewer their own live claim again if they hold one, else claims the
  open task with the highest ``priority`` (the value of deciding it: one minus the posterior margin,
  so disputed items first), then the oldest. A claim lasts the project's ``lease_seconds``; an
  expired claim is free for anyone. On PostgreSQL the pick is ``SELECT … FOR UPDATE SKIP LOCKED``,
  so two reviewers never wait on each other nor get the same task; SQLite serialises writers.
- ``review_resolve`` records the decision: the item's final label (``final_source = review``,
  confidence 1.0), the item final, who decided and when on the task. A claim is advisory: any
  reviewer may resolve an open task. Resolving a resolved task again with the same label by the
  same reviewer returns it unchanged; anything else is a ``Conflict`` (409). The decision is gold
  for the next aggregation (which is requested): it calibrates every annotator's confusion matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from quorum.errors import Conflict, NotFound, PermissionDenied, ServiceError

from .. import signals
from ..models import (
    Assignment,
    AssignmentStatus,
    Item,
    ItemStatus,
    LabelSource,
    Project,
    QueueEntry,
    ReviewStatus,
    ReviewTask,
    Role,
)
from ..selectors import has_role, label_by_name, role_in_project

MAX_NOTE_CHARS = 5000


@dataclass(frozen=True, slots=True)
class ReviewNext:
    review: ReviewTask | None
    open: int


def _require_reviewer(user, project: Project) -> None:
    role = role_in_project(user, project)
    if role is None:
        raise NotFound(f"project {project.pk} does not exist or you are not a member of it", code="not_found")
    if not has_role(role, Role.REVIEWER):
        raise PermissionDenied(f"reviewing needs the reviewer role in project {project.pk}; you are {role}")


def review_next(*, project: Project, user) -> ReviewNext:
    """Claim the next open review task of ``project`` for ``user`` (see the module docstring)."""
    _require_reviewer(user, project)
    now = timezone.now()
    until = now + timedelta(seconds=project.lease_seconds)
    with transaction.atomic():
        task = (
            ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(project=project, status=ReviewStatus.OPEN, claimed_by=user, claimed_until__gte=now)
            .order_by("-priority", "created_at", "id")
            .first()
        )
        if task is None:
            task = (
                ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(project=project, status=ReviewStatus.OPEN)
                .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now) | Q(claimed_by=user))
                .order_by("-priority", "created_at", "id")
                .first()
            )
        if task is not None:
            ReviewTask.objects.filter(pk=task.pk).update(claimed_by=user, claimed_until=until)
            task.claimed_by, task.claimed_until = user, until
        open_count = ReviewTask.objects.filter(project=project, status=ReviewStatus.OPEN).count()
    return ReviewNext(task, open_count)


def review_resolve(*, review_id: int, user, label: str, note: str = "") -> ReviewTask:
    """Decide a review task: the label becomes the item's final (review) label. Idempotent for the
    same reviewer and label; ``Conflict`` when already decided otherwise."""
    task = ReviewTask.objects.select_related("project").filter(pk=review_id).first()
    if task is None:
        raise NotFound(f"review {review_id} does not exist", code="not_found")
    _require_reviewer(user, task.project)
    decision = label_by_name(task.project_id, label)
    note = "" if note is None else str(note)
    if len(note) > MAX_NOTE_CHARS:
        message = f"note is longer than {MAX_NOTE_CHARS} characters"
        raise ServiceError({"detail": message, "errors": {"note": message}}, code="invalid_note")
    now = timezone.now()
    with transaction.atomic():
        task = ReviewTask.objects.select_for_update(of=("self",)).select_related("project").get(pk=review_id)
        if task.status == ReviewStatus.RESOLVED:
            if task.resolved_by_id == user.pk and task.decision_id == decision.pk:
                return task
            who = "you" if task.resolved_by_id == user.pk else "another reviewer"
            raise Conflict(f"review {review_id} was already resolved by {who}", code="already_resolved")
        task.status = ReviewStatus.RESOLVED
        task.decision = decision
        task.note = note
        task.resolved_by = user
        task.resolved_at = now
        task.claimed_until = None
        task.save(update_fields=["status", "decision", "note", "resolved_by", "resolved_at", "claimed_until"])
        # An item in review has no queue entry; should one exist, it goes with its leases.
        Assignment.objects.filter(item_id=task.item_id, status=AssignmentStatus.LEASED).update(
            status=AssignmentStatus.EXPIRED, finished_at=now
        )
        QueueEntry.objects.filter(item_id=task.item_id).delete()
        Item.objects.filter(pk=task.item_id).update(
            status=ItemStatus.FINALIZED,
            final_label=decision,
            final_confidence=1.0,
            final_source=LabelSource.REVIEW,
            finalized_at=now,
            updated_at=now,
        )
        signals.labels_changed.send(sender=Project, project=task.project)
    return task
