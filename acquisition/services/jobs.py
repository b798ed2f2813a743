"""What scoring runs and training jobs share: one active job per project, lost jobs superseded,
heartbeats, failures recorded. ``model`` is ``ScoringRun`` or ``TrainingJob`` (both have ``status``,
``ACTIVE``, ``created_at``, ``started_at``, ``heartbeat_at``, ``finished_at`` and ``error``, and a
partial unique constraint that allows one pending or running row per project).

A job is *lost* when it can no longer finish by itself:

- ``running`` and silent (no heartbeat, ``loop.heartbeat``) for ``QUORUM_JOB_HEARTBEAT_TIMEOUT``
  seconds: its worker died;
- ``pending`` for ``QUORUM_JOB_PENDING_TIMEOUT`` seconds since its message was sent: the message
  never arrived (a broker outage) or waits behind a long queue (``loop.services.sweep`` sends it
  again; a duplicate finds the job taken and does nothing);
- active for longer than the model's stale limit (``QUORUM_SCORING_STALE_SECONDS``,
  ``QUORUM_TRAINING_STALE_SECONDS``) without having started since: the old upper bound.

A lost job is marked failed ("superseded: …") by the next request for a job of its kind or by the
sweep, so a dead worker or broker costs seconds, not the stale limit. A redelivered message of a
superseded job finds it failed and does nothing (``scoring_run_claim``, the training job's claim).
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

logger = logging.getLogger(__name__)


def heartbeat_timeout() -> float:
    return float(settings.QUORUM_JOB_HEARTBEAT_TIMEOUT)


def pending_timeout() -> float:
    return float(settings.QUORUM_JOB_PENDING_TIMEOUT)


def active_job_create(model, *, project, stale_seconds: int, **fields):
    """A new pending job of ``project``, or ``None`` while the project has an active one. Lost active
    jobs (module docstring) are marked failed first."""
    with transaction.atomic():
        stale_jobs_expire(model, project=project, stale_seconds=stale_seconds)
        if model.objects.filter(project=project, status__in=model.ACTIVE).exists():
            return None
        try:
            with transaction.atomic():
                return model.objects.create(project=project, heartbeat_at=timezone.now(), **fields)
        except IntegrityError:  # another request created the active job between our check and insert
            return None


def _silent(model):
    """The model's active jobs with their last sign of life (``last_seen``) annotated."""
    return model.objects.filter(status__in=model.ACTIVE).annotate(
        last_seen=Coalesce("heartbeat_at", "started_at", "created_at")
    )


def lost_q(*, stale_seconds: int, pending: bool = True, now=None) -> Q:
    """The condition of a lost job on a queryset from ``_silent`` (module docstring); without
    ``pending``, a pending job only counts once it passed the stale limit."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stale_seconds)
    lost = Q(status="running", last_seen__lt=now - timedelta(seconds=heartbeat_timeout())) | (
        Q(created_at__lt=cutoff) & ~Q(started_at__gte=cutoff)
    )
    if pending:
        lost |= Q(status="pending", last_seen__lt=now - timedelta(seconds=pending_timeout()))
    return lost


def lost_jobs(model, *, stale_seconds: int, project=None, pending: bool = True):
    """The lost active jobs (module docstring), of ``project`` or of every project."""
    jobs = _silent(model).filter(lost_q(stale_seconds=stale_seconds, pending=pending))
    return jobs.filter(project=project) if project is not None else jobs


def stale_jobs_expire(model, *, project=None, stale_seconds: int, pending: bool = True) -> list[int]:
    """Mark lost active jobs failed, of ``project`` or of every project (``pending=False``: a
    pending job only past the stale limit; the sweep sends the others again instead). Returns the
    ids of the projects whose job was failed."""
    now = timezone.now()
    lost = lost_jobs(model, stale_seconds=stale_seconds, project=project, pending=pending)
    expired = []
    rows = lost.values_list("pk", "project_id", "status", "heartbeat_at", "last_seen")
    for job_id, project_id, status, heartbeat_at, last_seen in rows:
        silent = (now - last_seen).total_seconds() if last_seen else 0.0
        why = "never picked up by a worker" if status == "pending" else "no heartbeat from its worker"
        # Conditional on what was read: a heartbeat or a claim in between keeps the job alive.
        if model.objects.filter(pk=job_id, status=status, heartbeat_at=heartbeat_at).update(
            status=model.Status.FAILED,
            error=f"superseded: {why} for {silent:.0f} s (worker or broker lost?)",
            finished_at=now,
        ):
            logger.warning("%s %s superseded: %s for %.0f s", model._meta.verbose_name, job_id, why, silent)
            expired.append(project_id)
    return expired


def job_heartbeat(model, *, job_id: int) -> bool:
    """The worker running the job is alive: record it. Returns whether the job is still running (a
    superseded job's worker can stop)."""
    return bool(model.objects.filter(pk=job_id, status=model.Status.RUNNING).update(heartbeat_at=timezone.now()))


def job_sent(model, *, job_id: int) -> bool:
    """The pending job's message was sent (again): its pending time starts over."""
    return bool(model.objects.filter(pk=job_id, status=model.Status.PENDING).update(heartbeat_at=timezone.now()))


def job_claimable(job) -> bool:
    """Whether a worker may (re)start ``job`` (locked): pending, or running but lost (its message
    was redelivered after its worker died). A running job with a live heartbeat belongs to another
    worker: a duplicate message leaves it alone."""
    if job.status == job.Status.PENDING:
        return True
    if job.status != job.Status.RUNNING:
        return False
    last = job.heartbeat_at or job.started_at or job.created_at
    return last is None or (timezone.now() - last).total_seconds() > heartbeat_timeout()


def job_fail(model, *, job_id: int, error: BaseException | str) -> None:
    """Mark an active job failed with the error (a later request can then start a new one)."""
    if isinstance(error, BaseException):
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        logger.error("%s %s failed: %s", model._meta.verbose_name, job_id, text, exc_info=error)
    else:
        text = error
    model.objects.filter(pk=job_id, status__in=model.ACTIVE).update(
        status=model.Status.FAILED, error=text[:5000], finished_at=timezone.now()
    )
