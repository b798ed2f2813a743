"""Celery tasks of the annotation app: thin, idempotent wrappers that take ids and call services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def ingest_batch_process(batch_id: int) -> dict:
    return services.ingest_batch_process(batch_id)


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def project_aggregate_task(project_id: int) -> dict:
    """The debounced aggregation of one project (``services.aggregation``). Clears the request flag
    first, so submissions during the run schedule the next one; safe to run twice."""
    from .models import Project
    from .services.aggregation import aggregation_started, project_aggregate

    aggregation_started(project_id=project_id)
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "missing"}
    snapshot = project_aggregate(project=project)
    # Enough new final labels since the current model? Then the loop trains, gates and re-scores.
    from acquisition.services.loop import retrain_if_due

    job = retrain_if_due(project=project)
    return {
        "training_job": job.pk if job else None,
        "project": project_id,
        "snapshot": snapshot.pk,
        "duration_ms": snapshot.duration_ms,
    }
