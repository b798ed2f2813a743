"""Celery tasks of the annotation app: thin, idempotent wrappers that take ids and call services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def ingest_batch_process(batch_id: int) -> dict:
    return services.ingest_batch_process(batch_id)
