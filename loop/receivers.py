"""The loop's answers to what the people side announces (``annotation.signals``); connected when
Django starts (``loop.apps``)."""

from __future__ import annotations

from django.dispatch import receiver

from annotation.signals import batch_stored, labels_changed

from .enqueue import INGEST_BATCH_PROCESS, enqueue_on_commit
from .services.aggregation import aggregation_request


@receiver(batch_stored, dispatch_uid="loop.after_push")
def after_push(sender, *, project, batch, **kwargs) -> None:
    """A push stored items: process the batch on a worker once it commits (``services.push``). A lost
    message leaves the batch ``received``; its items are picked up by the next push."""
    enqueue_on_commit(INGEST_BATCH_PROCESS, batch.pk)


@receiver(labels_changed, dispatch_uid="loop.after_labels")
def after_labels(sender, *, project, **kwargs) -> None:
    """Labels changed: aggregate the project soon (debounced, ``services.aggregation``)."""
    aggregation_request(project=project)
