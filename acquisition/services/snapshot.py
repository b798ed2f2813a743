"""The label snapshot a training job learns from, and the held-out split both models are judged on.

``label_snapshot``: every final label with an embedding, its weight (the aggregator's confidence;
gold and reviewed labels count fully), its priority group for evaluation (gold, exploration sample,
other), when it became final, and a SHA-256 of ``item:label:source`` rows (the lineage).

``evaluation_mask``: up to ``project.eval_fraction`` of the labels are held out
(``evaluation.evaluation_split``): gold first, then the uniform exploration sample, stratified by
class, by per-item keys stable across snapshots. ``unseen_by``: the labels a version never trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.utils import timezone

from annotation.models import DECIDED, Item, LabelClass, LabelSource, Project, QueueReason
from quorum.chunks import iter_chunks

from .. import evaluation
from ..embeddings import embeddings_load
from ..models import ModelVersion
from ..sampling import uniform_keys

EVAL_KEY_SALT = 7  # per-item keys of the evaluation split (stable across snapshots)


@dataclass
class LabelSnapshot:
    item_ids: np.ndarray  # (n,)
    X: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) column in label_names; multi-label: (n, L) 0/1 tag sets
    weights: np.ndarray  # (n,) in (0, 1]
    groups: np.ndarray  # (n,) evaluation.GOLD | EXPLORATION | OTHER
    finalized_at: np.ndarray  # (n,) datetime64[us], when each label became final
    label_names: list[str]
    label_ids: list[int]
    digest: str
    as_of: datetime
    multi_label: bool = False
    strata: np.ndarray | None = None  # (n,) the class the held-out split stratifies by (y when None)

    def __len__(self) -> int:
        return int(self.y.shape[0])  # items (a multi-label y is (n, L))

    def texts(self, rows: np.ndarray) -> list[str]:
        """The texts of the labels at ``rows`` (a mask or indices), read from the database."""
        return item_texts(self.item_ids[rows])


def item_texts(item_ids: np.ndarray) -> list[str]:
    """Texts of ``item_ids``, in that order."""
    found: dict[int, str] = {}
    for chunk in iter_chunks([int(i) for i in item_ids], 2000):
        found.update(Item.objects.filter(pk__in=chunk).values_list("pk", "text"))
    return [found[int(i)] for i in item_ids]


def model_inputs(model, snap: LabelSnapshot, rows: np.ndarray):
    """What ``model`` predicts from: texts (a fine-tuned encoder) or the stored vectors (heads)."""
    return snap.texts(rows) if getattr(model, "input_kind", "vectors") == "texts" else snap.X[rows]


def label_snapshot(project: Project) -> LabelSnapshot:
    """The project's final labels that have an embedding, in item order (module docstring). For a
    multi-label project ``y`` holds the tag sets as an (n, L) 0/1 matrix and ``strata`` the rarest
    tag of each set (L for the empty set), which the held-out split stratifies by."""
    as_of = timezone.now()
    multi = project.multi_label
    labels = list(LabelClass.objects.filter(project=project).order_by("order", "pk").values_list("pk", "name"))
    column = {pk: j for j, (pk, _) in enumerate(labels)}
    answer = "final_tags" if multi else "final_label_id"
    rows = list(
        Item.objects.filter(DECIDED, project=project)
        .order_by("pk")
        .values_list("pk", answer, "final_confidence", "final_source", "selected_as", "finalized_at")
    )
    matrix = embeddings_load(project)
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    present = matrix.present(ids)
    rows = [row for row, ok in zip(rows, present, strict=True) if ok]
    ids = ids[present]
    X = (
        np.asarray(matrix.vectors[matrix.positions(ids)], dtype=np.float32).reshape(len(ids), -1)
        if len(ids)
        else np.empty((0, project.embedding_dim), dtype=np.float32)
    )
    strata = None
    if multi:
        y = np.zeros((len(rows), len(labels)), dtype=np.int64)
        for n, row in enumerate(rows):
            y[n, [column[t] for t in row[1] or () if t in column]] = 1
        frequency = y.sum(axis=0)
        rarest = np.where(y > 0, frequency[None, :], np.iinfo(np.int64).max).argmin(axis=1) if len(rows) else y[:, 0]
        strata = np.where(y.any(axis=1), rarest, len(labels)).astype(np.int64)
    else:
        y = np.array([column[row[1]] for row in rows], dtype=np.int64)
    full = {LabelSource.GOLD, LabelSource.REVIEW}
    w = np.array([1.0 if row[3] in full or row[2] is None else float(row[2]) for row in rows], dtype=np.float32)
    groups = np.array(
        [
            evaluation.GOLD
            if row[3] == LabelSource.GOLD
            else evaluation.EXPLORATION
            if row[4] == QueueReason.EXPLORATION
            else evaluation.OTHER
            for row in rows
        ],
        dtype=np.int64,
    )
    finalized = np.array(
        [np.datetime64(_naive_utc(row[5]) or _naive_utc(as_of), "us") for row in rows], dtype="datetime64[us]"
    )
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row[0]}:{row[1]}:{row[3]};".encode())
    return LabelSnapshot(
        item_ids=ids,
        X=X,
        y=y,
        weights=w.clip(1e-3, 1.0),
        groups=groups,
        finalized_at=finalized,
        label_names=[name for _, name in labels],
        label_ids=[pk for pk, _ in labels],
        digest=digest.hexdigest(),
        as_of=as_of,
        multi_label=multi,
        strata=strata,
    )


def _naive_utc(moment: datetime | None):
    if moment is None:
        return None
    if timezone.is_aware(moment):
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def unseen_by(version: ModelVersion, snap: LabelSnapshot) -> np.ndarray:
    """Mask of the snapshot's labels that ``version`` was not trained on: finalised after its label
    snapshot, or held out by it."""
    if version.labels_as_of is None:
        return np.zeros(len(snap), dtype=bool)
    later = snap.finalized_at > np.datetime64(_naive_utc(version.labels_as_of), "us")
    held_out = np.isin(snap.item_ids, np.frombuffer(bytes(version.eval_items or b""), dtype="<i8"))
    return later | held_out


def evaluation_mask(project: Project, snap: LabelSnapshot) -> np.ndarray:
    keys = uniform_keys(snap.item_ids, project.pk, salt=EVAL_KEY_SALT)
    strata = snap.y if snap.strata is None else snap.strata
    return evaluation.evaluation_split(strata, snap.groups, keys, fraction=project.eval_fraction)
