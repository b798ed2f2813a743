"""What scoring runs and training jobs share: one active job per project, stale jobs superseded,
failures recorded. ``model`` is ``ScoringRun`` or ``TrainingJob`` (both have ``status``, ``ACTIVE``,
``created_at``, ``started_at``, ``finished_at`` and ``error``, and a partial unique constraint that
allows one pending or running row per project)."""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)


def active_job_create(model, *, project, stale_seconds: int, **fields):
    """A new pending job of ``project``, or ``None`` while the project has an active one. Active jobs
    older than ``stale_seconds`` (their worker was lost) are marked failed first."""
    with transaction.atomic():
        stale_jobs_expire(model, project=project, stale_seconds=stale_seconds)
        if model.objects.filter(project=project, status__in=model.ACTIVE).exists():
            return None
        try:
            with transaction.atomic():
                return model.objects.create(project=project, **fields)
        except IntegrityError:  # another request created the active job between our check and insert
            return None


def stale_jobs_expire(model, *, project, stale_seconds: int) -> int:
    """Mark the project's stale active jobs failed. Returns how many."""
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    stale = model.objects.filter(project=project, status__in=model.ACTIVE, created_at__lt=cutoff).exclude(
        started_at__gte=cutoff
    )
    return stale.update(
        status=model.Status.FAILED,
        error=f"superseded: no result after {stale_seconds} s (worker lost?)",
        finished_at=timezone.now(),
    )


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
