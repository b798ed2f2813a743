"""Model evaluation and the promotion gate, as pure NumPy (no Django).

Metrics of class probabilities ``proba`` (``(n, C)``) against true classes ``y`` (``(n,)``, ints):

* accuracy ``mean(argmax proba == y)``;
* macro-F1: the mean over classes of ``2·TP / (2·TP + FP + FN)``, over the classes that occur in
  ``y`` or in the predictions (scikit-learn's ``f1_score(average="macro")``);
* expected calibration error with ``B`` equal-width confidence bins (Guo et al., 2017):
  ``ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|``, confidence ``max_c proba``;
* per-class recall ``TP_c / (TP_c + FN_c)`` for the classes present in ``y``.

``evaluation_split`` chooses the held-out evaluation set of a label snapshot (gold labels first, then
the uniform exploration sample, stratified by class), and ``gate`` decides whether a candidate model
replaces the current one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15
MIN_EVAL = 50  # fewer held-out gold/exploration labels than this: top up from the other labels
MIN_GATE = 20  # fewer evaluation labels than this: the gate has nothing to go on and promotes

# Priority groups of a label for the evaluation set (lower first).
GOLD, EXPLORATION, OTHER = 0, 1, 2


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y), np.asarray(pred)
    return float(np.mean(y == pred)) if y.size else float("nan")


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    y, pred = np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if not y.size:
        return float("nan")
    tp = np.bincount(y[y == pred], minlength=n_classes).astype(np.float64)
    n_pred = np.bincount(pred, minlength=n_classes).astype(np.float64)
    n_true = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = (n_pred + n_true) > 0
    f1 = 2 * tp[present] / (n_pred[present] + n_true[present])
    return float(f1.mean())


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS) -> float:
    y, proba = np.asarray(y), np.asarray(proba, dtype=np.float64)
    if not y.size:
        return float("nan")
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    # bin b holds confidences in (b/B, (b+1)/B]; a confidence of exactly 0 goes to the first bin
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / y.size)


def per_class_recall(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall per class; NaN for a class absent from ``y``."""
    y, pred = np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    tp = np.bincount(y[y == pred], minlength=n_classes).astype(np.float64)
    n_true = np.bincount(y, minlength=n_classes).astype(np.float64)
    return np.divide(tp, n_true, out=np.full(n_classes, np.nan), where=n_true > 0)


def classification_metrics(y: np.ndarray, proba: np.ndarray, class_names: list[str] | None = None) -> dict:
    """Every figure a model version records (JSON-ready)."""
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = proba.shape[1]
    names = class_names or [str(c) for c in range(n_classes)]
    pred = proba.argmax(axis=1) if len(proba) else np.empty(0, dtype=np.int64)
    recall = per_class_recall(y, pred, n_classes)
    return {
        "n": int(len(y)),
        "accuracy": _finite(accuracy(y, pred)),
        "macro_f1": _finite(macro_f1(y, pred, n_classes)),
        "ece": _finite(expected_calibration_error(y, proba)),
        "per_class_recall": {names[c]: float(recall[c]) for c in range(n_classes) if np.isfinite(recall[c])},
    }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# --------------------------------------------------------------------------------- the split
def _quotas(counts: np.ndarray, total: int) -> np.ndarray:
    """``total`` split over classes in proportion to ``counts`` (largest remainder), never above a count."""
    counts = np.asarray(counts, dtype=np.int64)
    if total >= counts.sum():
        return counts.copy()
    share = counts * (total / counts.sum())
    quota = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - quota), kind="stable")
    for c in order[: total - quota.sum()]:
        quota[c] += 1
    return np.minimum(quota, counts)


def stratified_take(labels: np.ndarray, keys: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` rows, class shares as in ``labels``, the smallest ``keys`` within a class."""
    labels = np.asarray(labels, dtype=np.int64)
    if count <= 0 or not labels.size:
        return np.empty(0, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quota = _quotas(counts, min(count, labels.size))
    order = np.lexsort((keys, labels))  # by class, then key
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.sort(np.concatenate([order[s : s + q] for s, q in zip(starts, quota, strict=True)]))


def evaluation_split(
    labels: np.ndarray,
    groups: np.ndarray,
    keys: np.ndarray,
    *,
    fraction: float,
    min_eval: int = MIN_EVAL,
    min_size: int = MIN_GATE,
) -> np.ndarray:
    """Boolean mask of the labels held out for evaluation.

    At most ``round(fraction · n)`` labels are held out. Gold labels come first, then the uniform
    exploration sample (both unbiased samples of the pool), each stratified by class; when these two
    give fewer than ``min(cap, min_eval)`` labels, the rest is topped up from the other labels
    (stratified) so the gate still has a set to compare on. ``keys`` (uniform per item, stable across
    snapshots) decide which rows of a class go first, so the set changes little as labels accumulate.
    A set smaller than ``min_size`` could not tell two models apart: then nothing is held out.
    """
    labels, groups, keys = np.asarray(labels), np.asarray(groups), np.asarray(keys)
    n = labels.size
    mask = np.zeros(n, dtype=bool)
    cap = int(round(fraction * n))
    if cap <= 0:
        return mask
    for group in (GOLD, EXPLORATION, OTHER):
        room = cap - int(mask.sum())
        if group == OTHER:
            room = min(room, min(cap, min_eval) - int(mask.sum()))
        if room <= 0:
            break
        rows = np.flatnonzero(groups == group)
        mask[rows[stratified_take(labels[rows], keys[rows], room)]] = True
    if mask.sum() < min_size:
        mask[:] = False
    return mask


# ---------------------------------------------------------------------------------- the gate
@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


GATE_ALPHA = 0.05  # significance of "the candidate is worse" in the paired test


def paired_worse_p(candidate_right: np.ndarray, current_right: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test, one-sided: ``(b, c, p)`` with ``b`` the items only the current model gets
    right, ``c`` those only the candidate gets right, and ``p = P(X ≥ b)`` for ``X ~ Binomial(b + c, ½)``,
    the chance of the candidate losing this many of the disputed items if both were equally good."""
    from scipy.stats import binomtest

    candidate_right, current_right = np.asarray(candidate_right, bool), np.asarray(current_right, bool)
    b = int((current_right & ~candidate_right).sum())
    c = int((candidate_right & ~current_right).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="greater").pvalue)
    return b, c, p


def gate(
    candidate: dict,
    current: dict | None,
    *,
    tolerance: float,
    p_worse: float | None = None,
    alpha: float = GATE_ALPHA,
    min_eval: int = MIN_GATE,
) -> GateDecision:
    """Promote ``candidate`` unless, on the same evaluation set, it is worse than ``current`` by more than
    ``tolerance`` in accuracy or macro-F1 (metric dicts of ``classification_metrics``) *and* the paired
    test says it is worse (``p_worse < alpha``, from ``paired_worse_p``; ``None`` skips the test).

    The test matters because the current model was itself chosen by its score on much the same labels:
    a few points lost on a hundred labels is often luck, and rejecting on luck freezes the model while
    labels keep coming."""
    if current is None:
        return GateDecision(True, "first model of the project")
    n = candidate.get("n") or 0
    if n < min_eval:
        return GateDecision(True, f"promoted without a gate: only {n} held-out labels (needs {min_eval})")
    worse = []
    for name in ("accuracy", "macro_f1"):
        new, old = candidate.get(name), current.get(name)
        if new is None or old is None:
            continue
        if new < old - tolerance:
            worse.append(f"{name} {new:.4f} < current {old:.4f} − tolerance {tolerance:g}")
    significant = p_worse is None or p_worse < alpha
    summary = (
        f"accuracy {candidate['accuracy']:.4f} vs current {current['accuracy']:.4f}, "
        f"macro-F1 {candidate['macro_f1']:.4f} vs {current['macro_f1']:.4f}"
    )
    test = "" if p_worse is None else f"; paired test p = {p_worse:.3g}"
    if worse and significant:
        return GateDecision(False, f"rejected on {n} held-out labels: " + "; ".join(worse) + test)
    if worse:
        return GateDecision(True, f"promoted on {n} held-out labels: {summary}{test} (the drop is within noise)")
    return GateDecision(True, f"promoted on {n} held-out labels: {summary}")
