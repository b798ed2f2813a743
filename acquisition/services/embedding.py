"""Embedding items: encode waiting texts with the project's encoder and store the vectors; and the
store of the vectors a push brought (``ItemVectorStore``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction

from annotation.models import EmbeddingState, Item, Project
from quorum.chunks import iter_chunks
from quorum.errors import ServiceError

from ..models import ItemEmbedding

logger = logging.getLogger(__name__)

WAITING = (EmbeddingState.PENDING, EmbeddingState.QUEUED)
CHUNK = 2000  # rows per statement


@dataclass
class EmbedReport:
    project_id: int
    embedded: int = 0
    failed: int = 0
    stale: int = 0  # texts changed while being encoded: left waiting for the next pass
    batches: int = 0

    def as_dict(self) -> dict:
        return {
            "project": self.project_id,
            "embedded": self.embedded,
            "failed": self.failed,
            "stale": self.stale,
            "batches": self.batches,
        }


def items_embed_mark_queued(*, project: Project) -> int:
    """Mark the project's pending items as queued for the encoder (an embedding task follows)."""
    return Item.objects.filter(project=project, embedding_state=EmbeddingState.PENDING).update(
        embedding_state=EmbeddingState.QUEUED
    )


def items_embed(*, project: Project, item_ids: list[int] | None = None, batch_size: int | None = None) -> EmbedReport:
    """Encode the project's items that wait for an embedding (all, or those of ``item_ids``).

    Batches of ``QUORUM_EMBED_BATCH_SIZE`` items are encoded and written in one transaction each:
    the ``ItemEmbedding`` rows and ``embedding_state=ready`` together. An item whose text changed
    while it was encoded (its ``text_hash`` differs at write time) is left waiting, so a stale
    vector is never marked ready. Idempotent: items that are ready (encoded before, or pushed with
    their own vector) are not touched. An item the encoder cannot handle on its own is marked
    ``failed`` and logged; errors that hit every item (no model, out of memory) propagate so the
    task is retried.
    """
    batch_size = batch_size or settings.QUORUM_EMBED_BATCH_SIZE
    try:
        from ..encoders import get_encoder  # PyTorch loads where a model runs, not in web processes

        encoder = get_encoder(project.encoder, device=settings.QUORUM_DEVICE)
    except ValueError as exc:
        raise ServiceError({"encoder": str(exc)}, code="bad_encoder") from exc
    if encoder.dim != project.embedding_dim:
        raise ServiceError(
            {
                "encoder": f"{project.encoder!r} makes {encoder.dim}-d vectors; the project expects {project.embedding_dim}"
            },
            code="bad_encoder",
        )

    report = EmbedReport(project_id=project.pk)
    waiting = Item.objects.filter(project=project, embedding_state__in=WAITING).order_by("pk")
    if item_ids is not None:
        waiting = waiting.filter(pk__in=list(item_ids))
    last_id = 0
    while True:
        rows = list(waiting.filter(pk__gt=last_id).values_list("pk", "text", "text_hash")[:batch_size])
        if not rows:
            break
        last_id = rows[-1][0]
        report.batches += 1
        vectors, failures = _encode(encoder, rows)
        _store(project, encoder.name, rows, vectors, failures, report)
    return report


def _encode(encoder, rows: list[tuple]) -> tuple[dict[int, bytes], dict[int, str]]:
    """Vectors (float32 bytes) by item id, and the failure reason of items the encoder refused."""
    texts = [text for _, text, _ in rows]
    try:
        matrix = encoder.encode(texts)
        return _as_bytes(rows, matrix)
    except (MemoryError, RuntimeError) as exc:
        if "out of memory" in str(exc).lower() or isinstance(exc, MemoryError):
            raise
        logger.warning("encoding a batch of %d items failed (%s); retrying item by item", len(rows), exc)
    except Exception as exc:
        logger.warning("encoding a batch of %d items failed (%s); retrying item by item", len(rows), exc)
    vectors: dict[int, bytes] = {}
    failures: dict[int, str] = {}
    last_error: Exception | None = None
    for row in rows:
        try:
            one, bad = _as_bytes([row], encoder.encode([row[1]]))
            vectors.update(one)
            failures.update(bad)
        except Exception as exc:
            last_error = exc
            failures[row[0]] = f"{type(exc).__name__}: {exc}"[:500]
    if last_error is not None and len(failures) == len(rows) and len(rows) > 1:
        raise last_error  # every item failed alike: the encoder, not the items, is broken
    return vectors, failures


def _as_bytes(rows: list[tuple], matrix: np.ndarray) -> tuple[dict[int, bytes], dict[int, str]]:
    matrix = np.asarray(matrix, dtype="<f4")
    finite = np.isfinite(matrix).all(axis=1)
    vectors = {row[0]: matrix[i].tobytes() for i, row in enumerate(rows) if finite[i]}
    failures = {row[0]: "the encoder returned a non-finite vector" for i, row in enumerate(rows) if not finite[i]}
    return vectors, failures


def _store(project: Project, source: str, rows, vectors: dict[int, bytes], failures: dict[int, str], report) -> None:
    hashes = {pk: text_hash for pk, _, text_hash in rows}
    with transaction.atomic():
        # Ingest holds this lock while it changes texts: the hash check below cannot race with it.
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        current = dict(
            Item.objects.filter(pk__in=list(hashes), embedding_state__in=WAITING).values_list("pk", "text_hash")
        )
        fresh = [pk for pk in hashes if current.get(pk) == hashes[pk]]
        report.stale += sum(1 for pk in hashes if pk in current and current[pk] != hashes[pk])
        ready = [pk for pk in fresh if pk in vectors]
        failed = [pk for pk in fresh if pk in failures]
        ItemEmbedding.objects.bulk_create(
            [
                ItemEmbedding(
                    item_id=pk, project_id=project.pk, vector=vectors[pk], dim=project.embedding_dim, source=source
                )
                for pk in ready
            ],
            update_conflicts=True,
            unique_fields=["item"],
            update_fields=["vector", "dim", "source", "updated_at"],
            batch_size=500,
        )
        if ready:
            Item.objects.filter(pk__in=ready).update(embedding_state=EmbeddingState.READY)
        if failed:
            Item.objects.filter(pk__in=failed).update(embedding_state=EmbeddingState.FAILED)
            for pk in failed:
                logger.error("item %s of project %s cannot be embedded: %s", pk, project.pk, failures[pk])
    report.embedded += len(ready)
    report.failed += len(failed)


class ItemVectorStore:
    """The vectors pushed with records, in ``ItemEmbedding`` (``annotation.ports.VectorStore``):
    compared, dropped and written inside the ingest's transaction."""

    def same(self, pushed: dict[int, bytes]) -> set[int]:
        same: set[int] = set()
        for chunk in iter_chunks(list(pushed), CHUNK):
            for item_id, vector in ItemEmbedding.objects.filter(item_id__in=chunk).values_list("item_id", "vector"):
                if bytes(vector) == pushed[item_id]:
                    same.add(item_id)
        return same

    def drop(self, item_ids) -> None:
        for chunk in iter_chunks(list(item_ids), CHUNK):
            ItemEmbedding.objects.filter(item_id__in=chunk).delete()

    def write(self, project: Project, vectors: dict[int, bytes], *, source: str) -> None:
        rows = [
            ItemEmbedding(
                item_id=item_id, project_id=project.pk, vector=vector, dim=project.embedding_dim, source=source
            )
            for item_id, vector in vectors.items()
        ]
        for chunk in iter_chunks(rows, CHUNK):
            ItemEmbedding.objects.bulk_create(
                chunk,
                update_conflicts=True,
                unique_fields=["item"],
                update_fields=["vector", "dim", "source", "updated_at"],
            )
