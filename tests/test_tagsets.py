"""Tag-set (multi-label) agreement and aggregation, against brute-force references and hand-worked values."""

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import cohen_kappa_score

from annotation import agreement, tagsets
from annotation.aggregation_io import read_answers_csv, read_truth_csv
from annotation.dawid_skene import HierarchicalDawidSkene
from annotation.tagsets import (
    BinaryRelevanceDawidSkene,
    disputed_tags,
    jaccard_distance,
    krippendorff_alpha_sets,
    masi_distance,
    pairwise_set_agreement,
    per_label_kappa,
    tag_confidence,
    tag_vote_shares,
)

DISTANCE_OF = {"masi": masi_distance, "jaccard": jaccard_distance, "nominal": lambda a, b: float(set(a) != set(b))}


def random_answers(seed, *, n=240, n_items=50, n_workers=7, n_labels=5, density=0.3, single=False):
    """Long-format tag sets with duplicates (an annotator answering an item twice), single-answer
    items and empty sets."""
    rng = np.random.default_rng(seed)
    items = rng.integers(0, n_items, n)
    workers = rng.integers(0, n_workers, n)
    if single:
        Y = np.eye(n_labels, dtype=np.int64)[rng.integers(0, n_labels, n)]
    else:
        Y = (rng.random((n, n_labels)) < density).astype(np.int64)
        # half the answers copy another answer on the same item, so there is agreement to find
        copy = rng.random(n) < 0.5
        for a in np.flatnonzero(copy):
            same = np.flatnonzero(items == items[a])
            Y[a] = Y[same[0]]
    return items, workers, Y


def last_answers(items, workers, Y):
    """{(item, worker): frozenset of tags}, the last answer of each pair (the documented rule)."""
    kept = {}
    for i, w, row in zip(items.tolist(), workers.tolist(), np.asarray(Y), strict=True):
        kept[(i, w)] = frozenset(np.flatnonzero(row).tolist())
    return kept


def brute_alpha(items, workers, Y, distance):
    """Krippendorff's alpha by definition: every ordered pair within items for D_o, every pair of
    pairable values for D_e."""
    d = DISTANCE_OF[distance]
    by_item = {}
    for (i, _), tags in last_answers(items, workers, Y).items():
        by_item.setdefault(i, []).append(tags)
    units = [values for values in by_item.values() if len(values) >= 2]
    values = [v for unit in units for v in unit]
    n = len(values)
    observed = sum(
        d(unit[a], unit[b]) / (len(unit) - 1)
        for unit in units
        for a in range(len(unit))
        for b in range(len(unit))
        if a != b
    )
    expected = sum(d(values[a], values[b]) for a in range(n) for b in range(n) if a != b)
    return 1.0 - (observed / n) / (expected / (n * (n - 1)))


def brute_pair_agreement(items, workers, Y, distance, n_workers, min_shared):
    d = DISTANCE_OF[distance]
    answers = last_answers(items, workers, Y)
    out = np.full((n_workers, n_workers), np.nan)
    for a, b in itertools.product(range(n_workers), repeat=2):
        shared = sorted(i for (i, w) in answers if w == a and (i, b) in answers)
        if len(shared) < min_shared:
            continue
        sa, sb = [answers[(i, a)] for i in shared], [answers[(i, b)] for i in shared]
        observed = np.mean([d(x, y) for x, y in zip(sa, sb, strict=True)])
        expected = np.mean([d(x, y) for x in sa for y in sb])
        if expected > 1e-12:
            out[a, b] = 1.0 - observed / expected
    return out


# -- set distances --------------------------------------------------------------------------------


def test_masi_and_jaccard_by_hand():
    # NLTK's examples (nltk.metrics.distance): jaccard {1,2} vs {1,2,3,4} = 0.5; masi 0.665 with
    # NLTK's rounded M = 0.67, here exactly 1 - (2/4)(2/3)
    assert jaccard_distance({1, 2}, {1, 2, 3, 4}) == pytest.approx(0.5)
    assert masi_distance({1, 2}, {1, 2, 3, 4}) == pytest.approx(2.0 / 3.0)
    assert masi_distance({1, 2}, {1, 2, 3, 4}) == pytest.approx(0.665, abs=0.002)
    # Passonneau (2006): identical, subset, overlap, disjoint
    assert masi_distance({"a", "b"}, {"b", "a"}) == 0.0
    assert masi_distance({"a"}, {"a", "b"}) == pytest.approx(1 - 0.5 * 2 / 3)
    assert masi_distance({"a", "b"}, {"b", "c"}) == pytest.approx(1 - (1 / 3) * (1 / 3))
    assert masi_distance({"a"}, {"b"}) == 1.0
    assert jaccard_distance({"a", "b"}, {"b", "c"}) == pytest.approx(2 / 3)
    # empty sets: two are identical; one against a non-empty set is disjoint
    assert masi_distance(set(), set()) == 0.0 and jaccard_distance(set(), set()) == 0.0
    assert masi_distance(set(), {1}) == 1.0 and jaccard_distance(set(), {1}) == 1.0


# -- Krippendorff's alpha -------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["masi", "jaccard", "nominal"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_matches_the_brute_force_definition(distance, seed):
    items, workers, Y = random_answers(seed)
    assert np.any(Y.sum(axis=1) == 0)  # empty sets are in the data
    expected = brute_alpha(items, workers, Y, distance)
    assert krippendorff_alpha_sets(items, workers, Y, distance=distance) == pytest.approx(expected, abs=1e-12)
    # sparse input, the same
    assert krippendorff_alpha_sets(items, workers, sp.csr_matrix(Y), distance=distance) == pytest.approx(
        expected, abs=1e-12
    )


def test_alpha_in_small_blocks_and_with_many_labels(monkeypatch):
    # the expected disagreement summed over several row blocks of the similarity matrix
    items, workers, Y = random_answers(11, n=300, n_labels=6)
    whole = krippendorff_alpha_sets(items, workers, Y)
    pairs = pairwise_set_agreement(items, workers, Y, min_shared=3)
    monkeypatch.setattr(tagsets, "_BLOCK_ENTRIES", 50)
    assert krippendorff_alpha_sets(items, workers, Y) == pytest.approx(whole, abs=1e-12)
    np.testing.assert_allclose(pairwise_set_agreement(items, workers, Y, min_shared=3), pairs, atol=1e-12)
    assert whole == pytest.approx(brute_alpha(items, workers, Y, "masi"), abs=1e-12)
    # more than 64 labels: tag sets told apart by byte strings, not one integer
    items, workers, Y = random_answers(12, n=200, n_labels=70, density=0.05)
    assert krippendorff_alpha_sets(items, workers, Y) == pytest.approx(
        brute_alpha(items, workers, Y, "masi"), abs=1e-12
    )


@pytest.mark.parametrize("distance", ["masi", "jaccard", "nominal"])
def test_alpha_of_single_tags_is_nominal_alpha(distance):
    items, workers, Y = random_answers(3, single=True, n_labels=4)
    labels = Y.argmax(axis=1)
    expected = agreement.krippendorff_alpha(items, workers, labels)
    assert krippendorff_alpha_sets(items, workers, Y, distance=distance) == pytest.approx(expected, abs=1e-12)


def test_alpha_edge_cases():
    items, workers = np.array([0, 1, 2]), np.array([0, 1, 2])
    assert np.isnan(krippendorff_alpha_sets(items, workers, np.eye(3, dtype=int)))  # no item with two answers
    same = np.array([[1, 0], [1, 0], [1, 0], [1, 0]])
    assert np.isnan(krippendorff_alpha_sets([0, 0, 1, 1], [0, 1, 0, 1], same))  # one set throughout: D_e = 0
    perfect = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 1]])
    assert krippendorff_alpha_sets([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], perfect) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        krippendorff_alpha_sets(items, workers, np.eye(3, dtype=int), distance="hamming")


def test_alpha_of_100k_answers_takes_seconds():
    rng = np.random.default_rng(4)
    n = 100_000
    items = np.repeat(np.arange(n // 3 + 1), 3)[:n]
    workers = rng.integers(0, 60, n)
    truth = rng.random((n // 3 + 1, 28)) < np.geomspace(0.3, 0.002, 28)
    Y = truth[items] ^ (rng.random((n, 28)) < 0.02)
    start = time.process_time()
    alpha = krippendorff_alpha_sets(items, workers, Y)
    assert time.process_time() - start < 20.0
    assert 0.0 < alpha < 1.0


# -- pairwise agreement ---------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["masi", "jaccard"])
def test_pairwise_set_agreement_matches_brute_force(distance):
    items, workers, Y = random_answers(5, n=400, n_items=60, n_workers=5)
    got, overlap = pairwise_set_agreement(items, workers, Y, distance=distance, min_shared=4, return_overlap=True)
    expected = brute_pair_agreement(items, workers, Y, distance, 5, 4)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], atol=1e-12)
    np.testing.assert_array_equal(overlap, overlap.T)


def test_pairwise_set_agreement_of_single_tags_is_cohens_kappa():
    items, workers, Y = random_answers(6, n=500, n_items=80, n_workers=6, single=True, n_labels=4)
    labels = Y.argmax(axis=1)
    for distance in ("masi", "nominal"):
        got = pairwise_set_agreement(items, workers, Y, distance=distance, min_shared=5)
        expected = agreement.pairwise_kappa(items, workers, labels, min_overlap=5)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], atol=1e-12)


# -- per-label kappa ------------------------------------------------------------------------------


def test_per_label_kappa_is_the_overlap_weighted_mean_of_cohens_kappa():
    items, workers, Y = random_answers(7, n=600, n_items=90, n_workers=6, n_labels=4)
    Y[:, 3] = 0  # a tag nobody chose
    got = per_label_kappa(items, workers, Y, min_overlap=8)
    answers = last_answers(items, workers, Y)
    for tag in range(3):
        kappas, weights = [], []
        for a, b in itertools.combinations(range(6), 2):
            shared = sorted(i for (i, w) in answers if w == a and (i, b) in answers)
            if len(shared) < 8:
                continue
            ya = [int(tag in answers[(i, a)]) for i in shared]
            yb = [int(tag in answers[(i, b)]) for i in shared]
            kappa = cohen_kappa_score(ya, yb) if len(set(ya) | set(yb)) > 1 else np.nan
            if np.isfinite(kappa):
                kappas.append(kappa)
                weights.append(len(shared))
        assert got[tag] == pytest.approx(np.average(kappas, weights=weights), abs=1e-12)
    assert np.isnan(got[3])


def test_per_label_kappa_matches_the_project_kappa_of_each_column():
    items, workers, Y = random_answers(8, n=500, n_items=70, n_workers=5, n_labels=3)
    got = per_label_kappa(items, workers, Y)
    for tag in range(3):
        matrix, overlap = agreement.pairwise_kappa(items, workers, Y[:, tag], n_classes=2, return_overlap=True)
        use = np.triu(np.ones_like(overlap, dtype=bool), 1) & (overlap >= agreement.MIN_OVERLAP) & np.isfinite(matrix)
        assert got[tag] == pytest.approx(np.average(matrix[use], weights=overlap[use]), abs=1e-12)


# -- routing helpers ------------------------------------------------------------------------------


def test_tag_confidence_and_disputed_tags():
    posteriors = np.array([[0.99, 0.02, 0.5], [0.97, 0.01, 0.04], [0.3, 0.8, 0.999]])
    np.testing.assert_allclose(tag_confidence(posteriors), [0.5, 0.96, 0.7])
    disputed = disputed_tags(posteriors, 0.95)
    assert [d.tolist() for d in disputed] == [[2], [], [0, 1]]
    assert tag_confidence(np.zeros((2, 0))).tolist() == [1.0, 1.0]


def test_tag_vote_shares():
    shares = tag_vote_shares([0, 0, 0, 2], np.array([[1, 0], [1, 1], [0, 0], [0, 1]]), n_items=3)
    np.testing.assert_allclose(shares, [[2 / 3, 1 / 3], [0.5, 0.5], [0.0, 1.0]])


# -- aggregation ----------------------------------------------------------------------------------


def simulate_tags(seed, *, n_items=1500, n_labels=8, miss=(0.05, 0.35, 0.35), add=(0.01, 0.12, 0.12), per_item=3):
    """Each item answered by ``per_item`` of the annotators; annotator r drops each true tag with
    probability miss[r] and adds each absent tag with probability add[r] / n_labels * 3."""
    rng = np.random.default_rng(seed)
    prevalence = np.geomspace(0.35, 0.03, n_labels)
    truth = (rng.random((n_items, n_labels)) < prevalence).astype(np.int64)
    n_workers = len(miss)
    items = np.repeat(np.arange(n_items), per_item)
    workers = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :per_item].ravel()
    z = truth[items]
    u = rng.random(z.shape)
    keep = u >= np.asarray(miss)[workers, None]
    added = u < np.asarray(add)[workers, None] * 3 / n_labels
    return items, workers, np.where(z == 1, keep, added).astype(np.int64), truth


def scores(predicted, truth):
    return (predicted == truth).all(axis=1).mean(), (predicted != truth).mean()


@pytest.mark.parametrize("seed", [0, 1])
def test_beats_majority_vote_with_one_good_and_two_noisy_annotators(seed):
    items, workers, Y, truth = simulate_tags(seed)
    model = BinaryRelevanceDawidSkene().fit(items, workers, Y)
    subset, hamming = scores(model.predict(), truth)
    mv_subset, mv_hamming = scores((tag_vote_shares(items, Y) > 0.5).astype(int), truth)
    assert subset > mv_subset + 0.05 and hamming < 0.8 * mv_hamming
    # the skills it found: the good annotator's sensitivity and specificity above the others'
    assert model.sensitivity_[0] > 0.9 and model.sensitivity_[1:].max() < 0.75
    assert model.specificity_[0] > model.specificity_[1:].max()
    np.testing.assert_allclose(model.sensitivity_, 1 - np.array([0.05, 0.35, 0.35]), atol=0.05)
    np.testing.assert_allclose(model.prevalence_, truth.mean(axis=0), atol=0.02)
    p = model.predict_proba()
    assert p.shape == truth.shape and np.all((p >= 0) & (p <= 1))
    np.testing.assert_array_equal(model.predict(), (p > 0.5).astype(np.int8))
    assert model.model_ == "tag-conditional"


@pytest.mark.parametrize("seed", [0, 1])
def test_gold_clamps_and_teaches(seed):
    # two annotators per item, one good (3 % of cells flipped) and one poor (25 %): every
    # disagreement is a 1-1 tie that the answers alone cannot settle; 100 gold items tell who is right
    rng = np.random.default_rng(seed)
    n_items, L = 1000, 6
    truth = (rng.random((n_items, L)) < 0.3).astype(np.int64)
    items, workers = np.repeat(np.arange(n_items), 2), np.tile([0, 1], n_items)
    good, poor = (truth ^ (rng.random((n_items, L)) < flip) for flip in (0.03, 0.25))
    Y = np.stack([good, poor], axis=1).reshape(-1, L)
    gold = np.full((n_items, L), -1)
    gold[:100] = truth[:100]
    plain = BinaryRelevanceDawidSkene().fit(items, workers, Y)
    taught = BinaryRelevanceDawidSkene().fit(items, workers, Y, true_Y=gold)
    np.testing.assert_array_equal(taught.posteriors_[:100], truth[:100])  # clamped
    rest = slice(100, None)
    taught_error, plain_error = (
        scores(taught.predict()[rest], truth[rest])[1],
        scores(plain.predict()[rest], truth[rest])[1],
    )
    assert taught_error < 0.04 and taught_error < 0.5 * plain_error  # these seeds: without gold, the poor one wins
    assert taught.sensitivity_[0] > taught.sensitivity_[1] and taught.specificity_[0] > taught.specificity_[1]
    # a partly known row clamps only its known cells
    partial = np.full((n_items, L), -1)
    partial[5, 2] = 1
    fit = BinaryRelevanceDawidSkene().fit(items, workers, Y, true_Y=partial)
    assert fit.posteriors_[5, 2] == 1.0 and 0.0 < fit.posteriors_[5, 0] < 1.0
    with pytest.raises(ValueError):
        BinaryRelevanceDawidSkene().fit(items, workers, Y, true_Y=np.zeros((n_items, L + 1), dtype=int))


def test_empty_sets_and_a_tag_nobody_chose():
    items, workers, Y, truth = simulate_tags(4, n_items=600)
    Y = np.hstack([Y, np.zeros((Y.shape[0], 1), dtype=np.int64)])  # tag 8: never chosen
    assert (Y.sum(axis=1) == 0).mean() > 0.2  # many empty answers
    model = BinaryRelevanceDawidSkene().fit(items, workers, Y, n_items=602, n_labels=10)  # two unanswered items, tag 9
    p = model.predict_proba()
    assert p.shape == (602, 10) and np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    assert p[:, 8:].max() < 0.01 and model.prevalence_[8:].max() < 0.01
    assert not model.predict()[:, 8:].any()
    np.testing.assert_allclose(p[600], p[601])  # unanswered items get the prevalences
    empty_truth = truth.sum(axis=1) == 0
    assert (model.predict()[:600][empty_truth, :8] == 0).mean() > 0.97
    kappa = per_label_kappa(items, workers, Y)
    assert np.isnan(kappa[8]) and np.all(np.isfinite(kappa[:8]))
    assert np.isfinite(krippendorff_alpha_sets(items, workers, Y))


def test_item_posterior_recomputes_the_fitted_posteriors():
    items, workers, Y, _ = simulate_tags(5, n_items=400)
    model = BinaryRelevanceDawidSkene().fit(items, workers, Y)
    for item in (0, 17, 399):
        rows = items == item
        np.testing.assert_allclose(model.item_posterior(workers[rows], Y[rows]), model.posteriors_[item], atol=1e-12)


def test_one_label_is_about_as_accurate_as_hierarchical_ds():
    rng = np.random.default_rng(9)
    n_items, n_workers = 1500, 12
    truth = (rng.random(n_items) < 0.3).astype(int)
    sens, spec = rng.uniform(0.55, 0.95, n_workers), rng.uniform(0.6, 0.98, n_workers)
    items = np.repeat(np.arange(n_items), 3)
    workers = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :3].ravel()
    u = rng.random(items.size)
    labels = np.where(truth[items] == 1, u < sens[workers], u >= spec[workers]).astype(int)
    ours = BinaryRelevanceDawidSkene().fit(items, workers, labels[:, None]).predict()[:, 0]
    theirs = HierarchicalDawidSkene().fit(items, workers, labels, n_classes=2).predict()
    assert abs((ours == truth).mean() - (theirs == truth).mean()) < 0.01


def test_estimator_api_and_input_checks():
    items, workers, Y, _ = simulate_tags(6, n_items=100)
    model = BinaryRelevanceDawidSkene(max_iter=20)
    assert clone(model).get_params()["max_iter"] == 20
    with pytest.raises(NotFittedError):
        model.predict()
    sparse = BinaryRelevanceDawidSkene().fit(items, workers, sp.csr_matrix(Y)).posteriors_
    np.testing.assert_allclose(sparse, BinaryRelevanceDawidSkene().fit(items, workers, Y).posteriors_)
    with pytest.raises(ValueError):
        BinaryRelevanceDawidSkene().fit(items, workers, Y * 2)
    with pytest.raises(ValueError):
        BinaryRelevanceDawidSkene().fit(items[:-1], workers[:-1], Y)
    with pytest.raises(ValueError):
        BinaryRelevanceDawidSkene().fit(items, workers, Y, n_labels=2)


CROWD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "crowd"


@pytest.mark.skipif(not (CROWD / "d_sentiment" / "answer.csv").exists(), reason="shared crowd datasets not present")
@pytest.mark.parametrize("name", ["d_sentiment", "ZenCrowd_all"])
def test_binary_crowd_set_as_one_tag(name):
    encoded, _ = read_answers_csv(CROWD / name / "answer.csv", item_col="0", worker_col="1", label_col="2")
    truth = read_truth_csv(CROWD / name / "truth.csv")
    at = {item: i for i, item in enumerate(encoded.item_names.tolist())}
    gold_items = np.array([at[item] for item in truth if item in at])
    gold = np.array([int(label) for item, label in truth.items() if item in at])
    labels = encoded.label_names.astype(int)[encoded.labels]
    ours = BinaryRelevanceDawidSkene().fit(encoded.items, encoded.workers, labels[:, None]).predict()[gold_items, 0]
    theirs = HierarchicalDawidSkene().fit(encoded.items, encoded.workers, labels, n_classes=2).predict()[gold_items]
    assert (ours == gold).mean() >= (theirs == gold).mean() - 0.01
