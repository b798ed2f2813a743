r"""Suspected label errors: out-of-fold probabilities and confident learning (NumPy / scikit-learn, no Django).

Reference: C. G. Northcutt, L. Jiang and I. L. Chuang, "Confident Learning: Estimating Uncertainty
in Dataset Labels", *Journal of Artificial Intelligence Research* 70 (2021), 1373–1411; the rules
below are those of cleanlab 2.x's ``cleanlab.filter.find_label_issues`` with its defaults
(``filter_by="prune_by_noise_rate"``, ``frac_noise=1``, ``min_examples_per_class=1``, issues ranked
by self-confidence).

1. Out-of-fold probabilities (:func:`out_of_fold_proba`)
--------------------------------------------------------
A label can only be judged by a model that never saw it. The labels are split into ``k`` folds,
stratified by class (scikit-learn's ``StratifiedKFold``, shuffled with ``random_state``); for each
fold a clone of the estimator is fitted on the other ``k − 1`` folds (with their sample weights) and
predicts the fold: :math:`\hat p_{ic} = p(c \mid x_i)` from a model trained without label ``i``.

``k = min(n_splits, n_y)``, where ``n_y`` is the largest class's count (``StratifiedKFold`` needs one
class with ``k`` members; ``n_splits = 5`` by default): fewer folds only when every class is
smaller than five. Stratification spreads each class over the folds, so an item whose class has
at least two labels always has another example of its class in its training folds. A class with
a single label cannot be judged out of fold (the model never saw its class) and is never flagged
(``min_examples_per_class``). Columns follow the classes ``0..C−1``; a class absent from a
training fold gets probability 0 in that fold's predictions.

2. Confident learning (:func:`confident_thresholds`, :func:`confident_joint`, :func:`find_label_issues`)
----------------------------------------------------------------------------------------------------
With given labels :math:`\tilde y_i` and out-of-fold :math:`\hat p`:

* per-class thresholds, the mean self-confidence of the class,
  :math:`t_j = \frac{1}{|X_{\tilde y=j}|}\sum_{i:\tilde y_i=j} \hat p_{ij}` (2 for a class with no
  label, so nothing is counted into it; at least 2·10⁻⁶);
* item ``i`` is *confidently* of class ``j`` when :math:`\hat p_{ij} \ge t_j` (less 10⁻⁶); its guessed
  true class :math:`y^*_i` is that class, or the arg-max of :math:`\hat p_i` when several classes pass,
  and items passing no threshold are not counted;
* the confident joint :math:`C_{\tilde y, y^*}[k][j] = |\{i : \tilde y_i = k,\ y^*_i = j\}|`, its
  diagonal at least 1, calibrated so that row ``k`` sums to the number of labels ``k`` and the whole
  matrix to ``n`` (then rounded to integers preserving the row totals);
* prune by noise rate: for every off-diagonal cell, the :math:`C[k][j]` items labelled ``k`` with
  the largest margin :math:`\hat p_{ij} - \hat p_{ik}` are label issues (after keeping at least
  ``min_examples_per_class`` per class on the diagonal, as cleanlab does); classes with at most
  ``min_examples_per_class`` labels are left alone;
* an item whose given label is still the model's arg-max (within 10⁻⁶) is never an issue.

:func:`ranked_label_issues` orders the issues by self-confidence :math:`\hat p_{i\tilde y_i}`, lowest
first (cleanlab's ``return_indices_ranked_by="self_confidence"``): the labels the model believes
least come first, so a per-round cap keeps the surest flags. The model's *alternative* for an item
is its most probable other class :math:`\arg\max_{c \ne \tilde y_i} \hat p_{ic}`.

:class:`LabelErrorFinder` puts both steps behind scikit-learn's estimator API.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

__all__ = [
    "DEFAULT_FOLDS",
    "LabelErrorFinder",
    "confident_joint",
    "confident_thresholds",
    "find_label_issues",
    "fold_count",
    "model_alternative",
    "out_of_fold_proba",
    "ranked_label_issues",
    "self_confidence",
]

DEFAULT_FOLDS = 5
_EPS = 1e-6  # cleanlab's FLOATING_POINT_COMPARISON
_MIN_THRESHOLD = 2 * _EPS
_NO_LABEL_THRESHOLD = 2.0  # a class without labels: no probability reaches it


def _check(labels, pred_probs) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2:
        raise ValueError("pred_probs must be a 2-d array (n, C)")
    if labels.shape != (pred_probs.shape[0],):
        raise ValueError(f"labels must have shape ({pred_probs.shape[0]},)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be integer class indices")
    if labels.size and (labels.min() < 0 or labels.max() >= pred_probs.shape[1]):
        raise ValueError(f"labels must lie in [0, {pred_probs.shape[1]})")
    return labels.astype(np.int64), pred_probs


# ------------------------------------------------------------------ out-of-fold probabilities


def fold_count(y, n_splits: int = DEFAULT_FOLDS) -> int:
    """``min(n_splits, largest class count)``: the folds ``out_of_fold_proba`` uses (below 2: none possible)."""
    y = np.asarray(y, dtype=np.int64)
    if y.size == 0:
        return 0
    return int(min(int(n_splits), int(np.bincount(y).max())))


def out_of_fold_proba(
    estimator, X, y, *, n_classes: int | None = None, n_splits: int = DEFAULT_FOLDS, sample_weight=None, random_state=0
) -> np.ndarray:
    """``(n, C)`` float64 out-of-fold class probabilities (module docstring, step 1).

    ``estimator``: any classifier with ``fit(X, y[, sample_weight=])``, ``predict_proba`` and
    ``classes_`` (cloned per fold). ``y``: class indices in ``[0, n_classes)``. Raises ``ValueError``
    when no class has two labels (no fold split is possible)."""
    y = np.asarray(y, dtype=np.int64)
    n = y.size
    if len(X) != n:
        raise ValueError("X and y must have the same number of rows")
    n_classes = int(n_classes if n_classes is not None else (y.max() + 1 if n else 0))
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"y must lie in [0, {n_classes})")
    k = fold_count(y, n_splits)
    if k < 2:
        raise ValueError("out-of-fold probabilities need a class with at least two labels")
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    proba = np.zeros((n, n_classes), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():
        # "The least populated class in y has only 1 members": expected, see the module docstring.
        warnings.filterwarnings("ignore", message=".*least populated class.*", category=UserWarning)
        folds = list(splitter.split(np.zeros((n, 1)), y))
    for train, test in folds:
        model = clone(estimator)
        if weights is None:
            model.fit(X[train], y[train])
        else:
            model.fit(X[train], y[train], sample_weight=weights[train])
        columns = np.asarray(model.classes_, dtype=np.int64)
        proba[np.ix_(test, columns)] = np.asarray(model.predict_proba(X[test]), dtype=np.float64)
    return proba


# ------------------------------------------------------------------ confident learning


def self_confidence(labels, pred_probs) -> np.ndarray:
    """``p̂[i, ỹ_i]``: the probability the model gives each item's own label."""
    labels, pred_probs = _check(labels, pred_probs)
    return pred_probs[np.arange(labels.size), labels]


def model_alternative(labels, pred_probs) -> tuple[np.ndarray, np.ndarray]:
    """``(class, probability)`` of the most probable class other than each item's label."""
    labels, pred_probs = _check(labels, pred_probs)
    others = pred_probs.copy()
    others[np.arange(labels.size), labels] = -np.inf
    best = others.argmax(axis=1) if others.shape[1] > 1 else np.zeros(labels.size, dtype=np.int64)
    return best.astype(np.int64), pred_probs[np.arange(labels.size), best]


def confident_thresholds(labels, pred_probs) -> np.ndarray:
    """``t_j``: the mean self-confidence of class ``j`` (2 for a class without labels), at least 2·10⁻⁶."""
    labels, pred_probs = _check(labels, pred_probs)
    n_classes = pred_probs.shape[1]
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    sums = np.bincount(labels, weights=self_confidence(labels, pred_probs), minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        thresholds = np.where(counts > 0, sums / np.maximum(counts, 1.0), _NO_LABEL_THRESHOLD)
    return np.maximum(thresholds, _MIN_THRESHOLD)


def _round_preserving_row_totals(matrix: np.ndarray) -> np.ndarray:
    """Round to integers so that every row keeps its (rounded) total: the largest remainders go up,
    the smallest down (cleanlab's ``round_preserving_row_totals``)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    ints = np.round(matrix)
    diff = (np.round(matrix.sum(axis=1)) - ints.sum(axis=1)).astype(np.int64)
    remainder = matrix - ints
    positions = np.arange(matrix.shape[1])[None, :]
    # ties broken as cleanlab breaks them: NumPy's default argsort of the remainders, read from
    # the top for the rows that go up and from the bottom for the rows that go down
    up = np.empty_like(ints, dtype=np.int64)
    ascending = np.argsort(remainder, axis=1)
    np.put_along_axis(up, ascending[:, ::-1], np.broadcast_to(positions, ints.shape), 1)
    down = np.empty_like(up)
    np.put_along_axis(down, ascending, np.broadcast_to(positions, ints.shape), 1)
    ints += up < diff[:, None]
    ints -= down < -diff[:, None]
    return ints.astype(np.int64)


def confident_joint(labels, pred_probs, *, thresholds=None, calibrate: bool = True) -> np.ndarray:
    """``(C, C)`` int counts ``C[given k][guessed true j]`` (module docstring, step 2)."""
    labels, pred_probs = _check(labels, pred_probs)
    n_classes = pred_probs.shape[1]
    thresholds = confident_thresholds(labels, pred_probs) if thresholds is None else np.asarray(thresholds)
    confident = pred_probs >= thresholds[None, :] - _EPS
    n_confident = confident.sum(axis=1)
    guess = np.where(n_confident > 1, pred_probs.argmax(axis=1), confident.argmax(axis=1))
    counted = n_confident > 0
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(joint, (labels[counted], guess[counted]), 1)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    if not calibrate:
        return joint
    label_counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    rows = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-100) * label_counts[:, None]
    rows = rows / max(rows.sum(), 1e-100) * label_counts.sum()
    return _round_preserving_row_totals(rows)


def _prune_counts(joint: np.ndarray, keep: int) -> np.ndarray:
    """``P[j][k]`` (transposed joint): items labelled ``k`` to prune as truly ``j``, after keeping at
    least ``keep`` on each diagonal (cleanlab's ``_keep_at_least_n_per_class``, ``frac_noise = 1``)."""
    counts = np.asarray(joint, dtype=np.float64).T
    diagonal = counts.diagonal().copy()
    raised = np.maximum(diagonal, keep)
    others = np.maximum(np.count_nonzero(counts, axis=0) - 1.0, 1.0)
    out = counts - (raised - diagonal)[None, :] / others[None, :]
    out[out < 0] = 0
    np.fill_diagonal(out, raised)
    return _round_preserving_row_totals(out.astype(np.int64).astype(np.float64))


def find_label_issues(labels, pred_probs, *, min_examples_per_class: int = 1, joint=None) -> np.ndarray:
    """Boolean mask of the label issues, prune by noise rate (module docstring, step 2)."""
    labels, pred_probs = _check(labels, pred_probs)
    n, n_classes = pred_probs.shape
    if joint is None:
        joint = confident_joint(labels, pred_probs)
    prune = _prune_counts(joint, min_examples_per_class)
    label_counts = np.bincount(labels, minlength=n_classes)
    issues = np.zeros(n, dtype=bool)
    for k in np.flatnonzero(label_counts > min_examples_per_class):
        rows = np.flatnonzero(labels == k)
        for j in np.flatnonzero(prune[:, k] > 0):
            if j == k:
                continue
            margin = pred_probs[rows, j] - pred_probs[rows, k]
            issues[rows[np.argsort(-margin)[: prune[j, k]]]] = True
    boosted = pred_probs.copy()
    boosted[np.arange(n), labels] += _EPS
    issues &= boosted.argmax(axis=1) != labels
    return issues


def ranked_label_issues(labels, pred_probs, issues=None, **kwargs) -> np.ndarray:
    """Indices of the label issues, lowest self-confidence first (ties by index)."""
    labels, pred_probs = _check(labels, pred_probs)
    if issues is None:
        issues = find_label_issues(labels, pred_probs, **kwargs)
    found = np.flatnonzero(issues)
    return found[np.argsort(self_confidence(labels, pred_probs)[found], kind="stable")]


class LabelErrorFinder(BaseEstimator):
    """Out-of-fold probabilities, then confident learning, behind scikit-learn's estimator API.

    ``estimator``: the classifier cloned per fold (default ``LogisticRegression(C=10)``, the
    scikit-learn twin of Quorum's logistic head). ``n_splits``: folds wanted (fewer when every class
    is smaller, see the module docstring). ``min_examples_per_class``: classes with at most this
    many labels are never pruned. ``random_state``: the fold split.

    After ``fit(X, y, n_classes=C, sample_weight=w)``: ``pred_probs_`` (n, C) out of fold,
    ``n_splits_``, ``thresholds_`` (C,), ``confident_joint_`` (C, C), ``issues_`` (n,) bool,
    ``ranking_`` (issue indices, lowest self-confidence first), ``self_confidence_`` (n,),
    ``alternative_`` / ``alternative_proba_`` (n,): the most probable other class and its probability.
    """

    def __init__(self, estimator=None, n_splits: int = DEFAULT_FOLDS, min_examples_per_class: int = 1, random_state=0):
        self.estimator = estimator
        self.n_splits = n_splits
        self.min_examples_per_class = min_examples_per_class
        self.random_state = random_state

    def fit(self, X, y, *, n_classes: int | None = None, sample_weight=None) -> LabelErrorFinder:
        y = np.asarray(y, dtype=np.int64)
        estimator = self.estimator if self.estimator is not None else LogisticRegression(C=10.0, max_iter=1000)
        self.pred_probs_ = out_of_fold_proba(
            estimator,
            X,
            y,
            n_classes=n_classes,
            n_splits=self.n_splits,
            sample_weight=sample_weight,
            random_state=self.random_state,
        )
        self.n_splits_ = fold_count(y, self.n_splits)
        self.n_classes_ = self.pred_probs_.shape[1]
        self.thresholds_ = confident_thresholds(y, self.pred_probs_)
        self.confident_joint_ = confident_joint(y, self.pred_probs_, thresholds=self.thresholds_)
        self.issues_ = find_label_issues(
            y, self.pred_probs_, min_examples_per_class=self.min_examples_per_class, joint=self.confident_joint_
        )
        self.ranking_ = ranked_label_issues(y, self.pred_probs_, self.issues_)
        self.self_confidence_ = self_confidence(y, self.pred_probs_)
        self.alternative_, self.alternative_proba_ = model_alternative(y, self.pred_probs_)
        return self
