"""Annotator quality control: honeypot scores, pausing, and the figures of the annotator table.

The rules (which item is a honeypot, when an annotator is paused, the Wilson interval) are pure,
in ``annotation.quality``; this module applies them to the database.

- A honeypot answer is scored when it is submitted or changed (``quality_check``, called by
  ``annotations`` inside the same transaction): correct when its label is the honeypot's label (on a
  multi-label project: its tag set is the honeypot's set).
- Only answers given since the member's last reinstatement count (``Membership.reinstated_at``;
  the annotation's ``created_at``): an admin who reinstates someone gives them a fresh start, so the
  same old wrong answers do not pause them again at their next submission.
- Pausing sets ``Membership.paused_at`` and ``pause_reason`` and ends the member's live leases in
  the project (their slots go back to the queue for others). ``next`` then answers ``paused``.
- Owners of the project's other rules read the pause from the membership row: ``is_paused``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from .. import quality
from ..models import Annotation, Assignment, AssignmentStatus, Membership, Project
from .slots import slot_release


@dataclass(frozen=True, slots=True)
class HoneypotScore:
    correct: int
    answered: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return quality.wilson_interval(self.correct, self.answered)


def honeypot_scores(project: Project, user_ids=None) -> dict[int, HoneypotScore]:
    """Per annotator: honeypot answers since their last reinstatement, and how many are correct.
    One grouped query (``user_ids`` limits it to some annotators)."""
    answers = Annotation.objects.filter(project=project, item__honeypot=True)
    if user_ids is not None:
        answers = answers.filter(user_id__in=list(user_ids))
    reinstated_later = Membership.objects.filter(
        project=project, user_id=OuterRef("user_id"), reinstated_at__gt=OuterRef("created_at")
    )
    rows = (
        answers.filter(~Exists(reinstated_later))
        .order_by()
        .values("user_id")
        .annotate(
            answered=Count("id"),
            # the same label, or on a multi-label project the same tag set (both stored sorted)
            correct=Count(
                "id",
                filter=Q(label_id=F("item__final_label_id")) | (Q(tags__isnull=False) & Q(tags=F("item__final_tags"))),
            ),
        )
    )
    return {row["user_id"]: HoneypotScore(row["correct"], row["answered"]) for row in rows}


def is_paused(project: Project, user) -> Membership | None:
    """The user's membership when they are paused on the project, else ``None``."""
    return Membership.objects.filter(project=project, user=user, paused_at__isnull=False).first()


def membership_pause(*, project: Project, user, reason: str, now=None) -> bool:
    """Pause a member (idempotent): ``paused_at``, ``pause_reason``, and their live leases of the
    project end (status ``expired``, slots released). Call inside the caller's transaction, after
    ``slots.lock_user(user)``. Returns whether this call paused them."""
    now = now or timezone.now()
    paused = Membership.objects.filter(project=project, user=user, paused_at__isnull=True).update(
        paused_at=now, pause_reason=reason[:500]
    )
    if not paused:
        return False
    live = list(
        Assignment.objects.select_for_update()
        .filter(project=project, user=user, status=AssignmentStatus.LEASED)
        .order_by("id")
        .values_list("id", "item_id")
    )
    for assignment_id, item_id in live:
        Assignment.objects.filter(pk=assignment_id).update(status=AssignmentStatus.EXPIRED, finished_at=now)
        slot_release(item_id)
    return True


def quality_check(*, project: Project, user) -> bool:
    """Score the member's honeypot answers and pause them when under the project's minimum
    (``quality.should_pause``). Returns whether they are paused now."""
    if project.min_honeypot_accuracy <= 0:
        return False
    score = honeypot_scores(project, [user.pk]).get(user.pk, HoneypotScore(0, 0))
    if not quality.should_pause(
        correct=score.correct,
        answered=score.answered,
        min_accuracy=project.min_honeypot_accuracy,
        min_answered=project.min_honeypots,
    ):
        return False
    reason = quality.pause_reason(
        correct=score.correct, answered=score.answered, min_accuracy=project.min_honeypot_accuracy
    )
    membership_pause(project=project, user=user, reason=reason)
    return True
