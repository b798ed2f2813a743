"""Fitting a candidate model version on the project's final labels.

``model_fit`` turns the project's final labels into a *candidate* ``ModelVersion``:

1. **Label snapshot** (``snapshot.label_snapshot``).
2. **Split** (``snapshot.evaluation_mask``): both the candidate and the current model are evaluated on
   this same held-out set, which neither was trained on.
3. **Fit** heads (``HeadCommittee``, shaped by ``committee_hyperparameters`` for the project's
   strategy) on the rest, deterministic for the seed (the version number unless given), on CUDA
   when the worker has one.
4. **Refit** the serving model on every label, the held-out ones included (heads only): it scores the
   pool and suggests labels, while the model fitted without them stays in the same file for the
   metrics and the gate (``registry.model_load(version, role=...)``).
5. **Record** the lineage: parent (the current version), snapshot hash and time, split sizes and
   hash, hyper-parameters, seed, code version, device, training time, metrics (accuracy, macro-F1,
   ECE, per-class recall; and the current model's on the same set) and the weights in Django's
   storage.

``gate.model_gate`` then promotes it or keeps it as rejected.

Fine-tuning (``training_mode = finetune``, ``acquisition.finetune``) trains the encoder and a linear
head together on the label texts; the version then predicts from texts (scoring reads the candidates'
texts and runs on the ``gpu`` queue). It needs a CUDA worker (or ``QUORUM_FINETUNE_ON_CPU=1``):
without one the heads are trained and the version's decision says so.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Max

from annotation.models import Project, Strategy, TrainingMode
from quorum.errors import ServiceError

from .. import evaluation
from ..models import ModelVersion
from .gate import head_to_head
from .registry import EVALUATION, SERVING, code_version, committee_device, remember
from .snapshot import LabelSnapshot, evaluation_mask, label_snapshot, model_inputs, unseen_by

logger = logging.getLogger(__name__)


def committee_hyperparameters(strategy: str) -> dict:
    """The heads a strategy needs. Committee strategies get their posterior samples: QBC a committee
    of ``QUORUM_COMMITTEE_MEMBERS`` logistic heads on bootstrap resamples, BALD an MLP head with MC
    dropout (20 masks; bootstrap logistic committees make a poor posterior for BALD). Every other
    strategy gets one logistic head fitted on all the labels (L2 1/C = 0.1): averaging bootstrap
    members, each trained on ~63% of the labels, costs accuracy when labels are scarce."""
    if strategy == Strategy.QBC:
        return {"n_members": settings.QUORUM_COMMITTEE_MEMBERS, "hidden": 0, "mc_dropout": False, "weight_decay": 0.1}
    if strategy == Strategy.BALD:
        return {
            "n_members": 1,
            "hidden": 256,
            "dropout": 0.3,
            "mc_dropout": True,
            "mc_samples": 20,
            "epochs": 300,
            "bootstrap": False,
            "weight_decay": 0.1,
        }
    return {"n_members": 1, "hidden": 0, "mc_dropout": False, "bootstrap": False, "weight_decay": 0.1}


def _finetune_plan(project: Project, device: str) -> tuple[bool, str]:
    """Whether this worker fine-tunes the encoder, and a note when fine-tuning was asked for but not done."""
    if project.training_mode != TrainingMode.FINETUNE:
        return False, ""
    from ..finetune import finetunable  # PyTorch loads where a model runs, not in web processes

    if not finetunable(project.encoder):
        return False, f"the encoder {project.encoder!r} cannot be fine-tuned; trained the heads on its embeddings"
    if not device.startswith("cuda") and not settings.QUORUM_FINETUNE_ON_CPU:
        return False, "fine-tuning needs a CUDA worker; this worker has none, so only the heads were trained"
    return True, ""


def model_fit(*, project: Project, seed: int | None = None, job=None) -> ModelVersion:
    """Train a candidate model version on the project's final labels, evaluate it and the current
    model on the held-out set, and record both (module docstring). Raises ``ServiceError`` when
    there is nothing to train on."""
    import torch  # PyTorch loads where a model runs, not in web processes

    from ..committee import HeadCommittee  # PyTorch loads where a model runs, not in web processes
    from ..finetune import FineTunedClassifier  # PyTorch loads where a model runs, not in web processes

    project = Project.objects.get(pk=project.pk)
    snap = label_snapshot(project)
    if len(snap) == 0:
        raise ServiceError("the project has no final labels with an embedding to train on", code="no_labels")
    held_out = evaluation_mask(project, snap)
    if held_out.all():
        held_out[:] = False
    train, test = ~held_out, held_out
    device = committee_device()
    finetune, note = _finetune_plan(project, device)
    if finetune:
        hyper = {"base": project.encoder, "epochs": settings.QUORUM_FINETUNE_EPOCHS}
    else:
        hyper = committee_hyperparameters(project.acquisition_strategy)
    eval_digest = hashlib.sha256(snap.item_ids[test].tobytes()).hexdigest()
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("version"))["n"] or 0) + 1
        seed = number if seed is None else int(seed)
        version = ModelVersion.objects.create(
            project=project,
            version=number,
            status=ModelVersion.Status.TRAINING,
            kind="finetune" if finetune else "heads",
            label_names=snap.label_names,
            hyperparameters=hyper,
            seed=seed,
            n_labels=len(snap),
            n_train=int(train.sum()),
            n_eval=int(test.sum()),
            label_snapshot_hash=snap.digest,
            labels_as_of=snap.as_of,
            eval_set_hash=eval_digest,
            eval_items=snap.item_ids[test].astype("<i8").tobytes(),
            code_version=code_version(),
            device=device,
            job=job,
            parent=ModelVersion.objects.filter(project=project, status=ModelVersion.Status.CURRENT).first(),
            decision=note,
        )
    started = time.perf_counter()
    try:
        if finetune:
            committee = FineTunedClassifier(**hyper, random_state=seed, device=device)
            hyper = committee.get_params()
            ModelVersion.objects.filter(pk=version.pk).update(hyperparameters=hyper)
        else:
            committee = HeadCommittee(**hyper, random_state=seed, device=device)
        committee.fit(
            model_inputs(committee, snap, train),
            snap.y[train],
            classes=np.arange(len(snap.label_names)),  # every label of the project, used or not yet
            sample_weight=snap.weights[train],
        )
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        metrics = _evaluate(version, committee, snap, train, test)
        metrics["evaluate_seconds"] = round(time.perf_counter() - started, 4)
        # The model that serves (scores the pool, suggests labels) is refitted on every label, the
        # held-out ones included; the one fitted without them stays for evaluation and the gate.
        serving = committee
        state = committee.state_dict()
        if test.any() and not finetune:
            started = time.perf_counter()
            serving = HeadCommittee(**hyper, random_state=seed, device=device)
            serving.fit(snap.X, snap.y, classes=np.arange(len(snap.label_names)), sample_weight=snap.weights)
            train_seconds += time.perf_counter() - started
            state = {"serving": serving.state_dict(), "evaluation": state}
        metrics["serving_trained_on"] = "all labels" if serving is not committee else "the training split"
        buffer = io.BytesIO()
        torch.save(state, buffer)
    except Exception as exc:
        ModelVersion.objects.filter(pk=version.pk).update(
            status=ModelVersion.Status.FAILED, decision=f"training failed: {type(exc).__name__}: {exc}"[:2000]
        )
        raise
    version.train_seconds = train_seconds
    version.metrics = metrics
    version.weights.save(
        f"project-{project.pk}/v{number}-{snap.digest[:12]}.pt", ContentFile(buffer.getvalue()), save=False
    )
    version.status = ModelVersion.Status.CANDIDATE
    version.save(update_fields=["status", "train_seconds", "metrics", "weights"])
    remember(version, serving, role=SERVING)
    remember(version, committee, role=EVALUATION)
    logger.info(
        "trained %s on %d labels (%d held out) in %.2f s", version, version.n_train, version.n_eval, train_seconds
    )
    return version


def _evaluate(version: ModelVersion, committee, snap: LabelSnapshot, train: np.ndarray, test: np.ndarray) -> dict:
    """Metrics of the candidate on the held-out set, of the current model on the same set, and of
    the candidate on its training labels (a sanity figure)."""
    names = snap.label_names
    sources = {
        name: int((snap.groups[test] == group).sum())
        for name, group in (("gold", evaluation.GOLD), ("exploration", evaluation.EXPLORATION))
    }
    sources["other"] = int(test.sum()) - sources["gold"] - sources["exploration"]
    metrics = {
        "eval": evaluation.classification_metrics(
            snap.y[test], committee.predict_proba(model_inputs(committee, snap, test)), names
        ),
        "eval_sources": sources,
        # An estimate of the pool's accuracy only when no label came from the strategy's picks.
        "eval_unbiased": sources["other"] == 0 and int(test.sum()) > 0,
        "train": {
            key: value
            for key, value in evaluation.classification_metrics(
                snap.y[train], committee.predict_proba(model_inputs(committee, snap, train)), names
            ).items()
            if key != "per_class_recall"
        },
    }
    parent = version.parent
    if parent is not None:
        metrics["gate"] = head_to_head(committee, version, parent, snap, test & unseen_by(parent, snap))
    return metrics
