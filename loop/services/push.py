"""What follows a push, and what follows an embedding pass.

A push that stored new or changed items (``annotation.signals.batch_stored``) sends
``ingest_batch_process`` once it commits. That task marks the batch processed, then:

- items wait for a vector → they are marked queued and the encoder runs (``items_embed``, on the
  ``gpu`` queue by the task routes);
- every vector is there (the push brought them) → a scoring run is requested and the batch is
  checked for drift at once.

After an embedding pass that stored vectors: a scoring run is requested (the new items can enter
the queue), waiting drift checks run, and the retrain trigger is checked (labels that waited for
their vectors can train now).

Both are idempotent: a repeated call finds nothing new to mark and at most enqueues an embedding
task that finds nothing to do.
"""

from __future__ import annotations

import logging

from django.db import transaction

from acquisition.services import embedding
from acquisition.services.drift import drift_pending_check
from annotation.models import EmbeddingState, Item, Project
from annotation.services.ingest import ingest_batch_mark_processed
from quorum.errors import ServiceError

from ..enqueue import ITEMS_EMBED, enqueue_on_commit
from .scoring import scoring_request
from .training import retrain_if_due

logger = logging.getLogger(__name__)


def ingest_batch_process(batch_id: int) -> dict:
    """The worker side of a push (module docstring)."""
    with transaction.atomic():
        batch = ingest_batch_mark_processed(batch_id)
        if batch is None:
            return {"batch": batch_id, "status": "missing"}
        project = batch.project
        embedding.items_embed_mark_queued(project=project)
        waiting = Item.objects.filter(
            project_id=project.pk, embedding_state__in=[EmbeddingState.PENDING, EmbeddingState.QUEUED]
        ).count()
        run = None
        if waiting:  # a lost message leaves the items queued; the next push enqueues them again
            enqueue_on_commit(ITEMS_EMBED, project.pk)
        else:
            run = scoring_request(project=project, trigger="ingest")
    if not waiting:  # every vector is there: check the push for drift now (else after embedding)
        drift_pending_check(project=project)
    return {
        "batch": batch_id,
        "status": batch.status,
        "project_items_awaiting_embedding": waiting,
        "scoring_run": run.pk if run is not None else None,
    }


def items_embed(project_id: int, item_ids: list[int] | None = None) -> dict:
    """Encode the project's waiting items, then what follows an embedding pass (module docstring)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "missing"}
    try:
        report = embedding.items_embed(project=project, item_ids=item_ids)
    except ServiceError as exc:
        logger.error("embedding items of project %s: %s", project_id, exc.detail)
        return {"project": project_id, "status": "error", "error": exc.detail}
    if report.embedded:
        scoring_request(project=project, trigger="ingest")
        drift_pending_check(project=project)
        retrain_if_due(project=project)
    return report.as_dict()
