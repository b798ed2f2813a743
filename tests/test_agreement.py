"""Agreement measures against worked examples, published values and the reference packages."""

import subprocess
import sys

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from annotation import agreement


def random_annotations(seed, *, n_items=120, n_workers=6, n_classes=4, max_per_item=5, accuracy=0.7):
    """Long-format answers: each item labelled by 1..max_per_item distinct annotators."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    per_item = rng.integers(1, max_per_item + 1, n_items)
    items = np.repeat(np.arange(n_items), per_item)
    workers = np.concatenate([rng.permutation(n_workers)[:k] for k in per_item])
    noise = rng.integers(0, n_classes, items.size)
    labels = np.where(rng.random(items.size) < accuracy, truth[items], noise)
    return items, workers, labels


def reliability_matrix(items, workers, labels, n_items, n_workers):
    """annotator x item matrix with nan where missing (the krippendorff package's input)."""
    matrix = np.full((n_workers, n_items), np.nan)
    matrix[workers, items] = labels
    return matrix


def long_from_table(table):
    """Long-format answers from an items x classes count table (rater ids 0..r_i - 1 per item)."""
    table = np.asarray(table)
    items, labels = np.nonzero(table)
    counts = table[items, labels]
    items, labels = np.repeat(items, counts), np.repeat(labels, counts)
    workers = np.concatenate([np.arange(n) for n in table.sum(axis=1)])
    return items, workers, labels


# -- Cohen's kappa ----------------------------------------------------------------------------


def test_cohen_kappa_worked_example():
    # n11=40, n10=10, n01=5, n00=45: p_o = 0.85, p_e = 0.5, kappa = 0.70
    a = np.array([1] * 40 + [1] * 10 + [0] * 5 + [0] * 45)
    b = np.array([1] * 40 + [0] * 10 + [1] * 5 + [0] * 45)
    assert agreement.cohen_kappa(a, b) == pytest.approx(0.70)
    assert cohen_kappa_score(a, b) == pytest.approx(0.70)


def test_cohen_kappa_pair_uses_only_shared_items():
    a = np.array([1] * 40 + [1] * 10 + [0] * 5 + [0] * 45)
    b = np.array([1] * 40 + [0] * 10 + [1] * 5 + [0] * 45)
    n = a.size
    # annotator 0 also labelled 30 items annotator 1 never saw; those must not count
    items = np.concatenate([np.arange(n), np.arange(n), np.arange(n, n + 30)])
    workers = np.concatenate([np.zeros(n), np.ones(n), np.zeros(30)]).astype(int)
    labels = np.concatenate([a, b, np.ones(30, dtype=int)])
    assert agreement.cohen_kappa_pair(items, workers, labels, 0, 1) == pytest.approx(0.70)
    assert agreement.cohen_kappa_pair(items, workers, labels, 1, 0) == pytest.approx(0.70)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_classes", [2, 3, 6])
def test_cohen_kappa_matches_scikit_learn(seed, n_classes):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_classes, 200)
    b = np.where(rng.random(200) < 0.6, a, rng.integers(0, n_classes, 200))
    assert agreement.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_cohen_kappa_undefined_cases_are_nan():
    assert np.isnan(agreement.cohen_kappa([], []))
    assert np.isnan(agreement.cohen_kappa([2, 2, 2], [2, 2, 2]))  # p_e = 1
    assert agreement.cohen_kappa([0, 1], [0, 1]) == pytest.approx(1.0)
    assert agreement.cohen_kappa([0, 1], [1, 0]) == pytest.approx(-1.0)
    # no shared item
    assert np.isnan(agreement.cohen_kappa_pair([0, 1], [0, 1], [0, 1], 0, 1))


def test_cohen_kappa_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        agreement.cohen_kappa([0, 1], [0])
    with pytest.raises(ValueError, match="non-negative"):
        agreement.cohen_kappa([0, -1], [0, 1])
    with pytest.raises(ValueError, match="integer"):
        agreement.cohen_kappa([0.5, 1], [0, 1])
    with pytest.raises(ValueError, match="n_classes"):
        agreement.cohen_kappa([0, 3], [0, 1], n_classes=2)


# -- pairwise matrix --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_pairwise_kappa_matches_scikit_learn_pair_by_pair(seed):
    items, workers, labels = random_annotations(seed)
    n_workers = 6
    kappa, overlap = agreement.pairwise_kappa(items, workers, labels, min_overlap=1, return_overlap=True)
    matrix = reliability_matrix(items, workers, labels, 120, n_workers)
    for a in range(n_workers):
        for b in range(n_workers):
            both = ~np.isnan(matrix[a]) & ~np.isnan(matrix[b])
            assert overlap[a, b] == both.sum()
            expected = cohen_kappa_score(matrix[a, both], matrix[b, both])
            assert kappa[a, b] == pytest.approx(expected), (a, b)
    np.testing.assert_allclose(kappa, kappa.T)
    np.testing.assert_allclose(np.diag(kappa), 1.0)


def test_pairwise_kappa_nan_below_min_overlap_and_for_idle_annotators():
    # annotator 0: items 0..14; annotator 1: items 0..11; annotator 2: items 12..14 and 0..2;
    # annotator 3: nothing
    answered = {0: list(range(15)), 1: list(range(12)), 2: [12, 13, 14, 0, 1, 2]}
    items = np.concatenate([answered[w] for w in answered])
    workers = np.concatenate([[w] * len(answered[w]) for w in answered])
    labels = np.concatenate([np.arange(len(answered[w])) % 3 for w in answered])
    kappa, overlap = agreement.pairwise_kappa(items, workers, labels, n_workers=4, return_overlap=True)
    assert kappa.shape == (4, 4)
    assert (overlap[0, 1], overlap[0, 2], overlap[1, 2]) == (12, 6, 3)
    assert not np.isnan(kappa[0, 1])
    assert np.isnan(kappa[0, 2]) and np.isnan(kappa[1, 2])  # fewer than MIN_OVERLAP = 10 shared items
    assert np.isnan(kappa[3]).all() and np.isnan(kappa[:, 3]).all()
    relaxed = agreement.pairwise_kappa(items, workers, labels, n_workers=4, min_overlap=3)
    assert not np.isnan(relaxed[1, 2]) and not np.isnan(relaxed[0, 2])


def test_duplicates_keep_the_last_answer():
    # annotator 0 first said 1 on item 0, then corrected to 0
    items = np.array([0, 0, 0, 1, 1, 2, 2])
    workers = np.array([0, 1, 0, 0, 1, 0, 1])
    labels = np.array([1, 0, 0, 1, 1, 0, 1])
    kept = agreement.deduplicate(items, workers, labels)
    assert kept.items.size == 6
    assert kept.labels[(kept.items == 0) & (kept.workers == 0)].tolist() == [0]
    expected = cohen_kappa_score([0, 1, 0], [0, 1, 1])
    assert agreement.cohen_kappa_pair(items, workers, labels, 0, 1) == pytest.approx(expected)
    assert agreement.pairwise_kappa(items, workers, labels, min_overlap=1)[0, 1] == pytest.approx(expected)


# -- Fleiss' kappa ----------------------------------------------------------------------------

# Wikipedia's worked example ("Fleiss' kappa"): 10 subjects, 14 raters, 5 categories, kappa = 0.210.
WIKIPEDIA_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_published_example():
    value = agreement.fleiss_kappa(*long_from_table(WIKIPEDIA_TABLE))
    assert value == pytest.approx(0.210, abs=5e-4)
    assert value == pytest.approx(statsmodels_fleiss(np.array(WIKIPEDIA_TABLE)))


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_matches_statsmodels_with_fixed_raters(seed):
    rng = np.random.default_rng(seed)
    table = rng.multinomial(6, rng.dirichlet(np.ones(4) * 0.7), size=50)
    assert agreement.fleiss_kappa(*long_from_table(table)) == pytest.approx(statsmodels_fleiss(table))


def gwet_fleiss_reference(table):
    """Item-by-item transcription of irrCAC::fleiss.kappa.raw (varying numbers of raters)."""
    table = [row for row in np.asarray(table, dtype=float) if row.sum() >= 1]
    n_classes = len(table[0])
    agreements = [(row * (row - 1)).sum() / (row.sum() * (row.sum() - 1)) for row in table if row.sum() >= 2]
    p_a = sum(agreements) / len(agreements)
    shares = [sum(row[c] / row.sum() for row in table) / len(table) for c in range(n_classes)]
    p_e = sum(share * share for share in shares)
    return (p_a - p_e) / (1 - p_e)


def test_fleiss_kappa_with_varying_raters():
    rng = np.random.default_rng(7)
    raters = rng.integers(1, 7, 80)  # some items have a single rater
    table = np.array([rng.multinomial(r, [0.5, 0.3, 0.2]) for r in raters])
    assert agreement.fleiss_kappa(*long_from_table(table)) == pytest.approx(gwet_fleiss_reference(table))


def test_fleiss_kappa_undefined_cases():
    assert np.isnan(agreement.fleiss_kappa([0, 1], [0, 0], [1, 1]))  # no item with two raters
    assert np.isnan(agreement.fleiss_kappa([0, 0, 1, 1], [0, 1, 0, 1], [2, 2, 2, 2]))  # one label: P_e = 1


# -- Krippendorff's alpha ---------------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: 4 observers,
# 12 units, values 1..5 with missing data; nominal alpha = 0.743.
KRIPPENDORFF_EXAMPLE = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def test_krippendorff_alpha_published_example():
    matrix = np.array([[np.nan if v is None else v for v in row] for row in KRIPPENDORFF_EXAMPLE])
    workers, items = np.nonzero(~np.isnan(matrix))
    labels = matrix[workers, items].astype(int) - 1
    value = agreement.krippendorff_alpha(items, workers, labels)
    assert value == pytest.approx(0.743, abs=5e-4)
    assert value == pytest.approx(krippendorff.alpha(matrix, level_of_measurement="nominal"))


@pytest.mark.parametrize("seed", range(5))
def test_krippendorff_alpha_matches_the_package_with_missing_data(seed):
    items, workers, labels = random_annotations(seed, n_items=90, n_workers=7, n_classes=3)
    matrix = reliability_matrix(items, workers, labels, 90, 7)
    expected = krippendorff.alpha(matrix, level_of_measurement="nominal")
    assert agreement.krippendorff_alpha(items, workers, labels) == pytest.approx(expected)


def test_krippendorff_alpha_undefined_cases():
    assert np.isnan(agreement.krippendorff_alpha([0, 1], [0, 0], [0, 1]))  # nothing pairable
    assert np.isnan(agreement.krippendorff_alpha([0, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1]))  # one value
    assert agreement.krippendorff_alpha([0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(1.0)


def test_unused_classes_and_unlabelled_items_change_nothing():
    items, workers, labels = random_annotations(3, n_classes=3)
    base = (
        agreement.fleiss_kappa(items, workers, labels),
        agreement.krippendorff_alpha(items, workers, labels),
        agreement.pairwise_kappa(items, workers, labels)[0, 1],
    )
    padded = (
        agreement.fleiss_kappa(items, workers, labels, n_items=500, n_classes=7),
        agreement.krippendorff_alpha(items, workers, labels, n_items=500, n_classes=7),
        agreement.pairwise_kappa(items, workers, labels, n_items=500, n_classes=7)[0, 1],
    )
    np.testing.assert_allclose(base, padded)


def test_numerics_do_not_import_django():
    code = (
        "import sys; import annotation.agreement, annotation.dawid_skene, annotation.aggregation_io; "
        "sys.exit(any(name == 'django' or name.startswith('django.') for name in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
