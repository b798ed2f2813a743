"""Fitting a candidate model version on the project's final labels.

``model_fit`` turns the project's final labels into a *candidate* ``ModelVersion``:

1. **Label snapshot** (``snapshot.label_snapshot``).
2. **Split** (``snapshot.evaluation_mask``): both the candidate and the current model are evaluated on
   this same held-out set, which neither was trained on.
3. **Fit** the head on the rest, deterministic for the seed (the version number unless given), on
   CUDA when the worker has one. The head is semi-supervised (``acquisition.semisupervised``,
   ``QUORUM_SEMI_SUPERVISED``, on by default): one logistic head fitted on the labels and on
   label-spread pseudo-labels of up to ``QUORUM_SEMI_SUPERVISED_MAX_UNLABELLED`` unlabelled pool items
   (a sample by stable per-item keys, so successive versions mostly see the same items), its
   neighbourhood size, spreading strength and mixing weight chosen by cross-validation on these
   labels. The held-out items are never among the unlabelled ones and are dropped from the graph:
   the metrics and the gate judge the head on items it saw neither the label nor the vector of.
   With the setting off, without unlabelled items, or with more labels than that many (the graph's
   cost grows with the square of its nodes), it is the plain logistic head. The version's
   ``hyperparameters["head"]`` records the choices, the number of unlabelled items and the graph's
   seconds.
4. **Refit** the serving model on every label, the held-out ones included (heads only), with the
   choices the cross-validation made in step 3 and the same k-nearest-neighbour graph (held-out
   items join it as labelled nodes): it scores the pool and suggests labels, while the model fitted
   without them stays in the same file for the metrics and the gate
   (``registry.model_load(version, role=...)``). QBC and BALD also fit their committee
   (``committee_hyperparameters``: bootstrap logistic heads, an MC-dropout MLP) on every label; it
   only ranks the pool for its vote entropy / BALD scores, while the head serves, suggests and is
   evaluated (``committee.HeadWithCommittee``): a committee's mean predicts worse than one head.
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
from ..embeddings import embeddings_load
from ..models import ModelVersion
from ..sampling import uniform_keys
from .gate import head_to_head, tag_metrics
from .registry import EVALUATION, SERVING, code_version, committee_device, remember
from .snapshot import LabelSnapshot, evaluation_mask, label_snapshot, model_inputs, unseen_by

logger = logging.getLogger(__name__)

UNLABELLED_KEY_SALT = 11  # per-item keys of the unlabelled sample (stable across versions)
COMMITTEE_STRATEGIES = (Strategy.QBC, Strategy.BALD)


def committee_hyperparameters(strategy: str) -> dict:
    """The heads a strategy ranks the pool with. Committee strategies get their posterior samples: QBC
    a committee of ``QUORUM_COMMITTEE_MEMBERS`` logistic heads on bootstrap resamples, BALD an MLP head
    with MC dropout (20 masks; bootstrap logistic committees make a poor posterior for BALD); these
    only rank, beside the serving head (``head_hyperparameters``). Every other strategy ranks with
    the serving head itself, one logistic head fitted on all the labels (L2 1/C = 0.1): averaging
    bootstrap members, each trained on ~63% of the labels, costs accuracy when labels are scarce."""
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


def head_hyperparameters() -> dict:
    """The serving head of every strategy: one logistic head (L2 1/C = 0.1), semi-supervised unless
    ``QUORUM_SEMI_SUPERVISED`` is off (the grids of ``LabelSpreadingHead`` are its defaults)."""
    hyper = {"weight_decay": 0.1}
    if getattr(settings, "QUORUM_SEMI_SUPERVISED", True):
        hyper["semi_supervised"] = {
            "max_unlabelled": int(getattr(settings, "QUORUM_SEMI_SUPERVISED_MAX_UNLABELLED", 10_000))
        }
    return hyper


def unlabelled_sample(project: Project, snap: LabelSnapshot, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """``(item ids, vectors)`` of up to ``limit`` pool items without a final label: the smallest
    per-item keys (``uniform_keys``, stable across versions), in item order. Held-out items have a
    final label, so they are never in it."""
    matrix = embeddings_load(project)
    ids = matrix.ids[~np.isin(matrix.ids, snap.item_ids)]
    keys = uniform_keys(ids, project.pk, salt=UNLABELLED_KEY_SALT)
    chosen = np.sort(ids[np.lexsort((ids, keys))[: max(0, limit)]])
    if not len(chosen):  # every item with a vector is labelled
        return chosen, np.empty((0, project.embedding_dim), dtype=np.float32)
    vectors = np.asarray(matrix.vectors[matrix.positions(chosen)], dtype=np.float32).reshape(len(chosen), -1)
    return chosen, vectors


class _Heads:
    """Fits the head of a version: the evaluation head on the training split, then the serving head
    on every label with the evaluation head's choices, over one graph (module docstring)."""

    def __init__(self, project: Project, snap: LabelSnapshot, hyper: dict, seed: int, device: str):
        self.snap, self.hyper, self.seed, self.device = snap, hyper, seed, device
        self.semi = hyper.get("semi_supervised")
        self.note = ""
        if self.semi and len(snap) > self.semi["max_unlabelled"]:
            # the graph's cost grows with the square of its nodes, every label among them
            self.note = "more labels than the unlabelled items a job may use: the plain head"
            self.semi = None
        self.U = unlabelled_sample(project, snap, self.semi["max_unlabelled"])[1] if self.semi else None
        self.graph = None
        self.graph_seconds = 0.0
        self.classes = np.arange(len(snap.label_names))  # every label of the project, used or not yet

    def _graph(self):
        from ..semisupervised import LabelSpreadingHead, knn_graph  # PyTorch loads where a model runs

        if self.graph is None:
            started = time.perf_counter()
            k = max(np.atleast_1d(LabelSpreadingHead().n_neighbors))
            self.graph = knn_graph(np.concatenate([self.snap.X, self.U]), int(k), device=self.device)
            self.graph_seconds = time.perf_counter() - started
        return self.graph

    def fit(self, rows: np.ndarray, like=None):
        """The head fitted on the labels at ``rows`` (a mask); ``like``: a fitted semi-supervised head
        whose choices to reuse."""
        from ..committee import HeadCommittee  # PyTorch loads where a model runs, not in web processes
        from ..semisupervised import LabelSpreadingHead  # PyTorch loads where a model runs

        snap = self.snap
        if not self.semi or self.U is None or not len(self.U):
            head = HeadCommittee(
                **committee_hyperparameters(Strategy.MARGIN), random_state=self.seed, device=self.device
            )
            return head.fit(snap.X[rows], snap.y[rows], classes=self.classes, sample_weight=snap.weights[rows])
        params = {"max_unlabelled": len(self.U), "weight_decay": self.hyper["weight_decay"]}
        if like is not None:
            params |= {"n_neighbors": like.n_neighbors_, "alpha": like.alpha_, "mixing": like.mixing_}
        head = LabelSpreadingHead(**params, random_state=self.seed, device=self.device)
        n = len(snap)
        nodes = np.concatenate([np.flatnonzero(rows), n + np.arange(len(self.U))])
        graph = self._graph()
        return head.fit(
            snap.X[rows],
            snap.y[rows],
            X_unlabelled=self.U,
            classes=self.classes,
            sample_weight=snap.weights[rows],
            graph=graph if len(nodes) == len(graph) else graph.subset(nodes),
        )


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

    from ..committee import HeadCommittee  # PyTorch loads where a model runs
    from ..finetune import FineTunedClassifier  # PyTorch loads where a model runs, not in web processes
    from ..heads import HeadWithCommittee  # PyTorch loads where a model runs, not in web processes

    project = Project.objects.get(pk=project.pk)
    snap = label_snapshot(project)
    if len(snap) == 0:
        raise ServiceError("the project has no final labels with an embedding to train on", code="no_labels")
    held_out = evaluation_mask(project, snap)
    if held_out.all():
        held_out[:] = False
    train, test = ~held_out, held_out
    device = committee_device()
    multi = project.multi_label
    finetune, note = _finetune_plan(project, device)
    if multi:
        hyper = {"head": {"kind": "one_vs_rest", **tag_head_hyperparameters(project)}}
    elif finetune:
        hyper = {"base": project.encoder, "epochs": settings.QUORUM_FINETUNE_EPOCHS}
    else:
        hyper = committee_hyperparameters(project.acquisition_strategy) | {"head": head_hyperparameters()}
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
    strategy = project.acquisition_strategy
    try:
        if multi:
            version, serving, committee, state, train_seconds = _fit_tags(
                project, version, snap, train, test, hyper, device
            )
            metrics = version.metrics
        elif finetune:
            committee = FineTunedClassifier(**hyper, random_state=seed, device=device)
            hyper = committee.get_params()
            ModelVersion.objects.filter(pk=version.pk).update(hyperparameters=hyper)
            committee.fit(
                model_inputs(committee, snap, train),
                snap.y[train],
                classes=np.arange(len(snap.label_names)),  # every label of the project, used or not yet
                sample_weight=snap.weights[train],
            )
        else:
            heads = _Heads(project, snap, hyper["head"], seed, device)
            committee = heads.fit(train)  # the evaluation head
        if not multi:
            train_seconds = time.perf_counter() - started
            started = time.perf_counter()
            metrics = _evaluate(version, committee, snap, train, test)
            metrics["evaluate_seconds"] = round(time.perf_counter() - started, 4)
            # The model that serves (scores the pool, suggests labels) is refitted on every label, the
            # held-out ones included; the one fitted without them stays for evaluation and the gate.
            serving = committee
        if not finetune and not multi:
            started = time.perf_counter()
            if test.any():
                serving = heads.fit(np.ones(len(snap), dtype=bool), like=_semi(committee))
            if strategy in COMMITTEE_STRATEGIES:  # it only ranks the pool; the head serves
                ranker = HeadCommittee(**committee_hyperparameters(strategy), random_state=seed, device=device)
                ranker.fit(snap.X, snap.y, classes=heads.classes, sample_weight=snap.weights)
                serving = HeadWithCommittee(serving, ranker)
            train_seconds += time.perf_counter() - started
            hyper["head"] = hyper["head"] | _head_record(committee, heads)
        if not multi:
            state = committee.state_dict()
            if serving is not committee:
                state = {"serving": serving.state_dict(), "evaluation": state}
        metrics["serving_trained_on"] = "all labels" if test.any() and not finetune else "the training split"
        buffer = io.BytesIO()
        torch.save(state, buffer)
    except Exception as exc:
        ModelVersion.objects.filter(pk=version.pk).update(
            status=ModelVersion.Status.FAILED, decision=f"training failed: {type(exc).__name__}: {exc}"[:2000]
        )
        raise
    version.train_seconds = train_seconds
    version.metrics = metrics
    version.hyperparameters = hyper
    version.weights.save(
        f"project-{project.pk}/v{number}-{snap.digest[:12]}.pt", ContentFile(buffer.getvalue()), save=False
    )
    version.status = ModelVersion.Status.CANDIDATE
    version.save(update_fields=["status", "train_seconds", "metrics", "weights", "hyperparameters"])
    remember(version, serving, role=SERVING)
    remember(version, committee, role=EVALUATION)
    logger.info(
        "trained %s on %d labels (%d held out) in %.2f s", version, version.n_train, version.n_eval, train_seconds
    )
    return version


def tag_head_hyperparameters(project: Project) -> dict:
    """The one-vs-rest head of a multi-label project (``multilabel.OneVsRestHead``): its L2 strength
    chosen among a few by out-of-fold cross-entropy, per-tag thresholds by cross-validated F1."""
    return {
        "weight_decay": [0.01, 0.1, 1.0],
        "cv": 5,
        "allow_empty": bool(project.allow_empty_tags),
        "max_unlabelled": int(getattr(settings, "QUORUM_TAG_THRESHOLD_POOL", 20_000)),
    }


def _fit_tags(project: Project, version: ModelVersion, snap: LabelSnapshot, train, test, hyper: dict, device: str):
    """Multi-label ``model_fit``: the one-vs-rest head on the training split (evaluated on the
    held-out tag sets), and the serving head refitted on every label with the chosen strength.
    Both read their per-tag thresholds off the unlabelled pool (a stable sample of at most
    ``max_unlabelled`` items without a final label; ``multilabel`` module docstring: the expected F1
    over the pool's probabilities), falling back to cross-validated thresholds when the pool is
    empty. Returns ``(version with metrics, serving, evaluation head, state, train seconds)``."""
    from ..multilabel import OneVsRestHead  # PyTorch loads where a model runs, not in web processes

    params = {k: v for k, v in hyper["head"].items() if k != "kind"}
    pool = unlabelled_sample(project, snap, params["max_unlabelled"])[1]
    pool = pool if len(pool) else None
    started = time.perf_counter()
    head = OneVsRestHead(**params, random_state=version.seed, device=device)
    head.fit(snap.X[train], snap.y[train], sample_weight=snap.weights[train], X_unlabelled=pool)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    metrics = _evaluate(version, head, snap, train, test)
    metrics["evaluate_seconds"] = round(time.perf_counter() - started, 4)
    serving = head
    if test.any():
        started = time.perf_counter()
        serving = OneVsRestHead(
            **(params | {"weight_decay": head.weight_decay_}), random_state=version.seed, device=device
        )
        serving.fit(snap.X, snap.y, sample_weight=snap.weights, X_unlabelled=pool)
        train_seconds += time.perf_counter() - started
    hyper["head"] = hyper["head"] | {
        "chosen_weight_decay": float(head.weight_decay_),
        "tuned_thresholds": int(head.tuned_.sum()),
        "threshold_source": head.threshold_source_,
        "n_unlabelled": 0 if pool is None else len(pool),
    }
    state = head.state_dict()
    if serving is not head:
        state = {"serving": serving.state_dict(), "evaluation": state}
    version.metrics = metrics
    return version, serving, head, state, train_seconds


def _semi(head):
    """``head`` when it is a semi-supervised head (its choices are reused), else ``None``."""
    return head if hasattr(head, "mixing_") else None


def _head_record(evaluation_head, heads: _Heads) -> dict:
    """What the version's hyper-parameters record of its head: the semi-supervised choices (from the
    cross-validation on the training split), the unlabelled items used and the graph's seconds."""
    head = _semi(evaluation_head)
    if head is None:
        return {"kind": "logistic", "note": heads.note} if heads.note else {"kind": "logistic"}
    return {
        "kind": "label_spreading",
        "chosen": head.summary(),
        "n_unlabelled": int(len(heads.U)),
        "graph_seconds": round(heads.graph_seconds, 4),
    }


def _evaluate(version: ModelVersion, committee, snap: LabelSnapshot, train: np.ndarray, test: np.ndarray) -> dict:
    """Metrics of the candidate on the held-out set, of the current model on the same set, and of
    the candidate on its training labels (a sanity figure)."""
    names = snap.label_names
    sources = {
        name: int((snap.groups[test] == group).sum())
        for name, group in (("gold", evaluation.GOLD), ("exploration", evaluation.EXPLORATION))
    }
    sources["other"] = int(test.sum()) - sources["gold"] - sources["exploration"]
    if snap.multi_label:
        metrics = {
            "eval": tag_metrics(committee, snap.y[test], snap.X[test], names),
            "eval_sources": sources,
            "eval_unbiased": sources["other"] == 0 and int(test.sum()) > 0,
            "train": {
                key: value
                for key, value in tag_metrics(committee, snap.y[train], snap.X[train], names).items()
                if key not in ("per_label", "ece_per_tag")
            },
        }
        parent = version.parent
        if parent is not None:
            metrics["gate"] = head_to_head(committee, version, parent, snap, test & unseen_by(parent, snap))
        return metrics
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
