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


def head_to_head(candidate_model, candidate: ModelVersion, current: ModelVersion, snap: LabelSnapshot, rows) -> dict:
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
