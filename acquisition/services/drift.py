"""The drift check of pushed pools (``acquisition.drift`` does the statistics).

Each ingest batch keeps a sample of the items it created or changed. Once they all have an
embedding (at once when the push brought its vectors, else after the embedding task), the sample is
compared with a sample of the items the current model was trained on (final labels up to its label
snapshot, without its held-out set): PSI and KS per principal component, and a level (ok, warning,
critical). Without a current model there is no reference yet and the batch says so.
"""

from __future__ import annotations

import logging

import numpy as np
from django.conf import settings
from django.db.models import Q

from annotation.models import IngestBatch, Item, Project

from .. import drift, selectors
from ..embeddings import embeddings_load

logger = logging.getLogger(__name__)

MIN_REFERENCE = 20
RECENT_BATCHES = 20


def training_sample(project: Project, version, limit: int) -> np.ndarray:
    """Ids of (a spread sample of) the items ``version`` was trained on."""
    ids = np.fromiter(
        Item.objects.filter(project=project, final_label__isnull=False)
        .filter(Q(finalized_at__lte=version.labels_as_of) | Q(finalized_at__isnull=True))
        .order_by("pk")
        .values_list("pk", flat=True),
        dtype=np.int64,
    )
    held_out = np.frombuffer(bytes(version.eval_items or b""), dtype="<i8")
    ids = ids[~np.isin(ids, held_out)]
    if ids.size > limit:
        ids = ids[np.linspace(0, ids.size - 1, limit).astype(np.int64)]
    return ids


def batch_drift_check(*, batch: IngestBatch) -> dict | None:
    """Compute and store the batch's drift report; ``None`` while some of its items wait for a vector."""
    sample = np.frombuffer(bytes(batch.drift_items or b""), dtype="<i8")
    if not sample.size:
        return None
    project = batch.project
    matrix = embeddings_load(project)
    present = matrix.present(sample)
    if not present.all():
        missing = Item.objects.filter(pk__in=sample[~present].tolist()).count()
        if missing:  # still being embedded (items deleted since do not count)
            return None
        sample = sample[present]
    current = selectors.model_version_current(project)
    if current is None or current.labels_as_of is None:
        report = {"status": "no_reference", "detail": "no model yet: drift is measured against its training items"}
    else:
        reference = training_sample(project, current, settings.QUORUM_DRIFT_SAMPLE)
        reference = reference[matrix.present(reference)]
        if reference.size < MIN_REFERENCE or not sample.size:
            report = {"status": "no_reference", "detail": f"only {reference.size} training items with a vector"}
        else:
            report = drift.drift_report(
                np.asarray(matrix.vectors[matrix.positions(reference)]),
                np.asarray(matrix.vectors[matrix.positions(sample)]),
            )
            report |= {"status": "done", "model_version": current.version}
    IngestBatch.objects.filter(pk=batch.pk).update(drift=report)
    batch.drift = report
    if report.get("level") in ("warning", "critical"):
        logger.warning(
            "drift %s in ingest %s of project %s: PSI %.3f", report["level"], batch.pk, project.pk, report["psi_max"]
        )
    return report


def drift_pending_check(*, project: Project) -> int:
    """Check the project's recent batches still waiting for a drift report. Returns how many got one."""
    done = 0
    batches = IngestBatch.objects.filter(project=project, drift={}).exclude(drift_items=b"").select_related("project")
    for batch in batches.order_by("-id")[:RECENT_BATCHES]:
        if batch_drift_check(batch=batch) is not None:
            done += 1
    return done
