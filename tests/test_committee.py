"""HeadCommittee: shapes, determinism, learning, unseen classes, sample weights, MC dropout, persistence,
warm start."""

import io

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from acquisition import strategies as S
from acquisition.committee import HeadCommittee

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _blobs(n=300, d=16, c=4, seed=0, spread=0.5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(c, d))
    y = rng.integers(0, c, n)
    X = (centers[y] + spread * rng.normal(size=(n, d))).astype(np.float32)
    return X, y


@pytest.mark.parametrize("kw", [{}, {"hidden": 32, "epochs": 60}])
def test_shapes_and_learning(kw):
    X, y = _blobs()
    model = HeadCommittee(n_members=3, **kw).fit(X, y, n_classes=4)
    probs = model.predict_proba_members(X, chunk_size=64)
    assert isinstance(probs, np.ndarray) and probs.shape == (3, 300, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), np.ones((3, 300)), atol=1e-5)
    p = model.predict_proba(X)
    assert p.shape == (300, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p, probs.mean(0), atol=1e-6)
    assert (model.predict(X) == y).mean() > 0.97
    assert model.n_classes_ == 4 and model.n_features_in_ == 16 and model.members_ == 3


@pytest.mark.parametrize("kw", [{}, {"hidden": 16, "epochs": 30}, {"hidden": 16, "epochs": 30, "mc_dropout": True}])
def test_deterministic_for_a_random_state(kw):
    X, y = _blobs()
    a = HeadCommittee(n_members=3, random_state=7, **kw).fit(X, y, n_classes=4).predict_proba_members(X)
    b = HeadCommittee(n_members=3, random_state=7, **kw).fit(X, y, n_classes=4).predict_proba_members(X)
    assert np.array_equal(a, b)
    c = HeadCommittee(n_members=3, random_state=8, **kw).fit(X, y, n_classes=4).predict_proba_members(X)
    assert not np.array_equal(a, c)


def test_members_differ_by_bootstrap():
    X, y = _blobs(n=80, spread=2.0)
    probs = HeadCommittee(n_members=4).fit(X, y, n_classes=4).predict_proba_members(X)
    assert float(np.abs(probs[0] - probs[1]).max()) > 1e-3
    same = HeadCommittee(n_members=4, bootstrap=False).fit(X, y, n_classes=4).predict_proba_members(X)
    np.testing.assert_allclose(same[0], same[1], rtol=1.3e-6, atol=1e-5)  # convex problem, same data: same member


def test_unseen_classes_get_a_column():
    X, y = _blobs(c=3)
    model = HeadCommittee(n_members=2).fit(X, y, n_classes=6)
    p = model.predict_proba(X)
    assert p.shape == (300, 6)
    assert p[:, 3:].max() < 0.05
    assert set(np.unique(model.predict(X))) <= {0, 1, 2}


def test_sample_weights_matter():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2)).astype(np.float32)
    y = np.zeros(200, dtype=np.int64)
    y[:100] = 1
    X[:100] += 0.3  # heavily overlapping classes
    w = np.where(y == 1, 5.0, 1.0)
    plain = HeadCommittee(n_members=1, bootstrap=False).fit(X, y, n_classes=2)
    weighted = HeadCommittee(n_members=1, bootstrap=False).fit(X, y, n_classes=2, sample_weight=w)
    assert weighted.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean() + 0.1
    # integer weights act like repeated rows
    rep = HeadCommittee(n_members=1, bootstrap=False).fit(np.repeat(X, 2, 0), np.repeat(y, 2), n_classes=2)
    twice = HeadCommittee(n_members=1, bootstrap=False, weight_decay=0.05).fit(
        X, y, n_classes=2, sample_weight=np.full(200, 2.0)
    )
    np.testing.assert_allclose(twice.predict_proba(X), rep.predict_proba(X), atol=1e-3)


def test_mc_dropout_samples_differ_and_feed_bald():
    X, y = _blobs(n=200, spread=1.5)
    model = HeadCommittee(n_members=1, hidden=32, dropout=0.3, mc_dropout=True, mc_samples=8, epochs=60)
    model.fit(X, y, n_classes=4)
    probs = model.predict_proba_members(X)
    assert probs.shape == (8, 200, 4)
    assert float(np.abs(probs[0] - probs[1]).max()) > 1e-3
    assert np.array_equal(model.predict_proba_members(X, chunk_size=17), probs)  # masks do not depend on chunking
    assert float(S.bald(probs).max()) > 0
    with pytest.raises(ValueError):
        HeadCommittee(mc_dropout=True).fit(X, y, n_classes=4)


@pytest.mark.parametrize("kw", [{}, {"hidden": 16, "epochs": 20}, {"hidden": 16, "epochs": 20, "mc_dropout": True}])
def test_state_dict_round_trip(kw):
    X, y = _blobs()
    model = HeadCommittee(n_members=2, **kw).fit(X, y, n_classes=5)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    loaded = HeadCommittee.from_state_dict(torch.load(buf, weights_only=True))
    assert np.array_equal(loaded.predict_proba_members(X), model.predict_proba_members(X))
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.classes_, model.classes_)


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy", "bald", "qbc"])
def test_chunked_score_equals_score_of_probs(strategy):
    X, y = _blobs(n=500, spread=2.0)
    model = HeadCommittee(n_members=5).fit(X[:100], y[:100], n_classes=4)
    whole = S.score(strategy, model.predict_proba_members(X))
    chunked = model.score(X, strategy, chunk_size=64)
    assert isinstance(chunked, np.ndarray)
    torch.testing.assert_close(torch.from_numpy(chunked), whole)
    a = S.select_batch(strategy, 20, scores=chunked)
    b = S.select_batch(strategy, 20, probs=model.predict_proba_members(X))
    assert a.indices.tolist() == b.indices.tolist()


def test_bad_input():
    X, y = _blobs()
    with pytest.raises(ValueError):
        HeadCommittee().fit(X, y, n_classes=3)  # label 3 out of range
    with pytest.raises(ValueError):
        HeadCommittee().fit(X, y[:10], n_classes=4)
    with pytest.raises(NotFittedError):
        HeadCommittee().predict_proba(X)


def _objective(model, X, y):
    """The training objective of a single head fitted without bootstrap (dropout 0): mean CE + wd/2 ‖θ‖² / n."""
    p = torch.from_numpy(model.predict_proba_members(X)[0]).double()
    ce = -torch.log(p[torch.arange(len(y)), torch.as_tensor(y)]).mean()
    penalty = sum(float(w.double().square().sum()) for w in model.weights_.values())
    return float(ce) + 0.5 * model.weight_decay * penalty / len(y)


def _weights(model):
    return {k: v.clone() for k, v in model.weights_.items()}


def _max_change(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_warm_start_refit_of_a_converged_solution_stays_put():
    X, y = _blobs(spread=2.0)
    model = HeadCommittee(n_members=1, bootstrap=False, epochs=200, warm_start=True).fit(X, y, n_classes=4)
    before, loss = _weights(model), _objective(model, X, y)
    model.fit(X, y, n_classes=4)
    assert _max_change(model.weights_, before) < 1e-2 * max(float(w.abs().max()) for w in before.values())
    assert _objective(model, X, y) <= loss + 1e-6


@pytest.mark.parametrize("kw", [{"epochs": 3}, {"hidden": 16, "dropout": 0.0, "epochs": 15}])
def test_warm_start_continues_from_the_previous_solution(kw):
    X, y = _blobs(spread=2.0)
    first = HeadCommittee(n_members=1, bootstrap=False, warm_start=True, **kw).fit(X, y, n_classes=4)
    loss1 = _objective(first, X, y)
    cold = HeadCommittee(n_members=1, bootstrap=False, **kw).fit(X, y, n_classes=4)
    assert _objective(cold.fit(X, y, n_classes=4), X, y) == pytest.approx(loss1, abs=1e-7)  # re-initialised
    loss2 = _objective(first.fit(X, y, n_classes=4), X, y)
    assert loss2 < loss1 - 1e-3  # went on from where the first fit stopped


def test_warm_start_first_fit_and_default_refit_are_cold():
    X, y = _blobs()
    cold = HeadCommittee(n_members=3, epochs=5).fit(X, y, n_classes=4)
    warm = HeadCommittee(n_members=3, epochs=5, warm_start=True).fit(X, y, n_classes=4)
    assert all(torch.equal(warm.weights_[k], cold.weights_[k]) for k in cold.weights_)
    refit = HeadCommittee(n_members=3, epochs=5).fit(X[:50], y[:50], n_classes=4).fit(X, y, n_classes=4)
    assert all(torch.equal(refit.weights_[k], cold.weights_[k]) for k in cold.weights_)


@pytest.mark.parametrize(
    "change",
    [
        {"n_classes": 5},
        {"n_features": 8},
        {"params": {"n_members": 2}},
        {"params": {"hidden": 8}},
        {"params": {"hidden": 16, "mc_dropout": True}},
    ],
)
def test_warm_start_falls_back_to_a_fresh_init_when_the_problem_changes(change):
    X, y = _blobs(c=4)
    kw = {"n_members": 3, "hidden": 16, "epochs": 10}
    X2 = X[:, : change.get("n_features", X.shape[1])]
    c2 = change.get("n_classes", 4)
    params = {**kw, **change.get("params", {})}
    model = HeadCommittee(warm_start=True, **kw).fit(X, y, n_classes=4)
    model.set_params(**params).fit(X2, y, n_classes=c2)
    fresh = HeadCommittee(**params).fit(X2, y, n_classes=c2)
    assert model.weights_.keys() == fresh.weights_.keys()
    assert all(torch.equal(model.weights_[k], fresh.weights_[k]) for k in fresh.weights_)
    assert np.array_equal(model.predict_proba_members(X2), fresh.predict_proba_members(X2))


@pytest.mark.parametrize(
    "kw", [{"epochs": 20}, {"hidden": 16, "epochs": 20}, {"hidden": 16, "epochs": 20, "mc_dropout": True}]
)
def test_warm_start_is_deterministic_for_a_random_state(kw):
    X, y = _blobs(spread=1.5)

    def run(seed):
        model = HeadCommittee(n_members=3, random_state=seed, warm_start=True, **kw)
        for n in (100, 200, 300):
            model.fit(X[:n], y[:n], n_classes=4)
        return model.predict_proba_members(X)

    a = run(7)
    assert np.array_equal(a, run(7))
    assert not np.array_equal(a, run(8))


def test_warm_start_from_a_loaded_state():
    X, y = _blobs(spread=2.0)
    model = HeadCommittee(n_members=2, epochs=5).fit(X[:150], y[:150], n_classes=4)
    loaded = HeadCommittee.from_state_dict(model.state_dict()).set_params(warm_start=True)
    model.set_params(warm_start=True).fit(X, y, n_classes=4)
    loaded.fit(X, y, n_classes=4)
    assert np.array_equal(loaded.predict_proba_members(X), model.predict_proba_members(X))
    cold = HeadCommittee(n_members=2, epochs=5).fit(X, y, n_classes=4)
    assert not np.array_equal(loaded.predict_proba_members(X), cold.predict_proba_members(X))
    assert loaded.get_params()["warm_start"] is True and "warm_start=True" in repr(loaded)


@CUDA
def test_cuda_parity():
    X, y = _blobs()
    cpu = HeadCommittee(n_members=3).fit(X, y, n_classes=4)
    gpu = HeadCommittee(n_members=3, device="cuda").fit(X, y, n_classes=4)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-3)
    moved = HeadCommittee.from_state_dict(cpu.state_dict(), device="cuda")
    np.testing.assert_allclose(moved.predict_proba(X), cpu.predict_proba(X), atol=1e-5)


# ---------------------------------------------------------------------- scikit-learn estimator API


def test_clone_gives_an_unfitted_copy_with_equal_params():
    X, y = _blobs()
    model = HeadCommittee(n_members=2, hidden=8, epochs=5, random_state=3, warm_start=True).fit(X, y)
    copy = clone(model)
    assert type(copy) is HeadCommittee and copy is not model
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "weights_") and not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError):
        copy.predict(X)
    assert np.array_equal(
        copy.fit(X, y).predict_proba(X), HeadCommittee(**model.get_params()).fit(X, y).predict_proba(X)
    )


def test_get_params_set_params_round_trip():
    model = HeadCommittee()
    params = model.get_params()
    assert set(params) == {
        "n_members", "hidden", "dropout", "mc_dropout", "mc_samples", "epochs", "lr", "weight_decay",
        "bootstrap", "random_state", "device", "tol", "warm_start",
    }  # fmt: skip
    changed = {**params, "n_members": 7, "lr": 0.5, "epochs": None, "device": "cpu"}
    assert model.set_params(**changed) is model
    assert model.get_params() == changed and model.n_members == 7
    assert HeadCommittee(**changed).get_params() == changed
    assert repr(model) == "HeadCommittee(lr=0.5, n_members=7)"
    with pytest.raises(ValueError):
        model.set_params(n_member=3)


def test_classes_are_derived_from_y():
    X, y01 = _blobs(c=2)
    y = np.where(y01 == 0, 3, 7)
    model = HeadCommittee(n_members=2).fit(X, y)
    np.testing.assert_array_equal(model.classes_, [3, 7])
    assert model.n_classes_ == 2
    proba = model.predict_proba(X)
    assert proba.shape == (300, 2)
    pred = model.predict(X)
    assert set(np.unique(pred)) <= {3, 7} and (pred == y).mean() > 0.97
    np.testing.assert_array_equal(pred, model.classes_[proba.argmax(1)])
    # the same fit as with the labels encoded by hand: columns follow classes_
    coded = HeadCommittee(n_members=2).fit(X, y01, n_classes=2)
    np.testing.assert_array_equal(proba, coded.predict_proba(X))
    # string labels too
    names = np.array(["ham", "spam"])[y01]
    named = HeadCommittee(n_members=2).fit(X, names)
    np.testing.assert_array_equal(named.classes_, ["ham", "spam"])
    assert (named.predict(X) == names).mean() > 0.97


def test_explicit_classes_give_a_column_to_an_unseen_class():
    X, y01 = _blobs(c=2)
    y = np.where(y01 == 0, 3, 7)
    model = HeadCommittee(n_members=2).fit(X, y, classes=[3, 5, 7])
    np.testing.assert_array_equal(model.classes_, [3, 5, 7])
    p = model.predict_proba(X)
    assert p.shape == (300, 3) and p[:, 1].max() < 0.05
    assert set(np.unique(model.predict(X))) <= {3, 7}
    assert model.predict_proba_members(X).shape == (2, 300, 3)
    with pytest.raises(ValueError, match="not in classes"):
        HeadCommittee().fit(X, y, classes=[3, 5])
    with pytest.raises(ValueError, match="not both"):
        HeadCommittee().fit(X, y01, classes=[0, 1], n_classes=2)
    with pytest.raises(ValueError, match="repeat"):
        HeadCommittee().fit(X, y, classes=[3, 3, 7])


def test_legacy_n_classes_is_short_for_classes_arange():
    X, y = _blobs(c=3)
    legacy = HeadCommittee(n_members=2).fit(X, y, n_classes=5)
    explicit = HeadCommittee(n_members=2).fit(X, y, classes=np.arange(5))
    np.testing.assert_array_equal(legacy.classes_, np.arange(5))
    assert legacy.n_classes_ == 5
    assert all(torch.equal(legacy.weights_[k], explicit.weights_[k]) for k in legacy.weights_)
    pred = legacy.predict(X)
    assert pred.dtype == np.int64 and set(np.unique(pred)) <= {0, 1, 2}
    with pytest.raises(ValueError):
        HeadCommittee().fit(X, y + 5, n_classes=5)


@pytest.mark.parametrize("kw", [{}, {"hidden": 8, "epochs": 10, "mc_dropout": True, "mc_samples": 4}])
def test_outputs_are_numpy(kw):
    X, y = _blobs(n=120)
    model = HeadCommittee(n_members=3, **kw).fit(X, y)
    for out, dtype in (
        (model.predict_proba(X, chunk_size=50), np.float32),
        (model.predict_proba_members(X, chunk_size=50), np.float32),
    ):
        assert type(out) is np.ndarray and out.dtype == dtype
    assert type(model.predict(X)) is np.ndarray
    for strategy in ("least_confidence", "margin", "entropy", "bald", "qbc"):
        sc = model.score(X, strategy, chunk_size=50)
        assert type(sc) is np.ndarray and sc.shape == (120,) and sc.dtype in (np.float32, np.float64)
        np.testing.assert_allclose(sc, S.score(strategy, model.predict_proba_members(X)).numpy(), rtol=1e-6)
    empty = model.score(X[:0], "margin")
    assert type(empty) is np.ndarray and empty.shape == (0,)


def test_state_dict_keeps_classes_and_loads_with_weights_only():
    X, y01 = _blobs(c=2)
    y = np.where(y01 == 0, 3, 7)
    model = HeadCommittee(n_members=2).fit(X, y, classes=[3, 5, 7])
    state = model.state_dict()
    assert state["classes"] == [3, 5, 7]
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = HeadCommittee.from_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_array_equal(loaded.classes_, [3, 5, 7])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_state_dict_without_classes_loads_with_arange():
    """States saved before ``classes_`` existed have no ``classes`` entry."""
    X, y = _blobs()
    model = HeadCommittee(n_members=2).fit(X, y, n_classes=5)
    state = model.state_dict()
    del state["classes"]
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = HeadCommittee.from_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_array_equal(loaded.classes_, np.arange(5))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    # and a warm refit with the legacy n_classes continues from it
    loaded.set_params(warm_start=True).fit(X, y, n_classes=5)
    assert loaded.n_classes_ == 5


def test_warm_start_falls_back_to_a_fresh_init_when_the_classes_change():
    X, y = _blobs(c=4)
    model = HeadCommittee(n_members=2, epochs=5, warm_start=True).fit(X, y)
    relabelled = np.where(y == 3, 9, y)  # still four classes, one of them another
    model.fit(X, relabelled)
    fresh = HeadCommittee(n_members=2, epochs=5).fit(X, relabelled)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2, 9])
    assert all(torch.equal(model.weights_[k], fresh.weights_[k]) for k in fresh.weights_)
