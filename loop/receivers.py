"""The loop's answers to what the people side announces (``annotation.signals``); connected when
Django starts (``loop.apps``)."""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from acquisition.models import ModelVersion
from acquisition.services.files import project_files_remove, weights_remove
from annotation.models import Project
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


@receiver(post_delete, sender=ModelVersion, dispatch_uid="loop.after_model_version_delete")
def after_model_version_delete(sender, *, instance, **kwargs) -> None:
    """A model version's row went: its weights file goes once that commits (never on a rollback)."""
    if instance.weights:
        transaction.on_commit(partial(weights_remove, instance.weights.name, instance.weights.storage))


@receiver(post_delete, sender=Project, dispatch_uid="loop.after_project_delete")
def after_project_delete(sender, *, instance, **kwargs) -> None:
    """A project went: its embedding cache and weights folders go once that commits."""
    transaction.on_commit(partial(project_files_remove, instance.pk))
