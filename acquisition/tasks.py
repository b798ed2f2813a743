"""Celery tasks of the model side: thin, idempotent wrappers that take ids and call services.

``items_embed`` and ``model_train`` go to the ``gpu`` queue (``CELERY_TASK_ROUTES``); scoring runs
and their chunks to ``default``. Nothing big travels through the broker: chunks return shortlists
of ids and scores, vectors are read from the database (and the worker's cache).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction

from annotation.models import Project
from quorum.errors import ServiceError

from .services import drift, embedding, loop, scoring, training

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True, autoretry_for=(Exception,), dont_autoretry_for=(ServiceError,), retry_backoff=True, max_retries=5
)
def items_embed(project_id: int, item_ids: list[int] | None = None) -> dict:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "missing"}
    try:
        report = embedding.items_embed(project=project, item_ids=item_ids)
    except ServiceError as exc:
        logger.error("embedding items of project %s: %s", project_id, exc.detail)
        return {"project": project_id, "status": "error", "error": exc.detail}
    if report.embedded:
        with transaction.atomic():
            scoring.scoring_request(project=project, trigger="ingest")
        drift.drift_pending_check(project=project)
        loop.retrain_if_due(project=project)  # labels that waited for their vectors can train now
    return report.as_dict()


@shared_task(acks_late=True)
def scoring_run_execute(run_id: int) -> dict:
    return scoring.scoring_run_execute(run_id)


@shared_task(acks_late=True)
def scoring_chunk_score(run_id: int, index: int, lo: int, hi: int, seed: int) -> dict:
    try:
        return scoring.chunk_score(run_id, index, lo, hi, seed)
    except Exception as exc:
        scoring.scoring_run_fail(run_id=run_id, error=exc)
        raise


@shared_task(acks_late=True)
def scoring_run_reduce(results: list[dict], run_id: int, seed: int) -> dict:
    return scoring.run_reduce(results, run_id, seed)


@shared_task(
    acks_late=True, autoretry_for=(Exception,), dont_autoretry_for=(ServiceError,), retry_backoff=True, max_retries=3
)
def model_train(project_id: int) -> dict:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "missing"}
    try:
        version = training.model_train(project=project)
    except ServiceError as exc:
        return {"project": project_id, "status": "error", "error": exc.detail}
    if version.status == version.Status.CURRENT:
        with transaction.atomic():
            scoring.scoring_request(project=project, trigger="retrain")
    return {"project": project_id, "model_version": version.pk, "version": version.version, "status": version.status}


@shared_task(acks_late=True)
def training_job_run(job_id: int) -> dict:
    """One turn of the loop (``services.loop.training_job_execute``): train, gate, re-score."""
    return loop.training_job_execute(job_id)


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=3)
def retrain_if_due(project_id: int) -> dict:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "missing"}
    job = loop.retrain_if_due(project=project)
    return {"project": project_id, "job": job.pk if job else None}
