"""LabelSpreadingHead and its parts: the k-nearest-neighbour graph against brute force, spreading against
Zhou's closed form, learning from unlabelled items, the data-chosen settings, determinism, persistence,
chunking; HeadWithCommittee (one head serves, the committee ranks)."""

import io

import numpy as np
import pytest
import torch
from sklearn.base import clone

from acquisition import strategies as S
from acquisition.committee import HeadCommittee
from acquisition.heads import HeadWithCommittee, head_from_state_dict
from acquisition.semisupervised import KnnGraph, LabelSpreadingHead, knn_graph, spread


def _clusters(n_per=100, c=6, d=64, seed=0):
    """``c`` Gaussian classes in ``d`` dimensions whose centres lie closer than the noise is wide: a few
    labels per class place a linear boundary poorly, while each item's nearest neighbours are mostly of
    its class, so the unlabelled items show where the classes lie."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=0.5, size=(c, d))
    y = np.repeat(np.arange(c), n_per)
    X = centers[y] + rng.normal(size=(len(y), d))
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order]


def _few_labels(y, per_class, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)])


def _split(X, y, per_class=3, seed=0):
    lab = _few_labels(y, per_class, seed)
    unl = np.setdiff1d(np.arange(len(y)), lab)
    return lab, unl


# ------------------------------------------------------------------------------------ graph
def test_knn_graph_is_the_brute_force_cosine_neighbours_and_chunking_changes_nothing():
    X, _ = _clusters(n_per=40)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    sims = Z @ Z.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    whole = knn_graph(X, 7)
    chunked = knn_graph(X, 7, chunk_size=13)
    assert whole.indices.shape == (len(X), 7) and whole.k == 7
    np.testing.assert_array_equal(whole.indices, expected)
    np.testing.assert_array_equal(chunked.indices, whole.indices)
    np.testing.assert_allclose(chunked.similarities, whole.similarities, atol=1e-6)
    np.testing.assert_allclose(whole.similarities, np.take_along_axis(sims, expected, 1), atol=1e-5)
    assert not (whole.indices == np.arange(len(X))[:, None]).any()  # never its own neighbour


def test_a_subset_graph_renumbers_nodes_and_drops_edges_to_the_others():
    X, _ = _clusters(n_per=20)
    graph = knn_graph(X, 5)
    keep = np.array([9, 3, 0, 17, 25, 40, 41, 42])
    sub = graph.subset(keep)
    assert len(sub) == len(keep)
    for new, old in enumerate(keep):
        kept = [int(np.flatnonzero(keep == j)[0]) for j in graph.indices[old] if j in keep]
        row = sub.indices[new]
        assert row[: len(kept)].tolist() == kept and (row[len(kept) :] == -1).all()
        assert (sub.similarities[new, len(kept) :] == 0).all()
    S_ = sub.adjacency(5).toarray()
    np.testing.assert_allclose(S_, S_.T, atol=1e-6)  # symmetric, and no edge to a dropped node


def test_spreading_converges_to_zhous_closed_form():
    X, y = _clusters(n_per=20, c=3)
    S_ = knn_graph(X, 6).adjacency(6)
    Y = np.zeros((len(y), 3), dtype=np.float32)
    Y[np.arange(10), y[:10]] = 1.0
    closed = 0.5 * np.linalg.solve(np.eye(len(y)) - 0.5 * S_.toarray(), Y)  # (1 − α)(I − αS)⁻¹Y, α = 0.5
    F = spread(S_, Y, [0.5, 0.9], n_iter=60)
    assert F.shape == (2, len(y), 3)
    np.testing.assert_allclose(F[0], closed, atol=1e-6)
    rows = np.array([3, 30, 59])
    np.testing.assert_allclose(spread(S_, Y, [0.9], n_iter=60, rows=rows)[0], F[1][rows], atol=1e-9)


# ------------------------------------------------------------------------------------ learning
def test_unlabelled_items_beat_the_supervised_head_with_few_labels():
    wins = []
    for seed in range(3):
        X, y = _clusters(seed=seed)
        lab, unl = _split(X, y, per_class=2, seed=seed)
        supervised = HeadCommittee(n_members=1, bootstrap=False, random_state=seed).fit(X[lab], y[lab])
        semi = LabelSpreadingHead(random_state=seed).fit(X[lab], y[lab], X_unlabelled=X[unl])
        wins.append((semi.predict(X[unl]) == y[unl]).mean() - (supervised.predict(X[unl]) == y[unl]).mean())
        assert semi.mixing_ < 1.0 and semi.n_unlabelled_ == len(unl)
    # measured: +0.05, +0.15, +0.07
    assert min(wins) > 0.03 and np.mean(wins) > 0.06, wins


def test_new_items_are_predicted_from_their_vectors_alone():
    X, y = _clusters(n_per=200, seed=1)
    lab, unl = _split(X, y, per_class=2, seed=1)
    pool, fresh = unl[: len(unl) // 2], unl[len(unl) // 2 :]  # `fresh` never reaches the model
    model = LabelSpreadingHead(random_state=0).fit(X[lab], y[lab], X_unlabelled=X[pool])
    supervised = HeadCommittee(n_members=1, bootstrap=False).fit(X[lab], y[lab])
    assert (model.predict(X[fresh]) == y[fresh]).mean() > (supervised.predict(X[fresh]) == y[fresh]).mean() + 0.03
    p = model.predict_proba(X[fresh])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba_members(X[fresh])[0], p)


def test_without_unlabelled_items_it_is_the_supervised_head():
    X, y = _clusters()
    lab, _ = _split(X, y, per_class=5)
    plain = HeadCommittee(n_members=1, bootstrap=False, random_state=3).fit(X[lab], y[lab])
    for unlabelled in (None, X[:0]):
        model = LabelSpreadingHead(random_state=3).fit(X[lab], y[lab], X_unlabelled=unlabelled)
        assert model.mixing_ == 1.0 and model.cv_results_ == {} and model.n_unlabelled_ == 0
        np.testing.assert_allclose(model.predict_proba(X), plain.predict_proba(X), atol=1e-6)


def test_with_one_label_per_class_nothing_can_be_validated_so_it_stays_supervised():
    X, y = _clusters()
    lab, unl = _split(X, y, per_class=1)
    model = LabelSpreadingHead(random_state=0).fit(X[lab], y[lab], X_unlabelled=X[unl])
    assert model.mixing_ == 1.0 and set(model.cv_results_.values()) == {0.0}


def test_settings_are_chosen_by_cross_validation_and_a_single_setting_skips_it():
    X, y = _clusters(seed=2)
    lab, unl = _split(X, y, per_class=4)
    model = LabelSpreadingHead(random_state=0).fit(X[lab], y[lab], X_unlabelled=X[unl])
    assert len(model.cv_results_) == 3 * 4 * 5
    best = max(model.cv_results_.values())
    chosen = f"k={model.n_neighbors_} alpha={model.alpha_:g} mixing={model.mixing_:g}"
    assert model.cv_results_[chosen] == best
    # on a tie the largest mixing weight wins (closest to the supervised head)
    assert all(
        float(key.split("mixing=")[1]) <= model.mixing_ for key, value in model.cv_results_.items() if value == best
    )
    fixed = LabelSpreadingHead(n_neighbors=5, alpha=0.9, mixing=0.25, random_state=0)
    fixed.fit(X[lab], y[lab], X_unlabelled=X[unl])
    assert fixed.cv_results_ == {} and (fixed.n_neighbors_, fixed.alpha_, fixed.mixing_) == (5, 0.9, 0.25)


def test_max_unlabelled_caps_the_nodes_with_a_seeded_sample():
    X, y = _clusters()
    lab, unl = _split(X, y)
    a = LabelSpreadingHead(max_unlabelled=100, random_state=4).fit(X[lab], y[lab], X_unlabelled=X[unl])
    b = LabelSpreadingHead(max_unlabelled=100, random_state=4).fit(X[lab], y[lab], X_unlabelled=X[unl])
    assert a.n_unlabelled_ == 100
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_a_given_graph_gives_the_same_model_as_one_built_inside():
    X, y = _clusters(seed=3)
    lab, unl = _split(X, y)
    built = LabelSpreadingHead(random_state=1).fit(X[lab], y[lab], X_unlabelled=X[unl])
    # the pool's graph, built once in pool order, reordered to [labelled; unlabelled]
    graph = knn_graph(X, 20).subset(np.concatenate([lab, unl]))
    given = LabelSpreadingHead(random_state=1).fit(X[lab], y[lab], X_unlabelled=X[unl], graph=graph)
    np.testing.assert_allclose(given.predict_proba(X), built.predict_proba(X), atol=1e-5)
    with pytest.raises(ValueError, match="nodes"):
        LabelSpreadingHead().fit(X[lab], y[lab], X_unlabelled=X[unl][:-1], graph=graph)
    with pytest.raises(ValueError, match="neighbours"):
        LabelSpreadingHead(n_neighbors=30).fit(X[lab], y[lab], X_unlabelled=X[unl], graph=graph)


def test_deterministic_for_a_random_state_and_clonable():
    X, y = _clusters(seed=5)
    lab, unl = _split(X, y)
    a = LabelSpreadingHead(random_state=7).fit(X[lab], y[lab], X_unlabelled=X[unl])
    b = clone(a).fit(X[lab], y[lab], X_unlabelled=X[unl])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.cv_results_ == b.cv_results_


def test_classes_absent_from_the_labels_keep_a_column():
    X, y = _clusters()
    lab, unl = _split(X, y, per_class=3)
    keep = lab[y[lab] != 5]  # class 5 has no label yet
    model = LabelSpreadingHead(random_state=0).fit(X[keep], y[keep], X_unlabelled=X[unl], classes=np.arange(7))
    p = model.predict_proba(X)
    assert p.shape == (len(X), 7) and model.classes_.tolist() == list(range(7))
    assert set(np.unique(model.predict(X))) <= {0, 1, 2, 3, 4}


def test_state_dict_round_trip():
    X, y = _clusters(seed=6)
    lab, unl = _split(X, y)
    model = LabelSpreadingHead(random_state=2).fit(X[lab], y[lab], X_unlabelled=X[unl])
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    for loaded in (LabelSpreadingHead.from_state_dict(state), head_from_state_dict(state)):
        assert isinstance(loaded, LabelSpreadingHead)
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
        assert (loaded.n_neighbors_, loaded.alpha_, loaded.mixing_) == (model.n_neighbors_, model.alpha_, model.mixing_)
        assert loaded.cv_results_ == model.cv_results_ and loaded.get_params() == model.get_params()
        np.testing.assert_array_equal(loaded.score(X, "margin"), model.score(X, "margin"))


def test_bad_input():
    X, y = _clusters()
    with pytest.raises(ValueError, match="alpha"):
        LabelSpreadingHead(alpha=1.0).fit(X, y, X_unlabelled=X)
    with pytest.raises(ValueError, match="mixing"):
        LabelSpreadingHead(mixing=(0.5, 2.0)).fit(X, y, X_unlabelled=X)
    with pytest.raises(ValueError, match="columns"):
        LabelSpreadingHead().fit(X, y, X_unlabelled=X[:, :3])
    with pytest.raises(ValueError):
        LabelSpreadingHead().fit(X, y[:5])


def test_a_graph_of_one_node_has_no_edges():
    graph = knn_graph(np.ones((1, 4), dtype=np.float32), 5)
    assert isinstance(graph, KnnGraph) and graph.indices.shape == (1, 0)


# ------------------------------------------------------------------------------------ head + committee
def test_head_with_committee_serves_the_head_and_ranks_with_the_committee():
    X, y = _clusters(seed=7)
    lab = _few_labels(y, 10)
    head = HeadCommittee(n_members=1, bootstrap=False).fit(X[lab], y[lab])
    committee = HeadCommittee(n_members=4, random_state=1).fit(X[lab], y[lab])
    model = HeadWithCommittee(head, committee)
    np.testing.assert_array_equal(model.predict_proba(X), head.predict_proba(X))
    np.testing.assert_array_equal(model.predict(X), head.predict(X))
    assert model.n_outputs_ == 4 and model.classes_.tolist() == list(range(6))
    assert model.predict_proba_members(X).shape == (4, len(X), 6)
    np.testing.assert_array_equal(model.score(X, "qbc"), committee.score(X, "qbc"))
    np.testing.assert_array_equal(model.score(X, "margin"), head.score(X, "margin"))
    torch.testing.assert_close(
        torch.from_numpy(model.score(X, "qbc")), S.vote_entropy(committee.predict_proba_members(X))
    )

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    loaded = head_from_state_dict(torch.load(buffer, weights_only=True))
    assert isinstance(loaded, HeadWithCommittee) and isinstance(loaded.head, HeadCommittee)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score(X, "qbc"), model.score(X, "qbc"))
    with pytest.raises(ValueError, match="kind"):
        head_from_state_dict({"kind": "something else"})
