"""Evaluation metrics, the held-out split and the promotion gate (pure NumPy), against scikit-learn
and hand-worked examples."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from acquisition import curves, evaluation


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(6), size=400)
    y = rng.integers(0, 5, 400)  # class 5 never true, sometimes predicted
    pred = proba.argmax(1)
    m = evaluation.classification_metrics(y, proba, [f"c{i}" for i in range(6)])
    assert m["n"] == 400
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    recalls = recall_score(y, pred, average=None, labels=range(5))
    assert m["per_class_recall"] == pytest.approx({f"c{i}": recalls[i] for i in range(5)})


def test_expected_calibration_error_by_hand():
    # Two items at confidence 0.9 (one right), two at 0.6 (both right): bins (0.8, 0.8667] ... with 15 bins,
    # 0.9 falls in bin 13, 0.6 in bin 8. ECE = 2/4·|0.5 − 0.9| + 2/4·|1.0 − 0.6| = 0.2 + 0.2 = 0.4.
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    assert evaluation.expected_calibration_error(y, proba) == pytest.approx(0.4)
    # a perfectly calibrated, perfectly confident model
    assert evaluation.expected_calibration_error(np.array([0, 1]), np.eye(2)) == pytest.approx(0.0)


def test_empty_evaluation_set_gives_none_not_nan():
    m = evaluation.classification_metrics(np.empty(0, dtype=int), np.empty((0, 3)))
    assert m["accuracy"] is None and m["macro_f1"] is None and m["ece"] is None and m["n"] == 0


def test_stratified_take_keeps_class_shares_and_smallest_keys():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    keys = np.arange(100)[::-1] / 100.0
    taken = evaluation.stratified_take(labels, keys, 10)
    assert np.bincount(labels[taken], minlength=3).tolist() == [6, 3, 1]
    # within class 2 (rows 90..99, keys descending) the smallest keys are the last rows
    assert 99 in taken and 90 not in taken


def test_split_takes_gold_then_exploration_then_tops_up():
    n = 300
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, n)
    keys = rng.random(n)
    groups = np.full(n, evaluation.OTHER)
    groups[:10] = evaluation.GOLD
    groups[10:40] = evaluation.EXPLORATION
    mask = evaluation.evaluation_split(labels, groups, keys, fraction=0.2)  # cap 60, min_eval 50
    assert mask[:40].all()  # all gold and exploration labels fit under the cap
    assert mask.sum() == 50  # topped up to min_eval from the other labels
    # plenty of exploration labels: no top-up, the cap holds
    groups[10:200] = evaluation.EXPLORATION
    mask = evaluation.evaluation_split(labels, groups, keys, fraction=0.2)
    assert mask.sum() == 60 and mask[:10].all() and not mask[200:].any()
    # too few labels to tell models apart: nothing is held out
    assert not evaluation.evaluation_split(labels[:50], groups[:50], keys[:50], fraction=0.2).any()


def test_split_is_stable_as_labels_accumulate():
    rng = np.random.default_rng(2)
    labels, keys = rng.integers(0, 4, 2000), rng.random(2000)
    groups = np.where(rng.random(2000) < 0.1, evaluation.EXPLORATION, evaluation.OTHER)
    before = evaluation.evaluation_split(labels[:1000], groups[:1000], keys[:1000], fraction=0.2)
    after = evaluation.evaluation_split(labels, groups, keys, fraction=0.2)
    assert after[:1000][before].mean() > 0.9  # items held out before mostly stay held out


def test_gate():
    good = {"n": 100, "accuracy": 0.80, "macro_f1": 0.75}
    assert evaluation.gate(good, None, tolerance=0.02).promote
    assert evaluation.gate({"n": 100, "accuracy": 0.79, "macro_f1": 0.74}, good, tolerance=0.02).promote
    worse = evaluation.gate({"n": 100, "accuracy": 0.77, "macro_f1": 0.76}, good, tolerance=0.02)
    assert not worse.promote and "accuracy 0.7700 < current 0.8000" in worse.reason
    f1_worse = evaluation.gate({"n": 100, "accuracy": 0.81, "macro_f1": 0.70}, good, tolerance=0.02)
    assert not f1_worse.promote and "macro_f1" in f1_worse.reason
    small = evaluation.gate({"n": 5, "accuracy": 0.1, "macro_f1": 0.1}, good, tolerance=0.02)
    assert small.promote and "only 5 held-out labels" in small.reason


def test_curves_mean_and_labels_to_reach():
    a = [{"labels": 50, "accuracy": 0.2}, {"labels": 100, "accuracy": 0.4}, {"labels": 150, "accuracy": 0.6}]
    b = [{"labels": 50, "accuracy": 0.4}, {"labels": 100, "accuracy": 0.6}]
    mean = curves.mean_curve([a, b], keys=("accuracy",))
    assert [p["labels"] for p in mean] == [50, 100]
    assert mean[1]["accuracy"] == pytest.approx(0.5) and mean[1]["accuracy_std"] == pytest.approx(0.1)
    assert curves.labels_to_reach(a, 0.55) == 150 and curves.labels_to_reach(a, 0.9) is None
    assert curves.value_at(a, 120) == 0.4 and curves.value_at(a, 10) is None


def test_paired_test_counts_discordant_items():
    current = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1], bool)
    candidate = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1], bool)
    b, c, p = evaluation.paired_worse_p(candidate, current)
    # 7 items only the current model gets right, 1 only the candidate: P(X >= 7 | n=8) = 9/256
    assert (b, c) == (7, 1) and p == pytest.approx(9 / 256)
    assert evaluation.paired_worse_p(current, current)[2] == 1.0


def test_gate_promotes_a_drop_within_noise_and_rejects_a_significant_one():
    current = {"n": 120, "accuracy": 0.925, "macro_f1": 0.93}
    candidate = {"n": 120, "accuracy": 0.883, "macro_f1": 0.90}
    lucky = evaluation.gate(candidate, current, tolerance=0.02, p_worse=0.11)
    assert lucky.promote and "within noise" in lucky.reason and "p = 0.11" in lucky.reason
    real = evaluation.gate(candidate, current, tolerance=0.02, p_worse=0.004)
    assert not real.promote and "paired test p = 0.004" in real.reason
    # a significant but tiny drop stays within the tolerance
    assert evaluation.gate(
        {"n": 5000, "accuracy": 0.92, "macro_f1": 0.92}, current, tolerance=0.02, p_worse=0.01
    ).promote
