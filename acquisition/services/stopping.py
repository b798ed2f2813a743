"""Stabilising predictions: how much a new model version changed the project's predictions.

The dashboard's stopping signal (``acquisition.curves.stopping_rule``) stops when the model now and the
model about ``curves.HORIZON`` (500) labels earlier agree on a fixed set of pool items, the *stop set*
(Bloodgood & Vijay-Shanker 2009), closely enough that those labels cannot have raised accuracy by more
than ``curves.MAX_GAIN``. ``version_stability`` measures it once per version, after its training job
fitted it, and stores it in ``ModelVersion.metrics["stability"]``:

- ``kappa``, ``agreement``, ``n``: Cohen's kappa, raw agreement and item count between this version's
  predictions on the stop set and those of the *reference* version (``curves.stability_reference``:
  the newest earlier version trained on at most ``n_labels − 500`` labels, at most 1,000 labels back),
  with ``reference_version``, ``reference_labels`` and ``span`` (the labels between them). No
  reference yet: ``kappa`` is ``None`` and the rule has no evidence from this version;
- ``previous_version``, ``previous_kappa``: the same against the version just before it (the
  published rule's comparison; kept for the record, the rule does not use it: versions a few labels
  apart always agree);
- ``stop_set``, ``labels``, ``seconds``.

The stop set is ``curves.stop_set`` of the project's items that have a vector, seeded by the project:
the 2,000 of smallest key, chosen once (labelling an item does not take it out). Labelled items stay
in on purpose: with uncertainty sampling the items left unlabelled are the easy ones, whose predictions
settle long before the model stops improving on the rest (``bench/stopping.py`` measured the false
stops this caused). Each version predicts with its serving model (``registry.model_load``; a
fine-tuned one reads the items' texts); predictions are compared as label names, so a version
trained before a label was added still compares.

Every compared version must be trained (candidate, current, retired or rejected) with its weights
stored. This is a side computation: the training job records its failure and carries on
(``loop.services.training``).
"""

from __future__ import annotations

import time

import numpy as np
from django.db import transaction

from annotation.models import Project

from .. import curves
from ..embeddings import embeddings_load
from ..models import ModelVersion
from .registry import SERVING, model_load
from .snapshot import item_texts

TRAINED = (
    ModelVersion.Status.CANDIDATE,
    ModelVersion.Status.CURRENT,
    ModelVersion.Status.RETIRED,
    ModelVersion.Status.REJECTED,
)


def stop_set_items(project: Project) -> tuple[np.ndarray, np.ndarray]:
    """The project's stop set (module docstring): item ids (sorted) and their vectors."""
    matrix = embeddings_load(project)
    ids = curves.stop_set(matrix.ids, project.pk)
    return ids, np.asarray(matrix.vectors[matrix.positions(ids)], dtype=np.float32)


def _predict(version: ModelVersion, ids: np.ndarray, vectors: np.ndarray, codes: dict[str, int]) -> np.ndarray:
    """The version's predicted class of each stop-set item, as a code per label name (``codes`` grows)."""
    model = model_load(version, role=SERVING)
    inputs = item_texts(ids) if getattr(model, "input_kind", "vectors") == "texts" else vectors
    columns = np.array([codes.setdefault(name, len(codes)) for name in version.label_names], dtype=np.int64)
    return columns[np.asarray(model.predict_proba(inputs)).argmax(axis=1)]


def version_stability(*, version: ModelVersion, horizon: int = curves.HORIZON) -> dict:
    """Measure and store ``version``'s agreement with earlier versions on the stop set (module docstring)."""
    started = time.perf_counter()
    version = ModelVersion.objects.select_related("project").get(pk=version.pk)
    project = version.project
    earlier = list(
        ModelVersion.objects.filter(project=project, version__lt=version.version, status__in=TRAINED)
        .exclude(weights="")
        .order_by("version")
    )
    reference_number = curves.stability_reference(
        [(v.version, v.n_labels) for v in earlier], version.n_labels, horizon=horizon
    )
    reference = next((v for v in earlier if v.version == reference_number), None)
    previous = earlier[-1] if earlier else None
    ids, vectors = stop_set_items(project)
    record: dict = {"status": "done", "labels": version.n_labels, "stop_set": int(len(ids)), "kappa": None}
    if len(ids):
        codes: dict[str, int] = {}
        predicted: dict[int, np.ndarray] = {}

        def predictions(of: ModelVersion) -> np.ndarray:
            if of.pk not in predicted:
                predicted[of.pk] = _predict(of, ids, vectors, codes)
            return predicted[of.pk]

        if previous is not None:
            record["previous_version"] = previous.version
            record["previous_kappa"] = curves.prediction_agreement(predictions(version), predictions(previous))["kappa"]
        if reference is not None:
            record |= curves.prediction_agreement(predictions(version), predictions(reference))
            record |= {
                "reference_version": reference.version,
                "reference_labels": reference.n_labels,
                "span": version.n_labels - reference.n_labels,
            }
    record["seconds"] = round(time.perf_counter() - started, 4)
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        locked.metrics = (locked.metrics or {}) | {"stability": record}
        locked.save(update_fields=["metrics"])
    return record
