"""The drift check of pushed pools (``acquisition.drift`` does the statistics).

Each ingest batch keeps a sample of the items it created or changed. Once they all have an
embedding (at once when the push brought its vectors, else after the embedding task), the sample is
compared with the pool as it was before the push: a fixed-size random sample (``QUORUM_DRIFT_SAMPLE``,
seeded by the batch) of the project's items with a vector that the push did not bring. PSI and KS
per principal component, and a level (ok, warning, critical). The pool, not the model's training
items: those were chosen by the acquisition strategy (uncertain, diverse, near the boundary), so
more rows of the same data would read as drift against them. The first push has nothing before it
and says so (``no_reference``).
"""

from __future__ import annotations

import logging

import numpy as np
from django.conf import settings

from annotation.models import IngestBatch, Item, Project

from .. import drift
from ..embeddings import embeddings_load

logger = logging.getLogger(__name__)

MIN_REFERENCE = 20
RECENT_BATCHES = 20


def pool_sample(batch: IngestBatch, sample: np.ndarray, pool_ids: np.ndarray, limit: int) -> np.ndarray:
    """Ids of (a random sample of at most ``limit`` of) the items in ``pool_ids`` that were in the
    project before ``batch``: its new items (and every later one) have larger ids than the items
    already there, and the items it changed are left out with the rest of ``sample``."""
    if batch.created:  # the batch's new items all share the push's timestamp, the newest of the sample
        stamps = dict(Item.objects.filter(pk__in=sample.tolist()).values_list("pk", "created_at"))
        newest = max(stamps.values(), default=None)
        firsts = [pk for pk, stamp in stamps.items() if stamp == newest]
        if firsts:
            pool_ids = pool_ids[pool_ids < min(firsts)]
    pool_ids = pool_ids[~np.isin(pool_ids, sample)]
    if pool_ids.size > limit:
        rng = np.random.default_rng(batch.pk)
        pool_ids = np.sort(rng.choice(pool_ids, size=limit, replace=False))
    return pool_ids


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
    reference = pool_sample(batch, sample, matrix.ids, settings.QUORUM_DRIFT_SAMPLE)
    if reference.size < MIN_REFERENCE or not sample.size:
        report = {
            "status": "no_reference",
            "detail": f"only {reference.size} items with a vector in the pool before this push",
        }
    else:
        report = drift.drift_report(
            np.asarray(matrix.vectors[matrix.positions(reference)]),
            np.asarray(matrix.vectors[matrix.positions(sample)]),
        )
        report |= {"status": "done", "reference": "pool"}
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
