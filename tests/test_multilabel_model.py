"""Multi-label model side: the one-vs-rest head, its metrics against scikit-learn, hand-worked
acquisition scores, chunking, persistence and batch selection."""

import io
import math

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, hamming_loss
from sklearn.multiclass import OneVsRestClassifier

from acquisition import multilabel as ML
from quorum import vocabulary


def _unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n, seed=0, d=32, L=4, noise=0.15):
    """Tag sets from 6 clusters (each cluster one tag combination, one of them empty), unit-norm points."""
    rng = np.random.default_rng(seed)
    combos = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0]])[:, :L]
    centres = _unit(rng.normal(size=(len(combos), d)))
    c = rng.integers(len(combos), size=n)
    X = _unit(centres[c] + noise * rng.normal(size=(n, d)) / math.sqrt(d))
    return X, combos[c].astype(np.uint8)


def _H(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p)) if 0 < p < 1 else 0.0


# --------------------------------------------------------------------------- metrics


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(3)
    n, L = 400, 6
    Y = (rng.random((n, L)) < [0.5, 0.2, 0.05, 0.3, 0.0, 0.1]).astype(np.uint8)
    P = np.clip(0.6 * Y + 0.5 * rng.random((n, L)) - 0.05, 0, 1)
    P[:, 4] = 0.01  # a tag never present and never predicted
    t = np.array([0.5, 0.3, 0.6, 0.45, 0.5, 0.2])
    m = ML.multilabel_metrics(Y, P, t, label_names=list("abcdef"))
    pred = (P >= t).astype(np.uint8)
    assert m["micro_f1"] == pytest.approx(f1_score(Y, pred, average="micro", zero_division=0), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(Y, pred, average="macro", zero_division=0), abs=1e-12)
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(Y, pred), abs=1e-12)
    assert m["hamming_loss"] == pytest.approx(hamming_loss(Y, pred), abs=1e-12)
    per = f1_score(Y, pred, average=None, zero_division=0)
    assert [m["per_label"][c]["f1"] for c in "abcdef"] == pytest.approx(per.tolist(), abs=1e-12)
    assert [m["per_label"][c]["support"] for c in "abcdef"] == Y.sum(0).tolist()
    assert m["per_label"]["e"]["f1"] == 0.0
    assert m["n"] == n


def test_metrics_without_empty_sets_predict_the_most_probable_tag():
    Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    P = np.array([[0.4, 0.3, 0.1], [0.2, 0.45, 0.1], [0.1, 0.2, 0.9]])
    m_empty = ML.multilabel_metrics(Y, P, None)
    m_forced = ML.multilabel_metrics(Y, P, None, allow_empty=False)
    assert m_empty["subset_accuracy"] == pytest.approx(1 / 3)
    assert m_forced["subset_accuracy"] == pytest.approx(1.0)
    forced = ML.predict_tags(P, None, allow_empty=False)
    assert forced.tolist() == Y.tolist()


def test_binary_ece_hand_worked_and_against_calibration_curve():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.9, 0.1, 0.8, 0.35])
    # 2 bins: (0, .5]: y 0+1, p .1+.35 -> |1 - .45| ; (.5, 1]: |2 - 1.7| ; / 4
    assert ML.binary_ece(y, p, n_bins=2) == pytest.approx((0.55 + 0.3) / 4)
    rng = np.random.default_rng(0)
    p = rng.random(5000)
    y = (rng.random(5000) < p**1.5).astype(int)
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=15, strategy="uniform")
    counts = np.histogram(p, bins=np.linspace(0, 1, 16))[0]
    reference = float(np.sum(counts[counts > 0] * np.abs(frac_pos - mean_pred)) / len(p))
    assert ML.binary_ece(y, p, n_bins=15) == pytest.approx(reference, abs=1e-9)
    m = ML.multilabel_metrics(np.stack([y, 1 - y], 1), np.stack([p, 1 - p], 1), None)
    assert m["ece_per_tag"]["0"] == pytest.approx(reference, abs=1e-9)
    assert m["ece_mean"] == pytest.approx(np.mean(list(m["ece_per_tag"].values())))


# --------------------------------------------------------------------------- the head


def test_head_recovers_separable_tags():
    X, Y = _clustered(900, seed=1)
    head = ML.OneVsRestHead().fit(X[:600], Y[:600])
    pred = head.predict(X[600:])
    assert pred.shape == (300, 4) and pred.dtype == np.uint8
    assert f1_score(Y[600:], pred, average="micro") > 0.98
    assert accuracy_score(Y[600:], pred) > 0.95
    assert head.tuned_.all()


def test_head_matches_scikit_learn_one_vs_rest_logistic_regression():
    """Same objective as OvR LogisticRegression(C = 1/weight_decay): the probabilities agree."""
    X, Y = _clustered(500, seed=2, noise=0.8)
    head = ML.OneVsRestHead(weight_decay=0.1, cv=0, tol=1e-7, epochs=500).fit(X, Y)
    ref = OneVsRestClassifier(LogisticRegression(C=10.0, tol=1e-10, max_iter=5000)).fit(X, Y)
    np.testing.assert_allclose(head.predict_proba(X), ref.predict_proba(X), atol=2e-3)
    np.testing.assert_allclose(head.coef_, np.vstack([e.coef_ for e in ref.estimators_]), atol=2e-2)
    assert (head.thresholds_ == 0.5).all() and not head.tuned_.any()


def test_cv_thresholds_beat_one_half_on_imbalanced_tags():
    rng = np.random.default_rng(5)
    n, d, L = 6000, 16, 3
    X = rng.normal(size=(n, d)).astype(np.float32)
    # rare tags (about 4 % positive) that the features only partly explain: P(tag) rarely exceeds 0.5
    Z = X[:, :L] * 1.2 - 3.5
    Y = (rng.random((n, L)) < 1 / (1 + np.exp(-Z))).astype(np.uint8)
    train, test = slice(0, 3000), slice(3000, None)
    head = ML.OneVsRestHead().fit(X[train], Y[train])
    P = head.predict_proba(X[test])
    tuned = f1_score(Y[test], ML.predict_tags(P, head.thresholds_), average="macro", zero_division=0)
    half = f1_score(Y[test], ML.predict_tags(P, None), average="macro", zero_division=0)
    assert head.tuned_.all()
    assert (head.thresholds_ < 0.5).all()
    assert tuned > half + 0.1


def test_expected_f1_threshold_hand_worked():
    # Σq = 2.1; k = 1..4: 2·.9/3.1, 2·1.7/4.1 (best, .829), 2·2.0/5.1, 2·2.1/6.1 -> cut between .8 and .3
    assert ML._expected_f1_threshold(np.array([0.3, 0.9, 0.1, 0.8])) == pytest.approx(0.55)
    # ties: only cuts between distinct values
    assert ML._expected_f1_threshold(np.array([0.4, 0.4, 0.4])) == pytest.approx(0.2)


def test_pool_thresholds_follow_the_expected_f1_and_beat_one_half():
    """With calibrated probabilities the F1-optimal threshold is half the optimal F1 (Lipton et al. 2014)."""
    rng = np.random.default_rng(5)
    n, d, L = 9000, 16, 3
    X = rng.normal(size=(n, d)).astype(np.float32)
    Z = X[:, :L] * 1.2 - 3.5
    Y = (rng.random((n, L)) < 1 / (1 + np.exp(-Z))).astype(np.uint8)
    train, pool, test = slice(0, 3000), slice(3000, 6000), slice(6000, None)
    head = ML.OneVsRestHead().fit(X[train], Y[train], X_unlabelled=X[pool])
    assert head.threshold_source_ == "pool" and head.tuned_.all()
    Pp = head.predict_proba(X[pool]).astype(np.float64)
    for j in range(L):
        q = np.sort(Pp[:, j])[::-1]
        best = np.max(2 * np.cumsum(q) / (q.sum() + np.arange(1, len(q) + 1)))
        assert head.thresholds_[j] == pytest.approx(best / 2, abs=0.02)
    P = head.predict_proba(X[test])
    tuned = f1_score(Y[test], ML.predict_tags(P, head.thresholds_), average="macro", zero_division=0)
    half = f1_score(Y[test], ML.predict_tags(P, None), average="macro", zero_division=0)
    assert tuned > half + 0.1
    # the pool is sampled down to max_unlabelled rows, seeded
    small = ML.OneVsRestHead(max_unlabelled=500).fit(X[train], Y[train], X_unlabelled=X[pool])
    again = ML.OneVsRestHead(max_unlabelled=500).fit(X[train], Y[train], X_unlabelled=torch.from_numpy(X[pool]))
    np.testing.assert_allclose(small.thresholds_, again.thresholds_, atol=1e-6)
    assert np.abs(small.thresholds_ - head.thresholds_).max() < 0.05


def test_few_positives_keep_one_half_and_constant_tags_get_their_base_rate():
    X, Y = _clustered(200, seed=4)
    Y = np.concatenate([Y[:, :2], np.zeros((200, 1), np.uint8), np.ones((200, 1), np.uint8)], 1)
    Y[:, 1] = 0
    Y[:2, 1] = 1  # two positives < min_positives
    head = ML.OneVsRestHead(min_positives=3).fit(X, Y)
    assert head.tuned_.tolist() == [True, False, False, False]
    assert head.thresholds_[1:].tolist() == [0.5, 0.5, 0.5]
    P = head.predict_proba(X)
    np.testing.assert_allclose(P[:, 2], 0.5 / 201, rtol=1e-5)
    np.testing.assert_allclose(P[:, 3], 200.5 / 201, rtol=1e-5)
    np.testing.assert_array_equal(head.coef_[2:], 0.0)


def test_allow_empty_false_predicts_the_argmax_tag():
    X, Y = _clustered(600, seed=6)
    empty_rows = ~Y.any(1)
    assert empty_rows.any()
    head = ML.OneVsRestHead(allow_empty=False).fit(X, Y)
    pred = head.predict(X)
    assert pred.any(1).all()
    P = head.predict_proba(X)
    passing = (P >= head.thresholds_).any(1)
    rows = np.flatnonzero(~passing)
    assert rows.size  # the empty cluster: nothing passes, the argmax is forced in
    assert (pred[rows].sum(1) == 1).all()
    assert (pred[rows].argmax(1) == P[rows].argmax(1)).all()


def test_weight_decay_grid_is_chosen_by_out_of_fold_loss():
    X, Y = _clustered(400, seed=7, noise=1.5)
    head = ML.OneVsRestHead(weight_decay=(0.01, 1.0, 100.0), epochs=40).fit(X, Y)
    assert set(head.cv_loss_) == {0.01, 1.0, 100.0}
    assert head.weight_decay_ == min(head.cv_loss_, key=head.cv_loss_.get)
    single = ML.OneVsRestHead(weight_decay=head.weight_decay_, epochs=40).fit(X, Y)
    np.testing.assert_allclose(head.predict_proba(X), single.predict_proba(X), atol=1e-6)


def test_warm_start_reaches_the_same_model():
    X, Y = _clustered(300, seed=8, noise=0.8)
    cold = ML.OneVsRestHead(cv=0, tol=1e-7, epochs=300).fit(X, Y)
    warm = ML.OneVsRestHead(cv=0, tol=1e-7, epochs=300, warm_start=True).fit(X[:200], Y[:200]).fit(X, Y)
    np.testing.assert_allclose(warm.predict_proba(X), cold.predict_proba(X), atol=1e-3)


def test_state_dict_round_trip():
    X, Y = _clustered(300, seed=9)
    names = ["joy", "anger", "fear", "love"]
    head = ML.OneVsRestHead(allow_empty=False).fit(X, Y, labels=names)
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    back = ML.OneVsRestHead.from_state_dict(torch.load(buffer, weights_only=True))
    assert back.classes_.tolist() == names
    assert back.get_params() == head.get_params()
    np.testing.assert_array_equal(back.thresholds_, head.thresholds_)
    np.testing.assert_array_equal(back.predict_proba(X), head.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), head.predict(X))
    with pytest.raises(ValueError):
        ML.OneVsRestHead.from_state_dict({"kind": "label_spreading"})


def test_chunked_prediction_and_scores_equal_unchunked():
    X, Y = _clustered(1000, seed=10, noise=1.0)
    head = ML.OneVsRestHead().fit(X[:300], Y[:300])
    P = head.predict_proba(X)
    np.testing.assert_allclose(head.predict_proba(X, chunk_size=77), P, rtol=1e-6, atol=1e-8)  # GEMM blocking
    np.testing.assert_array_equal(head.predict(X, chunk_size=77), head.predict(X))
    for name in ("entropy", "max_entropy", "mmc", "margin", "cardinality_margin"):
        whole = ML.score_multilabel(name, P, thresholds=head.thresholds_)
        np.testing.assert_allclose(
            ML.score_multilabel(name, P, thresholds=head.thresholds_, chunk_size=33), whole, atol=0
        )
        np.testing.assert_allclose(head.score(X, name, chunk_size=64), whole, rtol=1e-6, atol=1e-7)


def test_bad_input():
    with pytest.raises(ValueError):
        ML.OneVsRestHead().fit(np.zeros((4, 3), np.float32), np.array([[0, 2], [1, 0], [0, 0], [1, 1]]))
    with pytest.raises(ValueError):
        ML.OneVsRestHead().fit(np.zeros((4, 3), np.float32), np.zeros(4))
    with pytest.raises(ValueError):
        ML.score_multilabel("bald", np.full((2, 2), 0.5))


# --------------------------------------------------------------------------- scores


P_HAND = np.array([[0.5, 0.1], [0.9, 0.2]])


def test_entropies_hand_worked():
    me = ML.mean_entropy(P_HAND)
    assert me[0] == pytest.approx((math.log(2) + _H(0.1)) / 2)
    assert me[0] == pytest.approx(0.509115, abs=1e-6)
    assert me[1] == pytest.approx((_H(0.9) + _H(0.2)) / 2)
    mx = ML.max_entropy(P_HAND)
    assert mx.tolist() == pytest.approx([math.log(2), _H(0.2)])
    assert ML.max_entropy(np.array([[0.0, 1.0]]))[0] == 0.0


def test_mmc_hand_worked_and_yang_formula():
    # threshold 0.5: k̂ = 1 for both rows -> ŷ = {tag 0}
    assert ML.mmc(P_HAND).tolist() == pytest.approx([0.5 + 0.1, 0.1 + 0.2])
    # an explicit cardinality of 2 puts both tags in ŷ
    assert ML.mmc(P_HAND, cardinality=[2, 0]).tolist() == pytest.approx([0.5 + 0.9, 0.9 + 0.2])
    # Yang et al.: Σ_l (1 − ŷ_l f_l)/2 with f = 2p − 1, ŷ ∈ {±1}: top-k̂ tags by probability
    rng = np.random.default_rng(0)
    P = rng.random((50, 7))
    t = rng.uniform(0.2, 0.7, 7)
    k = (P >= t).sum(1)
    expected = []
    for p, kk in zip(P, k, strict=True):
        yhat = -np.ones(7)
        yhat[np.argsort(-p)[:kk]] = 1
        expected.append(np.sum((1 - yhat * (2 * p - 1)) / 2))
    np.testing.assert_allclose(ML.mmc(P, thresholds=t), expected, atol=1e-12)


def test_cardinality_margin_hand_worked():
    # t = 0.5: row 0 s = (0, −.4), k̂ = 1 -> −(0 − (−.4)); row 1 s = (.4, −.3) -> −.7
    assert ML.cardinality_margin(P_HAND).tolist() == pytest.approx([-0.4, -0.7])
    t = np.array([0.6, 0.1])
    # row 0 s = (−.1, 0): k̂ = 1, sorted (0, −.1) -> −.1 ; row 1 s = (.3, .1): k̂ = 2, −(.1 − 0)
    assert ML.cardinality_margin(P_HAND, thresholds=t).tolist() == pytest.approx([-0.1, -0.1])
    low = np.array([[0.2, 0.3]])  # nothing passes 0.5
    assert ML.cardinality_margin(low)[0] == pytest.approx(-0.2)  # k̂ = 0: distance of the best tag
    assert ML.cardinality_margin(low, allow_empty=False)[0] == pytest.approx(-0.1)  # k̂ = 1: top-two gap
    assert ML.cardinality_margin(np.array([[0.7, 0.9]]))[0] == pytest.approx(-0.2)  # k̂ = L
    # one tag: binary margin −|p − t|
    one = np.array([[0.3], [0.55], [0.9]])
    assert ML.cardinality_margin(one).tolist() == pytest.approx([-0.2, -0.05, -0.4])
    assert ML.predicted_cardinality(P_HAND, t).tolist() == [1, 2]


def test_scores_keep_tensors_as_tensors():
    P = torch.tensor(P_HAND)
    for fn in (ML.mean_entropy, ML.max_entropy, ML.mmc, ML.cardinality_margin):
        out = fn(P)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
        np.testing.assert_allclose(out.numpy(), fn(P_HAND))


# --------------------------------------------------------------------------- batch selection


def _pool(n=500, L=5, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, L)), _unit(rng.normal(size=(n, d)))


def test_select_batch_returns_distinct_rows_and_the_exploration_share():
    P, E = _pool()
    labelled = E[:10]
    for strategy in ML.MULTILABEL_STRATEGIES:
        sel = ML.select_batch_multilabel(
            strategy, P, 50, thresholds=np.full(5, 0.4), embeddings=E, labelled=labelled, exploration=0.1, rng=3
        )
        assert len(sel) == 50 and len(set(sel.indices.tolist())) == 50, strategy
        assert int(sel.exploration.sum()) == 5, strategy
        assert not sel.exploration[:45].any(), strategy
    sel = ML.select_batch_multilabel("margin", P, 40, exploration=0.25, rng=np.random.default_rng(0))
    assert int(sel.exploration.sum()) == 10
    none = ML.select_batch_multilabel("entropy", P, 20, exploration=0.0)
    assert not none.exploration.any()


def test_select_batch_top_k_follows_the_score():
    P, _ = _pool()
    t = np.full(5, 0.6)
    for name, fn in (("entropy", ML.mean_entropy), ("mmc", ML.mmc), ("margin", ML.cardinality_margin)):
        sel = ML.select_batch_multilabel(name, P, 30, thresholds=t, exploration=0.0)
        s = fn(P, thresholds=t)
        expected = np.argsort(-s, kind="stable")[:30]
        assert sel.indices.tolist() == expected.tolist(), name
        np.testing.assert_allclose(sel.scores, s[expected])


def test_select_batch_msal_and_coreset():
    P, E = _pool(seed=1)
    labelled = E[:20]
    # α = 0: MSAL is the top-k of its uncertainty
    sel = ML.select_batch_multilabel("msal", P, 25, embeddings=E, labelled=labelled, exploration=0.0, alpha=0.0)
    expected = np.argsort(-ML.cardinality_margin(P), kind="stable")[:25]
    assert sorted(sel.indices.tolist()) == sorted(expected.tolist())
    # a large α: core-set's greedy, its first pick the farthest from the labelled set
    d = np.min(np.linalg.norm(E[:, None] - labelled[None], axis=2), axis=1)
    core = ML.select_batch_multilabel("coreset", None, 10, embeddings=E, labelled=labelled, exploration=0.0)
    assert core.indices[0] == int(np.argmax(d))
    big = ML.select_batch_multilabel("msal", P, 10, embeddings=E, labelled=labelled, exploration=0.0, alpha=1e6)
    assert big.indices[0] == core.indices[0]
    # min_dist cache instead of the labelled embeddings: the same batch
    cached = ML.select_batch_multilabel("msal", P, 25, embeddings=E, min_dist=d.astype(np.float32), exploration=0.0)
    direct = ML.select_batch_multilabel("msal", P, 25, embeddings=E, labelled=labelled, exploration=0.0)
    assert cached.indices.tolist() == direct.indices.tolist()


def test_strategy_names_match_the_vocabulary():
    assert set(ML.MULTILABEL_STRATEGIES) == set(vocabulary.TASK_STRATEGIES[vocabulary.MULTI_LABEL])
    assert not set(ML.NOT_OFFERED) & set(ML.MULTILABEL_STRATEGIES)
    assert set(ML.NOT_OFFERED) | set(ML.MULTILABEL_STRATEGIES) == set(vocabulary.STRATEGIES)
    assert ML.DEFAULT_MULTILABEL_STRATEGY in ML.MULTILABEL_STRATEGIES
