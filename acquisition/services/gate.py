"""The promotion gate: a candidate version against the current one, on labels neither trained on.

``model_gate`` promotes the candidate (``registry.model_promote``) or keeps it as rejected with the
reason (``evaluation.gate``: accuracy and macro-F1 within ``promotion_tolerance``, and McNemar's
paired test on the same items). Both models are compared on one evaluation set: the candidate's own
held-out set when the current model is still the one it was evaluated against, otherwise (a
promotion or roll back happened while it trained) both on today's held-out set.
"""

from __future__ import annotations

import logging

import numpy as np

from quorum.errors import Conflict

from .. import evaluation
from ..models import ModelVersion
from .registry import EVALUATION, model_load, model_promote
from .snapshot import LabelSnapshot, evaluation_mask, label_snapshot, model_inputs, unseen_by

logger = logging.getLogger(__name__)


def _tag_probabilities(model, version: ModelVersion | None, X, label_names: list[str]):
    """``model``'s tag probabilities of ``X`` and its thresholds, with columns in ``label_names`` order
    (a tag added since ``version`` was trained gets probability 0 and threshold 0.5)."""
    probs = np.asarray(model.predict_proba(X), dtype=np.float64)
    thresholds = np.asarray(model.thresholds_, dtype=np.float64)
    trained = list(version.label_names) if version is not None else list(label_names)
    if trained == list(label_names):
        return probs, thresholds
    out = np.zeros((probs.shape[0], len(label_names)))
    t = np.full(len(label_names), 0.5)
    where = {name: j for j, name in enumerate(label_names)}
    for k, name in enumerate(trained):
        if name in where:
            out[:, where[name]] = probs[:, k]
            t[where[name]] = thresholds[k]
    return out, t


def tag_metrics(model, Y: np.ndarray, X, names: list[str], version: ModelVersion | None = None) -> dict:
    """A multi-label head's figures on tag sets ``Y`` (``multilabel.multilabel_metrics``), with
    ``accuracy`` (subset accuracy: the whole set right) and ``ece`` (the mean per-tag calibration
    error) under the names single-label metrics use, so the gate, the dashboard and the learning curve
    read either. ``version``: the model's version, when its tags may differ from ``names``."""
    from ..multilabel import multilabel_metrics  # PyTorch loads where a model runs

    if not len(Y):
        return {"n": 0, "accuracy": None, "macro_f1": None, "micro_f1": None, "ece": None}
    probs, thresholds = _tag_probabilities(model, version, X, names)
    figures = multilabel_metrics(Y, probs, thresholds, names, allow_empty=getattr(model, "allow_empty", True))
    figures["accuracy"] = figures["subset_accuracy"]
    figures["ece"] = figures["ece_mean"]
    return figures


def _tags_head_to_head(candidate_model, candidate, current, snap: LabelSnapshot, rows) -> dict:
    """``head_to_head`` on tag sets: the figures of ``tag_metrics`` and McNemar's test on whole sets."""
    from ..multilabel import predict_tags  # PyTorch loads where a model runs

    Y = snap.y[rows]
    X = snap.X[rows]
    names = snap.label_names
    current_model = model_load(current, role=EVALUATION)
    right = []
    for model, version in ((candidate_model, candidate), (current_model, current)):
        probs, thresholds = _tag_probabilities(model, version, X, names)
        tags = predict_tags(probs, thresholds, allow_empty=getattr(model, "allow_empty", True))
        right.append((tags == Y).all(axis=1))
    b, c, p = evaluation.paired_worse_p(right[0], right[1])
    return {
        "n": int(len(Y)),
        "current_version": current.version,
        "candidate": tag_metrics(candidate_model, Y, X, names, candidate),
        "current": tag_metrics(current_model, Y, X, names, current),
        "only_current_right": b,
        "only_candidate_right": c,
        "p_worse": p,
    }


def head_to_head(candidate_model, candidate: ModelVersion, current: ModelVersion, snap: LabelSnapshot, rows) -> dict:
    """Candidate and current model on the same labels, ``rows`` (neither was trained on them)."""
    names = snap.label_names
    y = snap.y[rows]
    if not len(y):
        return {"n": 0, "current_version": current.version}
    if snap.multi_label:
        return _tags_head_to_head(candidate_model, candidate, current, snap, rows)
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
    head = head_to_head(model_load(version, role=EVALUATION), version, current, snap, rows)
    version.metrics = (version.metrics or {}) | {"gate": head}
    ModelVersion.objects.filter(pk=version.pk).update(metrics=version.metrics)
    return head
