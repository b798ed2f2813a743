"""Expert review: reviewers claim the next open task and decide the item's label.

Rules
-----
- Reviewers and admins of the project only (``PermissionDenied``; a non-member gets ``NotFound``).
- ``review_next`` hands the reviewer their own live claim again if they hold one, else claims the
  open task with the highest ``priority`` (the value of deciding it: one minus the posterior margin,
  so disputed items first), then the oldest. A claim lasts the project's ``lease_seconds``; an
  expired claim is free for anyone. On PostgreSQL the pick is ``SELECT … FOR UPDATE SKIP LOCKED``,
  so two reviewers never wait on each other nor get the same task; SQLite serialises writers.
- ``review_resolve`` records the decision: the item's final answer (``final_source = review``,
  confidence 1.0), the item final, who decided and when on the task. The answer is read by the
  project's task type (``task_types``): a ``label`` name (``decision``, ``Item.final_label``), or on
  a multi-label project a tag set ``labels`` (``decision_tags``, ``Item.final_tags``; no final
  label); the other field is a 400 that names it. A claim is advisory: any reviewer may resolve an
  open task. Resolving a resolved task again with the same answer by the same reviewer returns it
  unchanged; anything else is a ``Conflict`` (409). The decision is gold for the next aggregation
  (which is requested): it calibrates every annotator's confusion matrix.
- ``label_error_reviews_open`` opens review tasks with the reason ``label_error`` for labels the
  model suspects (``acquisition.services.label_errors``, after a retrain; the loop calls it), in
  the order given (surest first), at most ``cap`` of them. Only a final label whose source is
  ``consensus`` is questioned, and only while it is still the label that was judged: gold and
  reviewed labels never are. An item is never flagged twice for the same label: not while any
  review task of it is open, and not after a reviewer decided a label-error task of it with that
  label (the decision makes it a review label anyway). The item stays final with its label (it
  keeps counting for training and export until a reviewer decides); the task carries the model's
  alternative (``model_label``, ``model_confidence``: its out-of-fold probability) and, like every
  task, the annotators' posterior and the value of deciding it as its priority (one minus the
  posterior margin: two agreeing annotators make a low value, so disputed items, which have no
  label at all, are served first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from quorum.chunks import iter_chunks
from quorum.errors import Conflict, NotFound, PermissionDenied, ServiceError

from .. import routing, signals
from ..models import (
    ANNOTATOR_KEY,
    Annotation,
    Assignment,
    AssignmentStatus,
    Item,
    ItemStatus,
    LabelClass,
    LabelSource,
    Project,
    QueueEntry,
    ReviewStatus,
    ReviewTask,
    Role,
)
from ..selectors import has_role, role_in_project
from ..task_types import task_of
from .consensus import item_posterior, posterior_json

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


def review_resolve(
    *, review_id: int, user, label: str | None = None, labels: list[str] | None = None, note: str = ""
) -> ReviewTask:
    """Decide a review task: the answer (a ``label``, or a tag set ``labels`` on a multi-label
    project) becomes the item's final (review) answer. Idempotent for the same reviewer and answer;
    ``Conflict`` when already decided otherwise."""
    task = ReviewTask.objects.select_related("project").filter(pk=review_id).first()
    if task is None:
        raise NotFound(f"review {review_id} does not exist", code="not_found")
    _require_reviewer(user, task.project)
    kind = task_of(task.project)
    decision = kind.parse(task.project, label=label, labels=labels)
    # The answer's columns: ``label_id`` / ``tags`` on an annotation are ``decision`` /
    # ``decision_tags`` on the task and ``final_label`` / ``final_tags`` on the item.
    columns = kind.fields(decision)
    note = "" if note is None else str(note)
    if len(note) > MAX_NOTE_CHARS:
        message = f"note is longer than {MAX_NOTE_CHARS} characters"
        raise ServiceError({"detail": message, "errors": {"note": message}}, code="invalid_note")
    now = timezone.now()
    with transaction.atomic():
        task = ReviewTask.objects.select_for_update(of=("self",)).select_related("project").get(pk=review_id)
        if task.status == ReviewStatus.CANCELLED:
            raise Conflict(
                f"review {review_id} was cancelled: a push changed the item's text, which is a new question now",
                code="review_cancelled",
            )
        if task.status == ReviewStatus.RESOLVED:
            same = kind.stored_answer(task.decision_id, task.decision_tags) == decision
            if task.resolved_by_id == user.pk and same:
                return task
            who = "you" if task.resolved_by_id == user.pk else "another reviewer"
            raise Conflict(f"review {review_id} was already resolved by {who}", code="already_resolved")
        task.status = ReviewStatus.RESOLVED
        task.decision_id = columns["label_id"]
        task.decision_tags = columns["tags"]
        task.note = note
        task.resolved_by = user
        task.resolved_at = now
        task.claimed_until = None
        task.save(
            update_fields=["status", "decision", "decision_tags", "note", "resolved_by", "resolved_at", "claimed_until"]
        )
        # An item in review has no queue entry; should one exist, it goes with its leases.
        Assignment.objects.filter(item_id=task.item_id, status=AssignmentStatus.LEASED).update(
            status=AssignmentStatus.EXPIRED, finished_at=now
        )
        QueueEntry.objects.filter(item_id=task.item_id).delete()
        Item.objects.filter(pk=task.item_id).update(
            status=ItemStatus.FINALIZED,
            final_label_id=columns["label_id"],
            final_tags=columns["tags"],
            final_confidence=1.0,
            final_source=LabelSource.REVIEW,
            finalized_at=now,
            updated_at=now,
        )
        signals.labels_changed.send(sender=Project, project=task.project)
    return task


# --- suspected label errors ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SuspectedLabelError:
    """A final label the model contradicts: the item, the label it was judged with, the model's
    alternative and the model's (out-of-fold) probability of it."""

    item_id: int
    given_label_id: int
    model_label_id: int
    model_confidence: float


def label_error_reviews_open(
    *, project: Project, suspects: Sequence[SuspectedLabelError], cap: int
) -> list[ReviewTask]:
    """Open ``label_error`` review tasks for the first ``cap`` eligible suspects, in the order given
    (module docstring). Returns the tasks opened; nothing when ``cap`` is 0 or less. One transaction,
    serialised with the aggregation by the project row's lock."""
    cap = int(cap)
    if cap <= 0 or not suspects:
        return []
    item_ids = list(dict.fromkeys(int(s.item_id) for s in suspects))
    opened: list[ReviewTask] = []
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        labels = set(LabelClass.objects.filter(project=project).values_list("pk", flat=True))
        current: dict[int, tuple[int, float | None]] = {}
        blocked: set[int] = set()
        confirmed: set[tuple[int, int]] = set()
        for chunk in iter_chunks(item_ids, 2000):
            for pk, label_id, confidence in Item.objects.filter(
                pk__in=chunk, project=project, status=ItemStatus.FINALIZED, final_source=LabelSource.CONSENSUS
            ).values_list("pk", "final_label_id", "final_confidence"):
                current[pk] = (label_id, confidence)
            blocked.update(
                ReviewTask.objects.filter(item_id__in=chunk, status=ReviewStatus.OPEN).values_list("item_id", flat=True)
            )
            confirmed.update(
                ReviewTask.objects.filter(
                    item_id__in=chunk, reason=routing.ReviewReason.LABEL_ERROR, status=ReviewStatus.RESOLVED
                ).values_list("item_id", "decision_id")
            )
        chosen: list[SuspectedLabelError] = []
        for suspect in suspects:
            item_id, given = int(suspect.item_id), int(suspect.given_label_id)
            if len(chosen) >= cap:
                break
            if (
                item_id in blocked
                or item_id not in current
                or current[item_id][0] != given
                or (item_id, given) in confirmed
                or int(suspect.model_label_id) == given
                or int(suspect.model_label_id) not in labels
            ):
                continue
            blocked.add(item_id)
            chosen.append(suspect)
        annotations: dict[int, list[tuple[int, int]]] = {}
        for item_id, user_id, label_id in (
            Annotation.objects.filter(item_id__in=[s.item_id for s in chosen])
            .order_by("id")
            .values_list("item_id", ANNOTATOR_KEY, "label_id")
        ):
            annotations.setdefault(item_id, []).append((user_id, label_id))
        for suspect in chosen:
            given, confidence = current[int(suspect.item_id)]
            votes = annotations.get(int(suspect.item_id))
            posterior = (
                item_posterior(project.pk, votes) if votes else {given: 1.0 if confidence is None else confidence}
            )
            vector = [p for _, p in sorted(posterior.items())]
            try:
                with transaction.atomic():
                    task = ReviewTask.objects.create(
                        project=project,
                        item_id=int(suspect.item_id),
                        reason=routing.ReviewReason.LABEL_ERROR.value,
                        status=ReviewStatus.OPEN,
                        priority=float(routing.label_value([vector])[0]),
                        posterior=posterior_json(posterior),
                        model_label_id=int(suspect.model_label_id),
                        model_confidence=float(suspect.model_confidence),
                    )
            except IntegrityError:  # another task of the item opened meanwhile: it stands
                continue
            opened.append(task)
    return opened
