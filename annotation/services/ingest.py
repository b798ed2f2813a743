"""Pool ingest: idempotent bulk upsert of validated records into a project's items.

One request is one transaction. The project row is locked for its duration, so two pushes into
the same project serialise (exact counts, no unique-key race) while pushes into other projects
run in parallel. Work is a handful of set-based statements per 2,000 records:
one SELECT of the existing rows (by ``external_id``), one INSERT of new items, one
INSERT … ON CONFLICT UPDATE of changed items, and the vector upserts/deletes (through
``ports.vector_store``, in the same transaction).

Labels a team already has (``label``, optionally ``honeypot``, see ``ingest_records``): a new item
is inserted final (status ``finalized``, source ``gold``, confidence 1); an existing item whose
gold label or honeypot flag differs is made so (``_gold_apply``): its queue entry goes, live leases
on it end, an open review task on it is resolved with the gold label. Pushing the same label again
changes nothing; a record without a label keeps the item's. The gold items are the aggregation's
known truth (``aggregation._load``), training and evaluation data; honeypots are also served to
annotators (``leases``) and scored (``quality``).

A changed text makes the item a new question (``_text_reset``): its ``text_revision`` goes up, and
when it had annotations, leases, a final label or a review, the old text is kept
(``ItemRevision``), its annotations and assignments become history (``superseded_at``: no longer
counted anywhere, shown by the export on request), live leases on it end (a submit on one is
refused), its queue entry goes, an open review task on it is cancelled and the item is unlabelled
again (final label cleared). A record that brings a label with the new text makes it gold again.

A push that stored new or changed items announces it (``signals.batch_stored``); one that set or
changed gold labels also announces ``signals.labels_changed``; what follows (embedding, scoring,
re-aggregation, the drift check) is the loop's business. ``ingest_batch_mark_processed`` is the
worker's acknowledgement of the batch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from quorum.chunks import iter_chunks

from .. import ports, signals
from ..ingest_records import CleanRecord, RejectedRecord
from ..models import (
    Annotation,
    Assignment,
    AssignmentStatus,
    EmbeddingState,
    IngestBatch,
    Item,
    ItemRevision,
    ItemStatus,
    LabelSource,
    Project,
    QueueEntry,
    ReviewStatus,
    ReviewTask,
)

logger = logging.getLogger(__name__)

CHUNK = 2000  # rows per statement: under SQLite's bound-parameter limit, big enough for speed
PROVIDED = "provided"


@dataclass
class IngestReport:
    batch_id: int | None
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    embeddings_written: int = 0
    awaiting_embedding: int = 0
    labels_set: int = 0  # gold labels (or honeypot flags) set or changed by this push
    rejected: list[RejectedRecord] = field(default_factory=list)


@dataclass(slots=True)
class _Existing:
    id: int
    text_hash: str
    metadata: dict | None
    gold: tuple | None = None  # (gold label id or tag set, honeypot); None: not read


def items_ingest(
    *,
    project: Project,
    records: list[CleanRecord],
    rejected: list[RejectedRecord],
    fmt: str,
    user=None,
) -> IngestReport:
    """Insert new items, update changed ones, leave identical ones untouched.

    A changed text invalidates the item's embedding (unless the record brings a new one);
    changed metadata alone keeps it. Records without ``metadata`` keep the item's metadata.
    """
    started = time.perf_counter()
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        existing = _existing_items(project, records)
        vectors_port = ports.vector_store() if any(r.embedding is not None for r in records) else None
        same_vector = _unchanged_vectors(vectors_port, records, existing)

        new_records: list[CleanRecord] = []
        changed_items: list[tuple[Item, tuple[str, ...]]] = []
        vectors: dict[int, bytes] = {}  # item id -> pushed vector to store (existing items)
        stale_embedding_ids: list[int] = []
        gold_changes: dict[int, tuple] = {}  # existing item id -> (gold label id or tag set, honeypot)
        text_changed_ids: list[int] = []  # existing items whose text changed
        unchanged = 0
        now = timezone.now()
        for record in records:
            current = existing.get(record.external_id)
            if current is None:
                new_records.append(record)
                continue
            text_changed = current.text_hash != record.text_hash
            if record.has_gold and (text_changed or current.gold != (record.gold, record.honeypot)):
                # (a changed text clears the old gold label first: the pushed one is set again)
                gold_changes[current.id] = (record.gold, record.honeypot)
            if text_changed:
                text_changed_ids.append(current.id)
            metadata_changed = (
                record.metadata is not None
                and record.metadata != current.metadata
                and not _same_json_numbers(record.metadata, current.metadata)
            )
            vector_changed = record.embedding is not None and current.id not in same_vector
            if not (text_changed or metadata_changed or vector_changed):
                if current.id not in gold_changes:
                    unchanged += 1
                continue
            item = Item(
                project=project,
                external_id=record.external_id,
                text=record.text,
                text_hash=record.text_hash,
                metadata=record.metadata if record.metadata is not None else {},
                created_at=now,
                updated_at=now,
            )
            fields = ["text", "text_hash", "updated_at"]
            if metadata_changed:
                fields.append("metadata")
            if record.embedding is not None:
                item.embedding_state = EmbeddingState.READY
                fields.append("embedding_state")
                if vector_changed or text_changed:
                    vectors[current.id] = record.embedding
            elif text_changed:
                item.embedding_state = EmbeddingState.PENDING
                fields.append("embedding_state")
                stale_embedding_ids.append(current.id)
            changed_items.append((item, tuple(fields)))

        new_ids = _insert_items(project, new_records, now)
        vectors.update((new_ids[r.external_id], r.embedding) for r in new_records if r.embedding is not None)
        reset = _text_reset(text_changed_ids, now)
        _update_items(changed_items)
        _gold_apply(project, gold_changes, now)
        labels_set = len(gold_changes) + sum(1 for r in new_records if r.has_gold)
        if stale_embedding_ids:
            ports.vector_store().drop(stale_embedding_ids)
        if vectors:
            vectors_port.write(project, vectors, source=PROVIDED)

        awaiting = sum(1 for r in new_records if r.embedding is None) + len(stale_embedding_ids)
        batch = IngestBatch.objects.create(
            project=project,
            created_by=user if user is not None and user.is_authenticated else None,
            format=fmt,
            records=len(records) + len(rejected),
            created=len(new_records),
            updated=len(changed_items) + _gold_only(gold_changes, changed_items, existing),
            unchanged=unchanged,
            rejected=len(rejected),
            awaiting_embedding=awaiting,
            duration_ms=int((time.perf_counter() - started) * 1000),
            drift_items=_drift_sample(project, new_records, new_ids, existing, changed_items),
        )
        if labels_set or reset:
            signals.labels_changed.send(sender=Project, project=project)
        if new_records or changed_items:
            signals.batch_stored.send(sender=Project, project=project, batch=batch)
        else:
            batch.status = IngestBatch.Status.PROCESSED
            batch.processed_at = timezone.now()
            batch.save(update_fields=["status", "processed_at"])

    return IngestReport(
        batch_id=batch.pk,
        created=len(new_records),
        updated=batch.updated,
        unchanged=unchanged,
        embeddings_written=len(vectors),
        awaiting_embedding=awaiting,
        labels_set=labels_set,
        rejected=rejected,
    )


INSERT_COLUMNS = (
    "project_id",
    "external_id",
    "text",
    "text_hash",
    "metadata",
    "status",
    "embedding_state",
    "final_label_id",
    "final_tags",
    "final_confidence",
    "final_source",
    "finalized_at",
    "honeypot",
    "created_at",
    "updated_at",
)
LOOKUP_CHUNK = 50_000  # external ids per lookup query (sent as one JSON array parameter)


def _ids_in_json(column: str) -> str:
    """SQL for ``column IN (<the strings of a JSON array parameter>)``: one bound parameter instead
    of thousands of placeholders, parsed by the database's JSON functions."""
    if connection.vendor == "postgresql":
        return f"{column} IN (SELECT jsonb_array_elements_text(%s::jsonb))"
    return f"{column} IN (SELECT value FROM json_each(%s))"


def _insert_items(project: Project, records: list[CleanRecord], now) -> dict[str, int]:
    """Insert new items; return their ids by external id (only for records with an embedding).

    Raw SQL instead of ``bulk_create``: Django builds a model instance and prepares each field in
    Python (~40 µs per item, most of a 100k push); PostgreSQL's COPY through psycopg, or a plain
    ``executemany`` on SQLite, does it in a few µs. Safe because the caller holds the project's
    lock and has checked that none of these external ids exists yet.
    """
    if not records:
        return {}
    table = connection.ops.quote_name(Item._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in INSERT_COLUMNS)
    rows = (
        (
            project.pk,
            r.external_id,
            r.text,
            r.text_hash,
            json.dumps(r.metadata or {}),
            ItemStatus.FINALIZED if r.has_gold else ItemStatus.UNLABELED,
            EmbeddingState.READY if r.embedding is not None else EmbeddingState.PENDING,
            r.label_id,
            None if r.tags is None else json.dumps(list(r.tags)),
            1.0 if r.has_gold else None,
            LabelSource.GOLD if r.has_gold else "",
            now if r.has_gold else None,
            r.has_gold and r.honeypot,
            now,
            now,
        )
        for r in records
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(INSERT_COLUMNS))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", list(rows))
    with_vectors = [r.external_id for r in records if r.embedding is not None]
    return dict(_lookup(project, with_vectors, "external_id, id"))


def _lookup(project: Project, external_ids: list[str], columns: str) -> list[tuple]:
    table = connection.ops.quote_name(Item._meta.db_table)
    rows: list[tuple] = []
    with connection.cursor() as cursor:
        for chunk in iter_chunks(external_ids, LOOKUP_CHUNK):
            cursor.execute(
                f"SELECT {columns} FROM {table} WHERE project_id = %s AND {_ids_in_json('external_id')}",
                [project.pk, json.dumps(chunk)],
            )
            rows.extend(cursor.fetchall())
    return rows


def _existing_items(project: Project, records: list[CleanRecord]) -> dict[str, _Existing]:
    want_metadata = any(record.metadata is not None for record in records)
    want_gold = any(record.has_gold for record in records)
    columns = (
        "id, external_id, text_hash"
        + (", metadata" if want_metadata else "")
        + (", final_label_id, final_tags, final_source, honeypot" if want_gold else "")
    )
    found: dict[str, _Existing] = {}
    for row in _lookup(project, [record.external_id for record in records], columns):
        metadata = gold = None
        if want_metadata:
            metadata = json.loads(row[3]) if isinstance(row[3], str) else row[3]
        if want_gold:
            label_id, tags, source, honeypot = row[-4:]
            if isinstance(tags, str):
                tags = json.loads(tags)
            answer = label_id if tags is None else tuple(tags)
            gold = (answer if source == LabelSource.GOLD else None, bool(honeypot))
        found[row[1]] = _Existing(row[0], row[2], metadata, gold)
    return found


def _gold_only(gold_changes: dict, changed_items: list, existing: dict[str, _Existing]) -> int:
    """Items whose only change is their gold label (counted as updated too)."""
    if not gold_changes:
        return 0
    changed_ids = {existing[item.external_id].id for item, _ in changed_items}
    return sum(1 for item_id in gold_changes if item_id not in changed_ids)


def _text_reset(item_ids: list[int], now) -> int:
    """Make items whose text changed new questions (module docstring). Called before the new texts
    are written, so the old ones can be kept. Returns how many items had labelling history."""
    reset = 0
    for chunk in iter_chunks(sorted(item_ids), CHUNK):
        Item.objects.filter(pk__in=chunk).update(text_revision=F("text_revision") + 1)
        touched = (
            Item.objects.filter(pk__in=chunk)
            .filter(
                Q(final_label__isnull=False)
                | Q(final_tags__isnull=False)
                | ~Q(status=ItemStatus.UNLABELED)
                | Exists(Annotation.objects.filter(item_id=OuterRef("pk")))
                | Exists(Assignment.objects.filter(item_id=OuterRef("pk")))
            )
            .order_by()
        )
        old = list(touched.values_list("pk", "text", "text_hash", "text_revision"))
        if not old:
            continue
        ids = [row[0] for row in old]
        reset += len(ids)
        ItemRevision.objects.bulk_create(
            [
                ItemRevision(item_id=pk, revision=revision - 1, text=text, text_hash=text_hash, replaced_at=now)
                for pk, text, text_hash, revision in old
            ],
            ignore_conflicts=True,
        )
        Assignment.objects.filter(item_id__in=ids, status=AssignmentStatus.LEASED).update(
            status=AssignmentStatus.EXPIRED, finished_at=now
        )
        Assignment.objects.filter(item_id__in=ids).update(superseded_at=now)
        Annotation.objects.filter(item_id__in=ids).update(superseded_at=now)
        QueueEntry.objects.filter(item_id__in=ids).delete()
        ReviewTask.objects.filter(item_id__in=ids, status=ReviewStatus.OPEN).update(
            status=ReviewStatus.CANCELLED,
            resolved_at=now,
            claimed_until=None,
            note="Cancelled: a push changed the item's text.",
        )
        Item.objects.filter(pk__in=ids).update(
            status=ItemStatus.UNLABELED,
            final_label=None,
            final_tags=None,
            tag_posteriors=None,
            final_confidence=None,
            final_source="",
            finalized_at=None,
            honeypot=False,
            selected_as="",
            updated_at=now,
        )
    return reset


def _gold_apply(project: Project, changes: dict[int, tuple], now) -> None:
    """Make existing items final with their pushed gold label (and honeypot flag): set the label,
    end live leases on them (status ``expired``), drop their queue entries, resolve their open
    review tasks with the gold label. Bulk statements grouped by (label, honeypot)."""
    if not changes:
        return
    groups: dict[tuple[int, bool], list[int]] = {}
    for item_id, key in changes.items():
        groups.setdefault(key, []).append(item_id)
    ids = sorted(changes)
    for chunk in iter_chunks(ids, CHUNK):
        Assignment.objects.filter(item_id__in=chunk, status=AssignmentStatus.LEASED).update(
            status=AssignmentStatus.EXPIRED, finished_at=now
        )
        QueueEntry.objects.filter(item_id__in=chunk).delete()
    for (answer, honeypot), item_ids in groups.items():
        tags = list(answer) if isinstance(answer, tuple) else None
        label_id = None if tags is not None else answer
        for chunk in iter_chunks(item_ids, CHUNK):
            Item.objects.filter(pk__in=chunk).update(
                status=ItemStatus.FINALIZED,
                final_label_id=label_id,
                final_tags=tags,
                tag_posteriors=None,
                final_confidence=1.0,
                final_source=LabelSource.GOLD,
                finalized_at=now,
                honeypot=honeypot,
                updated_at=now,
            )
            ReviewTask.objects.filter(item_id__in=chunk, status=ReviewStatus.OPEN).update(
                status=ReviewStatus.RESOLVED,
                decision_id=label_id,
                decision_tags=tags,
                resolved_at=now,
                note="Decided by a gold label pushed with the pool.",
            )


def _same_json_numbers(pushed, stored) -> bool:
    """Equal up to how PostgreSQL's jsonb stores numbers: it keeps the decimal value, so a float
    such as 1e23 comes back as the integer 100000000000000000000000, which Python does not find
    equal to the float. Called only when ``==`` already failed, so re-pushes stay cheap."""
    if isinstance(pushed, dict) and isinstance(stored, dict):
        return pushed.keys() == stored.keys() and all(_same_json_numbers(v, stored[k]) for k, v in pushed.items())
    if isinstance(pushed, list) and isinstance(stored, list):
        return len(pushed) == len(stored) and all(map(_same_json_numbers, pushed, stored))
    numbers = (int, float)
    if (
        isinstance(pushed, numbers)
        and isinstance(stored, numbers)
        and not isinstance(pushed, bool)
        and not isinstance(stored, bool)
    ):
        try:
            return float(pushed) == float(stored)
        except OverflowError:
            return False
    return pushed == stored


def _unchanged_vectors(store, records: list[CleanRecord], existing: dict[str, _Existing]) -> set[int]:
    """Ids of existing items whose stored vector equals the one pushed again."""
    pushed = {
        existing[r.external_id].id: r.embedding
        for r in records
        if r.embedding is not None and r.external_id in existing
    }
    return store.same(pushed) if pushed else set()


def _update_items(items: list[tuple[Item, tuple[str, ...]]]) -> None:
    """Write changed items with INSERT … ON CONFLICT (project, external_id) DO UPDATE, grouped by
    the set of columns that changed: far fewer round trips than ``bulk_update``'s CASE WHEN."""
    groups: dict[tuple[str, ...], list[Item]] = {}
    for item, fields in items:
        groups.setdefault(fields, []).append(item)
    for fields, group in groups.items():
        for chunk in iter_chunks(group, CHUNK):
            Item.objects.bulk_create(
                chunk,
                update_conflicts=True,
                unique_fields=["project", "external_id"],
                update_fields=list(fields),
            )


def _drift_sample(project: Project, new_records, new_ids: dict, existing: dict, changed_items) -> bytes:
    """Ids of at most ``QUORUM_DRIFT_SAMPLE`` created or changed items of the batch, evenly spread (new
    items pushed without a vector have no id yet: only the sampled ones are looked up)."""
    limit = settings.QUORUM_DRIFT_SAMPLE
    touched = [r.external_id for r in new_records] + [item.external_id for item, _ in changed_items]
    if not touched or limit <= 0:
        return b""
    if len(touched) > limit:
        touched = [touched[i] for i in np.linspace(0, len(touched) - 1, limit).astype(np.int64)]
    known = {**new_ids, **{ext: existing[ext].id for ext in touched if ext in existing}}
    missing = [ext for ext in touched if ext not in known]
    known.update(dict(_lookup(project, missing, "external_id, id")))
    return np.array([known[ext] for ext in touched if ext in known], dtype="<i8").tobytes()


def ingest_batch_mark_processed(batch_id: int) -> IngestBatch | None:
    """Mark a stored batch processed (``None`` when it was deleted meanwhile). Idempotent."""
    with transaction.atomic():
        batch = (
            IngestBatch.objects.select_for_update(of=("self",)).select_related("project").filter(pk=batch_id).first()
        )
        if batch is not None and batch.status != IngestBatch.Status.PROCESSED:
            batch.status = IngestBatch.Status.PROCESSED
            batch.processed_at = timezone.now()
            batch.save(update_fields=["status", "processed_at"])
    return batch
