"""Training: fit a committee of heads on the final labels and store it as a model version.

Deliberately small: one committee per call, promoted when the project has no current model yet.
Evaluation and the promotion gate for later versions come with the retraining loop.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.errors import ServiceError
from annotation.models import Item, LabelClass, LabelSource, Project

from ..embeddings import embeddings_load
from ..models import ModelVersion

logger = logging.getLogger(__name__)


def committee_device() -> str:
    from ..encoders import resolve_device

    return str(resolve_device(settings.QUORUM_DEVICE))


def training_data(project: Project):
    """``(X, y, weights, label_names, label_ids, snapshot_hash)`` from the project's final labels.

    Column ``j`` of the model is ``label_names[j]`` (the project's labels in display order). Weights
    are the aggregator's confidence; gold and reviewed labels count fully.
    """
    labels = list(LabelClass.objects.filter(project=project).order_by("order", "pk").values_list("pk", "name"))
    column = {pk: j for j, (pk, _) in enumerate(labels)}
    rows = list(
        Item.objects.filter(project=project, final_label__isnull=False)
        .order_by("pk")
        .values_list("pk", "final_label_id", "final_confidence", "final_source")
    )
    matrix = embeddings_load(project)
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    present = matrix.present(ids)
    rows = [row for row, ok in zip(rows, present, strict=True) if ok]
    X = np.asarray(matrix.vectors[matrix.positions(ids[present])], dtype=np.float32)
    y = np.array([column[row[1]] for row in rows], dtype=np.int64)
    full = {LabelSource.GOLD, LabelSource.REVIEW}
    w = np.array([1.0 if row[3] in full or row[2] is None else float(row[2]) for row in rows], dtype=np.float32).clip(
        1e-3, 1.0
    )
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row[0]}:{row[1]}:{row[3]};".encode())
    return X, y, w, [name for _, name in labels], [pk for pk, _ in labels], digest.hexdigest()


def model_train(*, project: Project, seed: int | None = None) -> ModelVersion:
    """Train a committee on the project's final labels and record it as a new model version.

    The first successful version becomes current; later ones stay candidates for the gate.
    """
    from ..committee import HeadCommittee

    X, y, w, label_names, _, snapshot = training_data(project)
    if len(y) == 0:
        raise ServiceError("the project has no final labels with an embedding to train on", code="no_labels")
    hyper = {"n_members": settings.QUORUM_COMMITTEE_MEMBERS, "hidden": 0, "mc_dropout": False}
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("version"))["n"] or 0) + 1
        seed = number if seed is None else int(seed)
        version = ModelVersion.objects.create(
            project=project,
            version=number,
            status=ModelVersion.Status.TRAINING,
            label_names=label_names,
            hyperparameters=hyper,
            seed=seed,
            n_labels=len(y),
            label_snapshot_hash=snapshot,
        )
    started = time.perf_counter()
    try:
        committee = HeadCommittee(**hyper, random_state=seed, device=committee_device())
        committee.fit(X, y, n_classes=len(label_names), sample_weight=w)
        buffer = io.BytesIO()
        import torch

        torch.save(committee.state_dict(), buffer)
    except Exception as exc:
        ModelVersion.objects.filter(pk=version.pk).update(
            status=ModelVersion.Status.FAILED, decision=f"training failed: {type(exc).__name__}: {exc}"[:2000]
        )
        raise
    version.train_seconds = time.perf_counter() - started
    version.weights.save(
        f"project-{project.pk}/v{number}-{snapshot[:12]}.pt", ContentFile(buffer.getvalue()), save=False
    )
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        first = not ModelVersion.objects.filter(project=project, status=ModelVersion.Status.CURRENT).exists()
        version.status = ModelVersion.Status.CURRENT if first else ModelVersion.Status.CANDIDATE
        version.promoted_at = timezone.now() if first else None
        version.decision = "first model of the project" if first else "awaiting evaluation"
        version.save(update_fields=["status", "promoted_at", "decision", "train_seconds", "weights"])
    logger.info("trained %s on %d labels in %.2f s", version, len(y), version.train_seconds)
    return version


_MODELS: dict[tuple[int, str], object] = {}
_MODELS_LOCK = threading.Lock()


def model_load(version: ModelVersion):
    """The version's committee, read from storage once per process."""
    from ..committee import HeadCommittee

    key = (version.pk, version.weights.name)
    model = _MODELS.get(key)
    if model is None:
        import torch

        with version.weights.open("rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
        model = HeadCommittee.from_state_dict(state, device=committee_device())
        with _MODELS_LOCK:
            if len(_MODELS) > 8:
                _MODELS.clear()
            _MODELS[key] = model
    return model
