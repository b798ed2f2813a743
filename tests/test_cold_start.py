"""The typical-and-diverse cold start (acquisition.coldstart): it covers dense clusters where k-center
picks outliers, respects what is already labelled, follows a class prior, is seeded, and never builds a
pool-sized square matrix."""

import numpy as np
import pytest

from acquisition import strategies as S
from acquisition.coldstart import TypicalClusters, typical_diverse, typicality
from acquisition.zeroshot import ZeroShotPrior

DIM = 16


def centres(n):
    """Unit vectors at distance 1 from each other (cosine 1/2), like topics of one sentence-embedding space."""
    c = np.eye(DIM)[1 : n + 1] + np.eye(DIM)[0]
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def blobs(sizes, *, spread=0.05, seed=0, outliers=0):
    """Unit-norm points around ``centres`` (one cluster per size), plus outliers in random directions
    (about 1.4 away from every cluster: what k-center reaches first)."""
    rng = np.random.default_rng(seed)
    c = centres(len(sizes))
    parts = [c[i] + rng.normal(scale=spread, size=(size, DIM)) for i, size in enumerate(sizes)]
    which = np.concatenate([np.full(size, i) for i, size in enumerate(sizes)])
    if outliers:
        parts.append(rng.normal(size=(outliers, DIM)))
        which = np.concatenate([which, np.full(outliers, -1)])
    X = np.concatenate(parts)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), which


def test_dense_clusters_are_covered_where_kcenter_takes_outliers():
    X, which = blobs([300] * 6, outliers=30)
    kcenter = S.cold_start(X, 6, seed=0, method="kcenter")
    picks = typical_diverse(X, 6, seed=0)
    assert (which[kcenter] == -1).sum() >= 4  # k-center: outliers first
    assert sorted(which[picks].tolist()) == [0, 1, 2, 3, 4, 5]  # one typical point of every dense cluster
    # the picks are the dense centres: each is closer to its centre than most of its cluster
    for p in picks:
        members = X[which == which[p]]
        centre = members.mean(0)
        assert np.linalg.norm(X[p] - centre) <= np.quantile(np.linalg.norm(members - centre, axis=1), 0.25)


def test_default_cold_start_is_the_typical_one_and_kcenter_stays_available():
    X, which = blobs([100] * 5, outliers=30)
    assert S.cold_start(X, 5, seed=3).tolist() == typical_diverse(X, 5, seed=3).tolist()
    assert S.cold_start(X, 5, seed=3, method="typiclust").tolist() == typical_diverse(X, 5, seed=3).tolist()
    assert len(set(S.cold_start(X, 5, seed=3, method="kcenter").tolist())) == 5
    with pytest.raises(ValueError, match="method"):
        S.cold_start(X, 5, method="nope")


def test_deterministic_under_a_seed_and_chunking():
    X, _ = blobs([120, 80, 60, 40], spread=0.2, seed=4)
    first = typical_diverse(X, 10, seed=11)
    assert first.dtype == np.int64 and len(set(first.tolist())) == 10
    assert typical_diverse(X, 10, seed=11).tolist() == first.tolist()
    assert typical_diverse(X, 10, seed=11, chunk_size=37).tolist() == first.tolist()


def test_largest_clusters_first_and_labelled_clusters_skipped():
    X, which = blobs([300, 200, 100, 50])
    assert which[typical_diverse(X, 4, seed=0)].tolist() == [0, 1, 2, 3]
    # a labelled point in each of the two largest clusters: the next batch goes to the other two
    labelled = np.stack([X[which == 0][0], X[which == 1][0]])
    assert sorted(which[typical_diverse(X, 2, labelled=labelled, seed=0)].tolist()) == [2, 3]


def test_more_picks_than_clusters_and_duplicates():
    X = np.zeros((30, 4), np.float32)
    X[:3] = np.eye(4, dtype=np.float32)[:3]
    picks = typical_diverse(X, 8, seed=0)
    assert len(set(picks.tolist())) == 8
    # a cluster picked from more often than its typicality sample holds: a new sample of the rest
    assert len(set(typical_diverse(X, 12, seed=0, typicality_sample=3).tolist())) == 12
    assert len(typical_diverse(X[:2], 5, seed=0)) == 2  # never more than the pool
    assert len(typical_diverse(X, 0)) == 0


def test_typicality_is_inverse_mean_knn_distance():
    X = np.array([[0.0], [1.0], [2.0], [10.0]], np.float32)
    t = typicality(X, n_neighbors=2)
    # point 1: neighbours 0 and 2 at distance 1 -> 1; point 3: 8 and 9 -> 1/8.5
    assert t[1] == pytest.approx(1.0) and t[3] == pytest.approx(1 / 8.5)
    assert t[1] == t.max()
    assert typicality(X[:1]).tolist() == [1.0]


def test_scales_without_a_pool_sized_square_matrix():
    # 300,000 rows: an n × n float32 matrix would need 360 GB, so building one fails the test.
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 8)) * 5
    X = (centres[rng.integers(0, 30, 300_000)] + rng.normal(size=(300_000, 8))).astype(np.float32)
    picks = typical_diverse(X, 30, seed=0, sample_size=20_000, typicality_sample=512)
    assert len(set(picks.tolist())) == 30
    model = TypicalClusters(30, sample_size=20_000, typicality_sample=512).fit(X)
    assert model.pool_sizes_.sum() == len(X) and len(model.sample_) == 20_000
    idx, typ = model.cluster_typicality(X, int(np.argmax(model.pool_sizes_)))
    assert len(idx) == len(typ) == 512 and model.pool_sizes_.max() > 512


def test_a_class_prior_steers_picks_to_uncovered_classes():
    # clusters 0 and 1 are two regions of class 0; clusters 2 and 3 hold classes 1 and 2.
    X, which = blobs([300, 250, 100, 90])
    cls = np.array([0, 0, 1, 2])[which]
    c = centres(4)
    label_vectors = np.stack([c[0] + c[1], c[2], c[3]])
    prior = ZeroShotPrior(label_vectors).fit(X)
    assert np.mean(prior.predict(X) == cls) == 1.0
    labelled = X[which == 0][:1]  # one label of class 0 so far
    plain = typical_diverse(X, 2, labelled=labelled, seed=0)
    steered = typical_diverse(X, 2, labelled=labelled, labelled_classes=np.array([0]), prior=prior, seed=0)
    assert 1 in which[plain].tolist()  # TypiClust alone visits the next largest cluster, class 0 again
    assert sorted(cls[steered].tolist()) == [1, 2]
    # with the class unknown the prior's own guess for the labelled point counts as covered
    guessed = typical_diverse(X, 2, labelled=labelled, labelled_classes=np.array([-1]), prior=prior, seed=0)
    assert sorted(cls[guessed].tolist()) == [1, 2]
