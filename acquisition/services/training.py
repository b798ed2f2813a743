"""Training, evaluation, the promotion gate and the model registry.

``model_fit`` turns the project's final labels into a *candidate* ``ModelVersion``:

1. **Label snapshot** (``label_snapshot``): every final label with an embedding, its weight (the
   aggregator's confidence; gold and reviewed labels count fully), its priority group for
   evaluation (gold, exploration sample, other) and a SHA-256 of ``item:label:source`` rows.
2. **Split** (``evaluation.evaluation_split``): up to ``project.eval_fraction`` of the labels are held
   out, gold first, then the uniform exploration sample, stratified by class. Both the candidate and
   the current model are evaluated on this same set, which neither was trained on.
3. **Fit** heads (``HeadCommittee``, shaped by ``committee_hyperparameters`` for the project's
   strategy) on the rest, deterministic for the seed (the version number unless given), on CUDA
   when the worker has one.
4. **Refit** the serving model on every label, the held-out ones included (heads only): it scores the
   pool and suggests labels, while the model fitted without them stays in the same file for the
   metrics and the gate (``model_load(version, role=...)``).
5. **Record** the lineage: parent (the current version), snapshot hash and time, split sizes and
   hash, hyper-parameters, seed, code version, device, training time, metrics (accuracy, macro-F1,
   ECE, per-class recall; and the current model's on the same set) and the weights in Django's
   storage.

``model_gate`` then promotes it (the old current one retires) or keeps it as rejected with the
reason; ``model_promote`` is also the admins' roll back to an earlier version.

Fine-tuning (``training_mode = finetune``, ``acquisition.finetune``) trains the encoder and a linear
head together on the label texts; the version then predicts from texts (scoring reads the candidates'
texts and runs on the ``gpu`` queue). It needs a CUDA worker (or ``QUORUM_FINETUNE_ON_CPU=1``):
without one the heads are trained and the version's decision says so.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Item, LabelClass, LabelSource, Project, QueueReason, Strategy, TrainingMode
from quorum.errors import Conflict, ServiceError

from .. import evaluation
from ..embeddings import embeddings_load
from ..models import ModelVersion

logger = logging.getLogger(__name__)

EVAL_KEY_SALT = 7  # per-item keys of the evaluation split (stable across snapshots)


def committee_device() -> str:
    from ..encoders import resolve_device

    return str(resolve_device(settings.QUORUM_DEVICE))


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        base = version("quorum")
    except PackageNotFoundError:
        base = "dev"
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{base}+{commit}" if commit else base


# ------------------------------------------------------------------------------ the snapshot
@dataclass
class LabelSnapshot:
    item_ids: np.ndarray  # (n,)
    X: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) column in label_names
    weights: np.ndarray  # (n,) in (0, 1]
    groups: np.ndarray  # (n,) evaluation.GOLD | EXPLORATION | OTHER
    finalized_at: np.ndarray  # (n,) datetime64[us], when each label became final
    label_names: list[str]
    label_ids: list[int]
    digest: str
    as_of: datetime

    def __len__(self) -> int:
        return int(self.y.size)

    def texts(self, rows: np.ndarray) -> list[str]:
        """The texts of the labels at ``rows`` (a mask or indices), read from the database."""
        return item_texts(self.item_ids[rows])


def item_texts(item_ids: np.ndarray) -> list[str]:
    """Texts of ``item_ids``, in that order."""
    from quorum.chunks import iter_chunks

    found: dict[int, str] = {}
    for chunk in iter_chunks([int(i) for i in item_ids], 2000):
        found.update(Item.objects.filter(pk__in=chunk).values_list("pk", "text"))
    return [found[int(i)] for i in item_ids]


def model_inputs(model, snap: LabelSnapshot, rows: np.ndarray):
    """What ``model`` predicts from: texts (a fine-tuned encoder) or the stored vectors (heads)."""
    return snap.texts(rows) if getattr(model, "input_kind", "vectors") == "texts" else snap.X[rows]


def label_snapshot(project: Project) -> LabelSnapshot:
    """The project's final labels that have an embedding, in item order (module docstring)."""
    as_of = timezone.now()
    labels = list(LabelClass.objects.filter(project=project).order_by("order", "pk").values_list("pk", "name"))
    column = {pk: j for j, (pk, _) in enumerate(labels)}
    rows = list(
        Item.objects.filter(project=project, final_label__isnull=False)
        .order_by("pk")
        .values_list("pk", "final_label_id", "final_confidence", "final_source", "selected_as", "finalized_at")
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
    from .scoring import uniform_keys

    keys = uniform_keys(snap.item_ids, project.pk, salt=EVAL_KEY_SALT)
    return evaluation.evaluation_split(snap.y, snap.groups, keys, fraction=project.eval_fraction)


# ------------------------------------------------------------------------------ fit + record
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
    from ..finetune import finetunable

    if not finetunable(project.encoder):
        return False, f"the encoder {project.encoder!r} cannot be fine-tuned; trained the heads on its embeddings"
    if not device.startswith("cuda") and not settings.QUORUM_FINETUNE_ON_CPU:
        return False, "fine-tuning needs a CUDA worker; this worker has none, so only the heads were trained"
    return True, ""


def model_fit(*, project: Project, seed: int | None = None, job=None) -> ModelVersion:
    """Train a candidate model version on the project's final labels, evaluate it and the current
    model on the held-out set, and record both (module docstring). Raises ``ServiceError`` when
    there is nothing to train on."""
    from ..committee import HeadCommittee

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
        from ..finetune import FineTunedClassifier

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
            n_classes=len(snap.label_names),
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
            serving.fit(snap.X, snap.y, n_classes=len(snap.label_names), sample_weight=snap.weights)
            train_seconds += time.perf_counter() - started
            state = {"serving": serving.state_dict(), "evaluation": state}
        metrics["serving_trained_on"] = "all labels" if serving is not committee else "the training split"
        buffer = io.BytesIO()
        import torch

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
    _remember(version, serving, role=SERVING)
    _remember(version, committee, role=EVALUATION)
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
        metrics["gate"] = _head_to_head(committee, version, parent, snap, test & unseen_by(parent, snap))
    return metrics


def _head_to_head(candidate_model, candidate: ModelVersion, current: ModelVersion, snap: LabelSnapshot, rows) -> dict:
    """Candidate and current model on the same labels, ``rows`` (neither was trained on them)."""
    names = snap.label_names
    y = snap.y[rows]
    if not len(y):
        return {"n": 0, "current_version": current.version}
    current_model = model_load(current, role=EVALUATION)
    candidate_probs = probabilities_in_order(
        candidate_model, candidate, model_inputs(candidate_model, snap, rows), names
    )
    current_probs = probabilities_in_order(current_model, current, model_inputs(current_model, snap, rows), names)
    b, c, p = evaluation.paired_worse_p(candidate_probs.argmax(1) == y, current_probs.argmax(1) == y)
    return {
        "n": int(len(y)),
        "current_version": current.version,
        "candidate": evaluation.classification_metrics(y, candidate_probs, names),
        "current": evaluation.classification_metrics(y, current_probs, names),
        "only_current_right": b,
        "only_candidate_right": c,
        "p_worse": p,
    }


def probabilities_in_order(model, version: ModelVersion, X, label_names: list[str]) -> np.ndarray:
    """``model``'s class probabilities of ``X`` (vectors or texts, as the model takes) with columns in
    ``label_names`` order (labels added since the version was trained get probability 0)."""
    probs = np.asarray(model.predict_proba(X))
    out = np.zeros((probs.shape[0], len(label_names)), dtype=np.float64)
    where = {name: j for j, name in enumerate(label_names)}
    for k, name in enumerate(version.label_names):
        if name in where:
            out[:, where[name]] = probs[:, k]
    return out


# ---------------------------------------------------------------------------------- the gate
def model_gate(*, version: ModelVersion) -> ModelVersion:
    """Promote the candidate, or keep it as rejected with the reason (``evaluation.gate``).

    Both models are compared on one evaluation set: the candidate's own held-out set when the current
    model is still the one it was evaluated against, otherwise (a promotion or roll back happened
    while it trained) both are re-evaluated on today's held-out set."""
    version = ModelVersion.objects.select_related("project").get(pk=version.pk)
    if version.status != ModelVersion.Status.CANDIDATE:
        raise Conflict(f"model v{version.version} is {version.status}, not a candidate", code="not_candidate")
    current = ModelVersion.objects.filter(project=version.project, status=ModelVersion.Status.CURRENT).first()
    metrics = version.metrics or {}
    if current is None:
        decision = evaluation.GateDecision(True, "first model of the project")
    else:
        head = metrics.get("gate") if current.pk == version.parent_id else None
        if head is None:  # another version became current while this one trained
            head = _head_to_head_now(version, current)
        if not head.get("n"):
            decision = evaluation.GateDecision(True, "promoted without a gate: no label unseen by both models")
        else:
            decision = evaluation.gate(
                head["candidate"],
                head["current"],
                tolerance=version.project.promotion_tolerance,
                p_worse=head.get("p_worse"),
            )
    note = f"{version.decision}; " if version.decision else ""
    if decision.promote:
        return model_promote(version=version, reason=note + decision.reason)
    ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.CANDIDATE).update(
        status=ModelVersion.Status.REJECTED, decision=(note + decision.reason)[:5000]
    )
    version.refresh_from_db()
    logger.info("%s: %s", version, version.decision)
    return version


def _head_to_head_now(version: ModelVersion, current: ModelVersion) -> dict:
    """Both models on today's held-out labels that neither was trained on (``metrics["gate"]``)."""
    project = version.project
    snap = label_snapshot(project)
    rows = evaluation_mask(project, snap) & unseen_by(current, snap) & unseen_by(version, snap)
    head = _head_to_head(model_load(version, role=EVALUATION), version, current, snap, rows)
    version.metrics = (version.metrics or {}) | {"gate": head}
    ModelVersion.objects.filter(pk=version.pk).update(metrics=version.metrics)
    return head


PROMOTABLE = (
    ModelVersion.Status.CANDIDATE,
    ModelVersion.Status.REJECTED,
    ModelVersion.Status.RETIRED,
    ModelVersion.Status.CURRENT,
)


def model_promote(*, version: ModelVersion, reason: str, user=None) -> ModelVersion:
    """Make ``version`` the project's current model (the previous one retires). Also the roll back:
    any version that trained successfully can be made current again. Idempotent."""
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=version.project_id).first()
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelVersion.Status.CURRENT:
            return version
        if version.status not in PROMOTABLE or not version.weights:
            raise Conflict(
                f"model v{version.version} is {version.status} and cannot be made current", code="not_promotable"
            )
        ModelVersion.objects.filter(project_id=version.project_id, status=ModelVersion.Status.CURRENT).update(
            status=ModelVersion.Status.RETIRED
        )
        version.status = ModelVersion.Status.CURRENT
        version.promoted_at = timezone.now()
        who = f" by {user.get_username()}" if user is not None else ""
        version.decision = (reason + who)[:5000]
        version.save(update_fields=["status", "promoted_at", "decision"])
    logger.info("%s promoted: %s", version, version.decision)
    return version


def model_train(*, project: Project, seed: int | None = None) -> ModelVersion:
    """Fit, evaluate and gate one version (no re-scoring): what ``manage.py score --train`` does."""
    return model_gate(version=model_fit(project=project, seed=seed))


# ------------------------------------------------------------------------------------ loading
_MODELS: dict[tuple[int, str, str], object] = {}
_MODELS_LOCK = threading.Lock()
SERVING, EVALUATION = "serving", "evaluation"


def _remember(version: ModelVersion, model, *, role: str = SERVING) -> None:
    with _MODELS_LOCK:
        if len(_MODELS) > 16:
            _MODELS.clear()
        _MODELS[(version.pk, version.weights.name, role)] = model


def model_load(version: ModelVersion, *, role: str = SERVING):
    """The version's model, read from storage once per process. ``role``: ``serving`` (refitted on
    every label; scores the pool) or ``evaluation`` (fitted without the held-out labels; what the
    metrics and the gate are about). A version without a held-out set has one model for both."""
    from ..committee import HeadCommittee

    key = (version.pk, version.weights.name, role)
    model = _MODELS.get(key)
    if model is None:
        import torch

        with version.weights.open("rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
        if SERVING in state:
            state = state[role]
        if state.get("kind") == "finetune":
            from ..finetune import FineTunedClassifier

            model = FineTunedClassifier.from_state_dict(state, device=committee_device())
        else:
            model = HeadCommittee.from_state_dict(state, device=committee_device())
        _remember(version, model, role=role)
    return model
