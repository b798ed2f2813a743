"""Reads of the model side: scoring candidates, the labelled set, runs and model versions."""

from __future__ import annotations

import numpy as np
from django.db.models import Exists, OuterRef, QuerySet

from annotation.models import DECIDED, Annotation, EmbeddingState, Item, ItemStatus, Project, QueueEntry

from .models import ItemEmbedding, ModelVersion, ScoringRun, TrainingJob


def scoring_candidate_ids(project: Project, *, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """Sorted ids of the items a scoring run may put in the queue (optionally ``lo <= id <= hi``).

    Embedded, not final, not in review, without any annotation, and not in a queue entry that
    annotators have started.
    """
    items = (
        Item.objects.filter(~DECIDED, project=project, embedding_state=EmbeddingState.READY)
        .exclude(status__in=[ItemStatus.FINALIZED, ItemStatus.IN_REVIEW])
        .filter(~Exists(Annotation.objects.filter(item=OuterRef("pk"))))
        .filter(~Exists(QueueEntry.objects.filter(item=OuterRef("pk"), labels_taken__gt=0)))
    )
    if lo is not None:
        items = items.filter(pk__gte=lo)
    if hi is not None:
        items = items.filter(pk__lte=hi)
    ids = np.fromiter(items.order_by("pk").values_list("pk", flat=True), dtype=np.int64)
    return ids


def labelled_item_ids(project: Project) -> np.ndarray:
    """Items that count as labelled for diversity: a final label or at least one annotation.

    Leases are left out on purpose: they come and go, and the min-distance cache is only cheap
    while this set grows.
    """
    final = Item.objects.filter(DECIDED, project=project).values_list("pk", flat=True)
    annotated = Annotation.objects.filter(project=project).values_list("item_id", flat=True)
    ids = np.concatenate(
        [np.fromiter(final.order_by(), dtype=np.int64), np.fromiter(annotated.order_by(), dtype=np.int64)]
    )
    return np.unique(ids)


def final_label_count(project: Project) -> int:
    return Item.objects.filter(DECIDED, project=project).count()


def model_version_current(project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, status=ModelVersion.Status.CURRENT).first()


def scoring_runs_for_project(project: Project) -> QuerySet[ScoringRun]:
    return ScoringRun.objects.filter(project=project).select_related("model_version").order_by("-id")


def model_versions_for_project(project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).select_related("parent").order_by("-version")


def training_jobs_for_project(project: Project) -> QuerySet[TrainingJob]:
    return (
        TrainingJob.objects.filter(project=project)
        .select_related("model_version", "scoring_run", "requested_by")
        .order_by("-id")
    )


def model_version_latest_trained(project: Project) -> ModelVersion | None:
    """The newest model version that did not fail, with its label snapshot (whether current or not)."""
    return (
        ModelVersion.objects.filter(project=project, labels_as_of__isnull=False)
        .exclude(status=ModelVersion.Status.FAILED)
        .order_by("-version")
        .first()
    )


def new_labels_since_model(project: Project, *, embedded_only: bool = False) -> int:
    """Final labels finalised after the newest (non-failed) model version's label snapshot;
    ``embedded_only``: only those whose item has a vector (what a job could train on now)."""
    latest = model_version_latest_trained(project)
    finals = Item.objects.filter(DECIDED, project=project)
    if embedded_only:
        finals = finals.filter(Exists(ItemEmbedding.objects.filter(item=OuterRef("pk"))))
    if latest is not None:
        finals = finals.filter(finalized_at__gt=latest.labels_as_of)
    return finals.count()


def training_status(project: Project) -> dict:
    current = model_version_current(project)
    return {
        "new_labels": new_labels_since_model(project),
        "retrain_after": project.retrain_after,
        "current_version": current.version if current else None,
        "active_job": training_jobs_for_project(project).filter(status__in=TrainingJob.ACTIVE).first(),
    }
