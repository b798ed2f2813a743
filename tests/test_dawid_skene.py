"""Dawid-Skene EM and majority vote: planted parameters, a loop-by-loop reference, edge cases."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from annotation.dawid_skene import DawidSkene, MajorityVote

CROWDKIT_SETTINGS = {"smoothing": 0.0, "answer_noise": 0.0, "prior_smoothing": 0.0}


def simulate(confusions, priors, *, n_items, per_item, seed=0):
    """Answers drawn from the Dawid-Skene model: each item labelled by ``per_item`` distinct annotators."""
    rng = np.random.default_rng(seed)
    confusions = np.asarray(confusions, dtype=float)
    n_workers, n_classes, _ = confusions.shape
    truth = rng.choice(n_classes, size=n_items, p=priors)
    items = np.repeat(np.arange(n_items), per_item)
    workers = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :per_item].ravel()
    rows = confusions[workers, truth[items]]  # (n, C) answer distribution of each answer
    labels = (rng.random((items.size, 1)) > np.cumsum(rows, axis=1)).sum(axis=1)
    return items, workers, np.minimum(labels, n_classes - 1), truth


def reference_dawid_skene(items, workers, labels, n_classes, n_iter):
    """Dawid-Skene EM written answer by answer, following crowd-kit 1.4.2 (MV start, 1e-10 floors)."""
    eps = 1e-10
    tasks = sorted(set(items.tolist()))
    answers = list(zip(items.tolist(), workers.tolist(), labels.tolist(), strict=True))
    posteriors = {}
    for task in tasks:
        votes = np.zeros(n_classes)
        for item, _, label in answers:
            if item == task:
                votes[label] += 1
        posteriors[task] = votes / votes.sum()

    def m_step():
        priors = np.maximum(np.mean([posteriors[t] for t in tasks], axis=0), eps)
        errors = {}  # worker -> {label: vector over true classes}
        for item, worker, label in answers:
            errors.setdefault(worker, {}).setdefault(label, np.zeros(n_classes))
            errors[worker][label] = errors[worker][label] + posteriors[item]
        for rows in errors.values():
            for label in rows:
                rows[label] = np.maximum(rows[label], eps)
            total = sum(rows.values())
            for label in rows:
                rows[label] = rows[label] / total
        return priors, errors

    priors, errors = m_step()
    for _ in range(n_iter):
        for task in tasks:
            log_joint = np.log(priors).copy()
            for item, worker, label in answers:
                if item == task:
                    log_joint += np.log(errors[worker][label])
            joint = np.exp(log_joint - log_joint.max())
            posteriors[task] = joint / joint.sum()
        priors, errors = m_step()
    return np.array([posteriors[t] for t in tasks])


PLANTED = np.array(
    [
        [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]],
        [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]],
        [[0.95, 0.03, 0.02], [0.05, 0.9, 0.05], [0.02, 0.03, 0.95]],
        [[0.6, 0.3, 0.1], [0.1, 0.6, 0.3], [0.3, 0.1, 0.6]],
        [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7]],
    ]
)
PLANTED_PRIORS = np.array([0.5, 0.3, 0.2])


def test_recovers_planted_confusion_matrices_and_priors():
    items, workers, labels, truth = simulate(PLANTED, PLANTED_PRIORS, n_items=6000, per_item=4, seed=1)
    model = DawidSkene(answer_noise=0.0).fit(items, workers, labels)
    assert model.converged_
    np.testing.assert_allclose(model.confusion_, PLANTED, atol=0.04)
    np.testing.assert_allclose(model.priors_, PLANTED_PRIORS, atol=0.02)
    expected_skills = np.einsum("j,rjj->r", PLANTED_PRIORS, PLANTED)
    np.testing.assert_allclose(model.skills_, expected_skills, atol=0.03)
    assert (model.predict() == truth).mean() > 0.9
    np.testing.assert_allclose(model.confusion_.sum(axis=2), 1.0)
    np.testing.assert_allclose(model.posteriors_.sum(axis=1), 1.0)


def test_default_answer_noise_keeps_the_estimates_close():
    items, workers, labels, truth = simulate(PLANTED, PLANTED_PRIORS, n_items=6000, per_item=4, seed=1)
    model = DawidSkene().fit(items, workers, labels)
    mixed = 0.95 * PLANTED + 0.05 / 3  # the default models 5% random answers on top
    np.testing.assert_allclose(model.confusion_, mixed, atol=0.05)
    np.testing.assert_allclose(model.priors_, PLANTED_PRIORS, atol=0.02)
    assert (model.predict() == truth).mean() > 0.9


def test_beats_majority_vote_with_an_adversarial_annotator():
    good = [[0.75, 0.25], [0.25, 0.75]]
    adversary = [[0.05, 0.95], [0.95, 0.05]]  # answers the opposite nearly always
    spammer = [[0.1, 0.9], [0.1, 0.9]]  # says 1 whatever the item
    confusions = [good, good, adversary, spammer, good]
    items, workers, labels, truth = simulate(confusions, [0.6, 0.4], n_items=3000, per_item=5, seed=2)
    ds_accuracy = (DawidSkene().fit_predict(items, workers, labels) == truth).mean()
    mv_accuracy = (MajorityVote().fit_predict(items, workers, labels) == truth).mean()
    assert ds_accuracy > mv_accuracy + 0.1
    model = DawidSkene().fit(items, workers, labels)
    assert model.skills_[2] < 0.2 and model.skills_[0] > 0.6  # the adversary is found out


@pytest.mark.parametrize("n_iter", [0, 1, 5])
def test_matches_a_loop_by_loop_reference_with_crowdkit_settings(n_iter):
    items, workers, labels, _ = simulate(PLANTED, PLANTED_PRIORS, n_items=150, per_item=3, seed=3)
    # duplicates and a one-answer annotator, as in real exports
    items = np.concatenate([items, items[:5], [0]])
    workers = np.concatenate([workers, workers[:5], [5]])
    labels = np.concatenate([labels, labels[:5], [2]])
    model = DawidSkene(max_iter=n_iter, tol=0.0, **CROWDKIT_SETTINGS).fit(items, workers, labels)
    expected = reference_dawid_skene(items, workers, labels, 3, n_iter)
    np.testing.assert_allclose(model.posteriors_, expected, atol=1e-9)


def test_items_and_annotators_with_a_single_answer():
    items, workers, labels, _ = simulate(PLANTED, PLANTED_PRIORS, n_items=500, per_item=3, seed=4)
    # item 500: one answer from annotator 2 (reliable, many answers);
    # item 501: one answer from annotator 5, who answered nothing else
    items, workers, labels = np.append(items, [500, 501]), np.append(workers, [2, 5]), np.append(labels, [1, 1])
    model = DawidSkene().fit(items, workers, labels)
    assert model.posteriors_.shape == (502, 3)
    assert np.isfinite(model.posteriors_).all() and np.isfinite(model.confusion_).all()
    assert model.predict()[500] == 1 and model.confidence()[500] > 0.8
    # an annotator seen once is estimated to say 1 whatever the truth: the item keeps the priors
    np.testing.assert_allclose(model.confusion_[5][:, 1], model.confusion_[5][:, 1].max(), atol=0.05)
    np.testing.assert_allclose(model.posteriors_[501], model.priors_, atol=0.03)
    # shrinkage towards the crowd's confusion matrix lets the lone answer count
    shrunk = DawidSkene(shrinkage=1.0).fit(items, workers, labels)
    assert shrunk.predict()[501] == 1
    np.testing.assert_allclose(shrunk.confusion_[5].sum(axis=1), 1.0)


def test_unused_classes_idle_annotators_and_unlabelled_items():
    items, workers, labels, _ = simulate(
        PLANTED[:, :2, :2] / PLANTED[:, :2, :2].sum(2, keepdims=True), [0.6, 0.4], n_items=400, per_item=3, seed=5
    )
    model = DawidSkene().fit(items, workers, labels, n_items=410, n_workers=7, n_classes=4)
    assert model.posteriors_.shape == (410, 4) and model.confusion_.shape == (7, 4, 4)
    np.testing.assert_array_equal(model.priors_[2:], 0.0)  # nobody used classes 2 and 3
    np.testing.assert_array_equal(model.posteriors_[:, 2:], 0.0)
    assert set(model.predict()[:400]) <= {0, 1}
    np.testing.assert_allclose(model.posteriors_[400:], np.tile(model.priors_, (10, 1)), atol=1e-3)
    np.testing.assert_allclose(model.confusion_[5:], 0.25)  # idle annotators: uniform rows
    for cls in (DawidSkene(**CROWDKIT_SETTINGS), MajorityVote()):
        fitted = cls.fit(items, workers, labels, n_items=410, n_workers=7, n_classes=4)
        assert np.isfinite(fitted.posteriors_).all()


def test_ties_are_broken_deterministically():
    # two annotators who disagree everywhere: every item is a perfect tie
    items = np.array([0, 0, 1, 1])
    workers = np.array([0, 1, 0, 1])
    labels = np.array([1, 0, 0, 1])
    ds = DawidSkene().fit(items, workers, labels)
    np.testing.assert_allclose(ds.posteriors_, 0.5)
    assert ds.predict().tolist() == [0, 0]  # lowest class index
    assert MajorityVote(tie_break="lowest").fit_predict(items, workers, labels).tolist() == [0, 0]
    assert MajorityVote().fit_predict(items, workers, labels).tolist() == [0, 0]  # equal skills too


def test_majority_vote_breaks_ties_towards_the_more_reliable_annotators():
    # annotators 0 and 1 agree with the majority on items 0..5; annotator 2 never does
    items = np.array([i for i in range(6) for _ in range(3)] + [6, 6])
    workers = np.array([0, 1, 2] * 6 + [0, 2])
    labels = np.array([1, 1, 0] * 3 + [0, 0, 1] * 3 + [1, 0])
    model = MajorityVote().fit(items, workers, labels)
    np.testing.assert_allclose(model.posteriors_[6], [0.5, 0.5])
    assert model.predict()[6] == 1  # annotator 0's label beats annotator 2's
    assert MajorityVote(tie_break="lowest").fit_predict(items, workers, labels)[6] == 0
    np.testing.assert_allclose(model.skills_, [1.0, 1.0, 0.0])
    assert model.confidence()[6] == pytest.approx(0.5)


def test_majority_vote_posteriors_are_vote_shares():
    items = np.array([0, 0, 0, 1, 1, 2])
    workers = np.array([0, 1, 2, 0, 1, 2])
    labels = np.array([2, 2, 0, 1, 1, 0])
    model = MajorityVote().fit(items, workers, labels, n_items=4, n_classes=3)
    np.testing.assert_allclose(model.predict_proba()[:3], [[1 / 3, 0, 2 / 3], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(model.posteriors_[3], 1 / 3)  # unlabelled item: uniform
    assert model.predict()[:3].tolist() == [2, 1, 0]
    assert model.n_iter_ == 0


def test_duplicated_answers_count_twice():
    items, workers, labels = np.array([0, 0, 0]), np.array([0, 0, 1]), np.array([1, 1, 0])
    assert MajorityVote().fit(items, workers, labels).posteriors_[0].tolist() == pytest.approx([1 / 3, 2 / 3])


def test_gold_labels_clamp_posteriors_and_calibrate_annotators():
    items, workers, labels, truth = simulate(PLANTED, PLANTED_PRIORS, n_items=800, per_item=3, seed=6)
    gold = np.full(800, -1)
    gold[:100] = truth[:100]
    for model in (DawidSkene(), MajorityVote()):
        model.fit(items, workers, labels, true_labels=gold)
        assert (model.predict()[:100] == truth[:100]).all()
        np.testing.assert_allclose(model.posteriors_[np.arange(100), truth[:100]], 1.0)
    with pytest.raises(ValueError, match="true_labels"):
        DawidSkene().fit(items, workers, labels, true_labels=np.full(799, -1))
    with pytest.raises(ValueError, match="true_labels"):
        DawidSkene().fit(items, workers, labels, true_labels=np.full(800, 5))


def test_deterministic_and_independent_of_answer_order():
    items, workers, labels, _ = simulate(PLANTED, PLANTED_PRIORS, n_items=1000, per_item=3, seed=7)
    first = DawidSkene().fit(items, workers, labels)
    again = DawidSkene().fit(items, workers, labels)
    np.testing.assert_array_equal(first.posteriors_, again.posteriors_)
    order = np.random.default_rng(0).permutation(items.size)
    shuffled = DawidSkene().fit(items[order], workers[order], labels[order])
    np.testing.assert_allclose(shuffled.posteriors_, first.posteriors_, atol=1e-10)
    assert first.n_iter_ == shuffled.n_iter_


def test_estimator_api():
    items, workers, labels, _ = simulate(PLANTED, PLANTED_PRIORS, n_items=300, per_item=3, seed=8)
    model = DawidSkene(max_iter=50, tol=1e-6)
    assert model.get_params()["max_iter"] == 50 and "DawidSkene(max_iter=50" in repr(model)
    with pytest.raises(AttributeError, match="not fitted"):
        model.predict()
    assert model.fit(items, workers, labels) is model
    np.testing.assert_array_equal(model.fit_predict(items, workers, labels), model.predict())
    np.testing.assert_array_equal(model.fit_predict_proba(items, workers, labels), model.predict_proba())
    np.testing.assert_array_equal(model.predict(), model.posteriors_.argmax(axis=1))
    np.testing.assert_allclose(model.confidence(), model.posteriors_.max(axis=1))
    assert 0 < model.n_iter_ <= 50 and np.isfinite(model.log_likelihood_) and model.log_likelihood_ < 0
    capped = DawidSkene(max_iter=1).fit(items, workers, labels)
    assert capped.n_iter_ == 1 and not capped.converged_


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        DawidSkene().fit([0, 1], [0, 1], [0])
    with pytest.raises(ValueError, match="n_classes"):
        DawidSkene().fit([0, 1], [0, 1], [0, 2], n_classes=2)
    with pytest.raises(ValueError, match="non-negative"):
        DawidSkene(smoothing=-1).fit([0], [0], [0])
    with pytest.raises(ValueError, match="answer_noise"):
        DawidSkene(answer_noise=1.0).fit([0], [0], [0])
    with pytest.raises(ValueError, match="no classes"):
        MajorityVote().fit([], [], [])
    with pytest.raises(ValueError, match="tie_break"):
        MajorityVote(tie_break="random").fit([0], [0], [0])


def test_no_answers_with_known_counts_gives_priors():
    model = DawidSkene().fit([], [], [], n_items=3, n_workers=2, n_classes=2)
    np.testing.assert_allclose(model.posteriors_, 0.5)
    assert MajorityVote().fit([], [], [], n_items=3, n_classes=2).predict().tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "model",
    [
        DawidSkene(max_iter=7, tol=1e-3, smoothing=0.5, answer_noise=0.1, shrinkage=2.0, prior_smoothing=0.0),
        MajorityVote(tie_break="lowest"),
    ],
)
def test_scikit_learn_clone_and_params(model):
    items, workers, labels, _ = simulate(PLANTED, PLANTED_PRIORS, n_items=100, per_item=3, seed=9)
    fitted = model.fit(items, workers, labels)
    copy = clone(fitted)
    assert type(copy) is type(model) and copy.get_params() == model.get_params()
    assert not hasattr(copy, "posteriors_") and not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError, match="not fitted"):
        copy.predict_proba()
    np.testing.assert_array_equal(copy.fit(items, workers, labels).posteriors_, fitted.posteriors_)
    # get_params / set_params round trip, unknown names refused
    params = model.get_params()
    other = type(model)()
    assert other.set_params(**params) is other and other.get_params() == params
    with pytest.raises(ValueError):
        other.set_params(no_such_parameter=1)


def test_params_are_the_constructor_arguments():
    assert set(DawidSkene().get_params()) == {
        "max_iter", "tol", "smoothing", "answer_noise", "shrinkage", "prior_smoothing"
    }  # fmt: skip
    assert MajorityVote().get_params() == {"tie_break": "skill"}
    assert repr(MajorityVote(tie_break="lowest")) == "MajorityVote(tie_break='lowest')"
    assert repr(DawidSkene()) == "DawidSkene()"


@pytest.mark.parametrize("cls", [DawidSkene, MajorityVote])
def test_classes_after_fit(cls):
    model = cls().fit([0, 1, 1], [0, 0, 1], [0, 1, 1], n_classes=4)
    np.testing.assert_array_equal(model.classes_, np.arange(4))
    assert model.n_classes_ == 4 and model.predict_proba().shape == (2, 4)
    assert isinstance(model.posteriors_, np.ndarray) and isinstance(model.predict(), np.ndarray)
