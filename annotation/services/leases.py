"""The annotator's leases: the next item (a lease), skip, expiry, and keeping the queue fed.

The rules (overlap, expiry, prefetch, fallback, refill) and the lock order are in ``slots``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.utils import timezone

from quorum.errors import Conflict

from .. import ports, quality
from ..models import Assignment, AssignmentStatus, Item, ItemStatus, Project, QueueEntry, QueueReason
from ..selectors import open_slots, queue_snapshot
from .consensus import entry_route_if_stuck
from .quality import is_paused
from .queue import QueueCandidate, queue_replace
from .slots import lease_end, lock_user, own_assignment, slot_release, slot_take

logger = logging.getLogger(__name__)

MAX_LIVE_LEASES = 2  # the item on screen and the prefetched one
SWEEP_LIMIT = 200  # stale leases expired per call (the rest go on the next call)
FALLBACK_STRATEGY = "fallback"


class NextCode:
    QUEUE_EMPTY = "queue_empty"
    LEASE_LIMIT = "lease_limit"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class NextResult:
    """What ``assignment_next`` hands out: a lease (with its queue entry), or why there is none."""

    assignment: Assignment | None
    entry: QueueEntry | None = None
    code: str | None = None
    # The annotator's progress line, read after the lease (``selectors.queue_snapshot``).
    progress: dict | None = None
    # Why there is nothing, in words (``paused``: the reason the member was paused).
    message: str | None = None


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
                slot_release(item_id)
                expired += 1
    return expired


def leases_release(*, user, project: Project | None = None, route: bool = True) -> int:
    """End ``user``'s live leases (in ``project``, or everywhere) at once and give their slots back
    to the queue: the member was removed, lost the annotator role or their account is going.
    ``route``: route the items that nobody is left to label (``consensus.entry_route_if_stuck``).
    Returns how many leases ended. Lock order as everywhere: assignment, then entry."""
    now = timezone.now()
    live = Assignment.objects.filter(user=user, status=AssignmentStatus.LEASED)
    if project is not None:
        live = live.filter(project=project)
    released = 0
    with transaction.atomic():
        for assignment_id, project_id, item_id in live.order_by("id").values_list("id", "project_id", "item_id"):
            changed = Assignment.objects.filter(pk=assignment_id, status=AssignmentStatus.LEASED).update(
                status=AssignmentStatus.EXPIRED, finished_at=now
            )
            if not changed:
                continue
            slot_release(item_id)
            released += 1
            if route:
                owner = project if project is not None else Project.objects.get(pk=project_id)
                entry_route_if_stuck(project=owner, item_id=item_id)
    return released


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
    slot_take(entry)
    expires_at = lease_end(project, now)
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
    """Item order stands in for the strategy until the queue's supply has started (``ports``)."""
    return not ports.queue_supply().started(project)


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
                "item_id", "priority", "score", "reason", "suggested_label_id", "suggested_confidence", "suggested_tags"
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
                suggested_tags=suggested_tags,
            )
            for item_id, priority, score, reason, suggested_label_id, suggested_confidence, suggested_tags in untouched
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


def queue_refill_if_low(*, project: Project, user=None) -> dict:
    """Ask the queue's supply for more when the project's open slots are under the threshold. Never
    raises: a refill is best effort. Returns the queue snapshot it decided on
    (``selectors.queue_snapshot`` for ``user``: the annotator's progress line, with
    ``refill_running`` up to date)."""
    threshold = refill_threshold(project)
    supply = ports.queue_supply()
    if user is not None:
        snapshot = queue_snapshot(project, user, slots_limit=threshold)
    else:
        snapshot = {"open_slots": open_slots(project, limit=threshold)}
    snapshot["refill_running"] = supply.running(project)
    if threshold <= 0 or snapshot["open_slots"] >= threshold or snapshot["refill_running"]:
        return snapshot
    try:
        snapshot["refill_running"] = bool(supply.request(project))
    except Exception:
        logger.exception("refill request for project %s failed", project.pk)
    return snapshot


def _decoy_entry(project: Project, item: Item) -> QueueEntry:
    """What a honeypot is served with in place of a queue entry: the reason of the entry the
    annotator would otherwise have got (the head of the queue), no suggestion, so that nothing in
    the payload tells it from the items around it."""
    reason = (
        QueueEntry.objects.filter(project=project, labels_taken__lt=F("labels_needed"))
        .order_by("-priority", "id")
        .values_list("reason", flat=True)
        .first()
    )
    if reason is None:
        reason = QueueReason.FALLBACK if _fallback_allowed(project) else QueueReason.ACQUISITION
    return QueueEntry(project=project, item=item, reason=reason, priority=0.0, labels_needed=1)


def served_entry(project: Project, item: Item) -> QueueEntry | None:
    """The queue entry an assignment's payload shows: the item's own, or for a honeypot the decoy
    that ``next`` served it with (``_decoy_entry``), so skip and undo responses look alike too."""
    entry = QueueEntry.objects.filter(item_id=item.pk).select_related("suggested_label").first()
    if entry is None and item.honeypot:
        return _decoy_entry(project, item)
    return entry


def _honeypot_lease(project: Project, user, now) -> NextResult | None:
    """Lease a honeypot to ``user`` when one is due (``quality.honeypot_due``) and one they have
    not been handed remains; ``None`` otherwise. Honeypots live outside the queue: no slot is
    counted, any number of annotators may hold the same one."""
    if project.honeypot_rate <= 0 and project.onboarding_honeypots <= 0:
        return None
    served = Assignment.objects.filter(project=project, user=user).exclude(status=AssignmentStatus.EXPIRED).count()
    chance = quality.draw(settings.SECRET_KEY, "honeypot", project.pk, user.pk, served)
    if not quality.honeypot_due(
        items_served=served, rate=project.honeypot_rate, onboarding=project.onboarding_honeypots, chance=chance
    ):
        return None
    taken = Assignment.objects.filter(item_id=OuterRef("pk"), user=user).exclude(status=AssignmentStatus.EXPIRED)
    item = Item.objects.filter(project=project, honeypot=True).filter(~Exists(taken)).order_by("?").first()
    if item is None:
        return None
    expires_at = lease_end(project, now)
    assignment, _ = Assignment.objects.update_or_create(
        item=item,
        user=user,
        defaults={
            "project": project,
            "status": AssignmentStatus.LEASED,
            "leased_at": now,
            "expires_at": expires_at,
            "finished_at": None,
        },
    )
    assignment.item = item
    return NextResult(assignment, _decoy_entry(project, item))


def assignment_next(*, project: Project, user, held: Iterable[int] = ()) -> NextResult:
    """Hand ``user`` the next item of ``project`` (see the module docstring for the rules).

    A member paused by quality control (``services.quality``) gets nothing: ``code`` ``paused``
    and the reason in ``message``. Honeypots are served at the project's rate and during
    onboarding (``quality.honeypot_due``) before the queue is looked at."""
    paused = is_paused(project, user)
    if paused is not None:
        return NextResult(None, code=NextCode.PAUSED, message=paused.pause_reason)
    if _sweep_due(project):
        leases_expire(project=project)
    held_ids = {int(assignment_id) for assignment_id in held}
    now = timezone.now()
    with transaction.atomic():
        lock_user(user)
        live = list(
            Assignment.objects.filter(
                project=project, user=user, status=AssignmentStatus.LEASED, expires_at__gte=now
            ).order_by("leased_at", "id")
        )
        for assignment in live:
            if assignment.pk not in held_ids:
                assignment.expires_at = lease_end(project, now)
                Assignment.objects.filter(pk=assignment.pk).update(expires_at=assignment.expires_at)
                entry = (
                    QueueEntry.objects.filter(item_id=assignment.item_id)
                    .select_related("item", "suggested_label")
                    .first()
                )
                assignment.item = entry.item if entry is not None else Item.objects.get(pk=assignment.item_id)
                if entry is None and assignment.item.honeypot:
                    entry = _decoy_entry(project, assignment.item)
                return NextResult(assignment, entry)
        if len(live) >= MAX_LIVE_LEASES:
            return NextResult(None, code=NextCode.LEASE_LIMIT)

        honeypot = _honeypot_lease(project, user, now)
        if honeypot is not None:
            assignment, entry = honeypot.assignment, honeypot.entry
        else:
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
        lock_user(user)
        assignment = own_assignment(assignment_id, user, lock=True)
        if assignment.status == AssignmentStatus.SKIPPED:
            return assignment
        if assignment.status == AssignmentStatus.SUBMITTED:
            raise Conflict(f"assignment {assignment_id} is already labelled; undo it first", code="already_submitted")
        if assignment.status == AssignmentStatus.LEASED:
            slot_release(assignment.item_id)
        assignment.status = AssignmentStatus.SKIPPED
        assignment.finished_at = now
        assignment.skip_reason = (reason or "")[:500]
        assignment.save(update_fields=["status", "finished_at", "skip_reason"])
        # The last one who could have labelled it gave it back: the item does not wait for ever.
        entry_route_if_stuck(project=assignment.project, item_id=assignment.item_id)
    return assignment
