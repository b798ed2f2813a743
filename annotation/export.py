"""The label export: one record per item of a project, as JSON Lines or CSV, streamed.

Items are walked by primary key in chunks (keyset pagination: ``pk > last``, never OFFSET), so
memory stays bounded whatever the size of the pool: each chunk costs two queries (its items, then
their annotations) and label names come from a dict loaded once. The generators here are pure: they
yield text lines (``jsonl_lines``, ``csv_lines``) or encoded blocks of them (``stream``); the view
wraps ``stream`` in a ``StreamingHttpResponse``.

A record: ``external_id``, ``text``, ``label`` (the final label's name or null), ``confidence``,
``source`` (consensus / review / gold or null), ``gold`` (true when the label is one the team
pushed, source gold), ``honeypot`` (true for a hidden test item), ``status``, ``metadata`` and ``annotations``
(``[{annotator, label, created_at}]`` in annotation order: the labels given to the item's current
text; an annotator whose account was deleted shows as ``deleted-user-<id>``). With ``history``, a
record also has ``history``: the item's earlier texts with the labels given to them
(``[{revision, text, replaced_at, annotations}]``, oldest first; empty when the text never changed
after labelling). In CSV, ``metadata``, ``annotations`` and ``history`` are compact JSON strings,
booleans are ``true``/``false`` and nulls are empty cells.

Multi-label projects (``task_type`` ``multi_label``) export tag sets: ``labels`` (the final tag set's
names, in the project's label order, or null while undecided; ``[]`` is the empty set) instead of
``label``, ``tags`` (``{name: P(tag present)}`` for every tag the aggregation gave a posterior of at
least 0.001; gold and reviewed sets are certain: 1 for their tags) and annotations with ``labels``.
In CSV, ``labels`` is the names joined by ``|`` (the ingest format) and ``tags`` a JSON object.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime

from .models import Annotation, Item, ItemRevision, LabelClass, LabelSource, Project, deleted_user_name

CHUNK_SIZE = 2000  # items per query
BUFFER_BYTES = 64 * 1024  # ``stream`` yields blocks of about this size

COLUMNS = (
    "external_id",
    "text",
    "label",
    "confidence",
    "source",
    "gold",
    "honeypot",
    "status",
    "metadata",
    "annotations",
)
#: Multi-label projects: ``labels`` (the tag set) and ``tags`` (per-tag posterior) replace ``label``.
TAG_COLUMNS = ("external_id", "text", "labels", "tags", *COLUMNS[3:])
TAG_SEPARATOR = "|"
STATUS_FILTERS = ("all", "final")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
FORMATS = tuple(CONTENT_TYPES)


def _iso(moment: datetime) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _annotations_by_item(queryset, label_names: dict, key) -> dict:
    """``{key(row): [{annotator, label, created_at}]}`` of the annotations in ``queryset``, in id order."""
    grouped: dict = defaultdict(list)
    rows = queryset.order_by("pk").values_list(
        "item_id", "item_revision", "user__username", "former_user_id", "label_id", "tags", "created_at"
    )
    for item_id, revision, username, former_user_id, label_id, tags, created_at in rows:
        answer = {"label": label_names.get(label_id)} if tags is None else {"labels": _tag_names(tags, label_names)}
        grouped[key(item_id, revision)].append(
            {
                "annotator": username if username is not None else deleted_user_name(former_user_id),
                **answer,
                "created_at": _iso(created_at),
            }
        )
    return grouped


def _tag_names(tags, label_names: dict) -> list[str]:
    """Names of a tag set in the project's label order (``label_names`` is in that order)."""
    chosen = set(tags)
    return [name for label_id, name in label_names.items() if label_id in chosen]


def _tag_confidences(tags, posteriors, source: str, label_names: dict) -> dict[str, float] | None:
    if posteriors:
        p = {int(label_id): float(value) for label_id, value in posteriors.items()}
        return {name: round(p[label_id], 6) for label_id, name in label_names.items() if p.get(label_id, 0) >= 1e-3}
    if tags is not None and source in (LabelSource.GOLD, LabelSource.REVIEW):
        return dict.fromkeys(_tag_names(tags, label_names), 1.0)
    return None


def _history(item_ids: list[int], label_names: dict) -> dict[int, list[dict]]:
    """The earlier texts of ``item_ids`` with the labels given to each (oldest first)."""
    given = _annotations_by_item(
        Annotation.all_revisions.filter(item_id__in=item_ids, superseded_at__isnull=False),
        label_names,
        lambda item_id, revision: (item_id, revision),
    )
    out: dict[int, list[dict]] = defaultdict(list)
    revisions = ItemRevision.objects.filter(item_id__in=item_ids).order_by("item_id", "revision")
    for item_id, revision, text, replaced_at in revisions.values_list("item_id", "revision", "text", "replaced_at"):
        out[item_id].append(
            {
                "revision": revision,
                "text": text,
                "replaced_at": _iso(replaced_at),
                "annotations": given.get((item_id, revision), []),
            }
        )
    return out


def records(
    project: Project, *, final_only: bool = False, history: bool = False, chunk_size: int | None = None
) -> Iterator[dict]:
    """The export records of ``project`` in item id order (``final_only``: items with a final label;
    ``history``: with the labels given to the items' earlier texts)."""
    chunk_size = chunk_size or CHUNK_SIZE
    multi_label = project.multi_label
    label_names = dict(LabelClass.objects.filter(project=project).order_by("order", "id").values_list("id", "name"))
    items = Item.objects.filter(project=project)
    if final_only:
        items = items.filter(final_tags__isnull=False) if multi_label else items.filter(final_label__isnull=False)
    fields = (
        "id",
        "external_id",
        "text",
        "final_label_id",
        "final_tags",
        "tag_posteriors",
        "final_confidence",
        "final_source",
        "honeypot",
        "status",
        "metadata",
    )
    last = 0
    while True:
        rows = list(items.filter(pk__gt=last).order_by("pk").values_list(*fields)[:chunk_size])
        if not rows:
            return
        last = rows[-1][0]
        ids = [row[0] for row in rows]
        by_item = _annotations_by_item(
            Annotation.objects.filter(item_id__in=ids), label_names, lambda item_id, revision: item_id
        )
        earlier = _history(ids, label_names) if history else {}
        for row in rows:
            item_id, external_id, text, label_id, tags, posteriors, confidence, source, honeypot, status, metadata = row
            if multi_label:
                answer = {
                    "labels": None if tags is None else _tag_names(tags, label_names),
                    "tags": _tag_confidences(tags, posteriors, source, label_names),
                }
            else:
                answer = {"label": label_names.get(label_id) if label_id is not None else None}
            record = {
                "external_id": external_id,
                "text": text,
                **answer,
                "confidence": _finite(confidence),
                "source": source or None,
                "gold": source == LabelSource.GOLD,
                "honeypot": bool(honeypot),
                "status": status,
                "metadata": metadata if metadata is not None else {},
                "annotations": by_item.get(item_id, []),
            }
            if history:
                record["history"] = earlier.get(item_id, [])
            yield record
        if len(rows) < chunk_size:
            return


def jsonl_lines(project: Project, **options) -> Iterator[str]:
    """One compact JSON object per line (UTF-8 text, not ASCII-escaped)."""
    for record in records(project, **options):
        yield _compact(record) + "\n"


class _Echo:
    """A file-like object whose ``write`` hands the CSV row back instead of storing it."""

    def write(self, value: str) -> str:
        return value


def csv_lines(project: Project, **options) -> Iterator[str]:
    """A header row, then one CSV row per record (RFC 4180 quoting, CRLF line ends)."""
    writer = csv.writer(_Echo())
    history = bool(options.get("history"))
    multi_label = project.multi_label
    yield writer.writerow((TAG_COLUMNS if multi_label else COLUMNS) + (("history",) if history else ()))
    for record in records(project, **options):
        if multi_label:
            answer = [
                None if record["labels"] is None else TAG_SEPARATOR.join(record["labels"]),
                None if record["tags"] is None else _compact(record["tags"]),
            ]
        else:
            answer = [record["label"]]
        yield writer.writerow(
            [
                record["external_id"],
                record["text"],
                *answer,
                record["confidence"],
                record["source"],
                "true" if record["gold"] else "false",
                "true" if record["honeypot"] else "false",
                record["status"],
                _compact(record["metadata"]),
                _compact(record["annotations"]),
            ]
            + ([_compact(record["history"])] if history else [])
        )


def _blocks(lines: Iterable[str], size: int) -> Iterator[bytes]:
    """UTF-8 blocks of about ``size`` bytes (whole lines), so a large export is not a write per item."""
    pending: list[bytes] = []
    pending_bytes = 0
    for line in lines:
        data = line.encode("utf-8")
        pending.append(data)
        pending_bytes += len(data)
        if pending_bytes >= size:
            yield b"".join(pending)
            pending, pending_bytes = [], 0
    if pending:
        yield b"".join(pending)


def stream(project: Project, fmt: str, *, buffer_bytes: int = BUFFER_BYTES, **options) -> Iterator[bytes]:
    """The export of ``project`` in ``fmt`` (``jsonl`` or ``csv``) as UTF-8 blocks."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    lines = jsonl_lines(project, **options) if fmt == "jsonl" else csv_lines(project, **options)
    return _blocks(lines, buffer_bytes)
