"""HeadCommittee: shapes, determinism, learning, unseen classes, sample weights, MC dropout, persistence."""

import io

import numpy as np
import pytest
import torch

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
    assert probs.shape == (3, 300, 4) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 300))
    p = model.predict_proba(X)
    assert p.shape == (300, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p, probs.mean(0).numpy(), atol=1e-6)
    assert (model.predict(X) == y).mean() > 0.97
    assert model.n_classes_ == 4 and model.n_features_in_ == 16 and model.members_ == 3


@pytest.mark.parametrize("kw", [{}, {"hidden": 16, "epochs": 30}, {"hidden": 16, "epochs": 30, "mc_dropout": True}])
def test_deterministic_for_a_random_state(kw):
    X, y = _blobs()
    a = HeadCommittee(n_members=3, random_state=7, **kw).fit(X, y, n_classes=4).predict_proba_members(X)
    b = HeadCommittee(n_members=3, random_state=7, **kw).fit(X, y, n_classes=4).predict_proba_members(X)
    assert torch.equal(a, b)
    c = HeadCommittee(n_members=3, random_state=8, **kw).fit(X, y, n_classes=4).predict_proba_members(X)
    assert not torch.equal(a, c)


def test_members_differ_by_bootstrap():
    X, y = _blobs(n=80, spread=2.0)
    probs = HeadCommittee(n_members=4).fit(X, y, n_classes=4).predict_proba_members(X)
    assert float((probs[0] - probs[1]).abs().max()) > 1e-3
    same = HeadCommittee(n_members=4, bootstrap=False).fit(X, y, n_classes=4).predict_proba_members(X)
    torch.testing.assert_close(same[0], same[1])  # convex problem, same data: same member


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
    assert float((probs[0] - probs[1]).abs().max()) > 1e-3
    assert torch.equal(model.predict_proba_members(X, chunk_size=17), probs)  # masks do not depend on chunking
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
    assert torch.equal(loaded.predict_proba_members(X), model.predict_proba_members(X))
    assert loaded.get_params() == model.get_params()


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy", "bald", "qbc"])
def test_chunked_score_equals_score_of_probs(strategy):
    X, y = _blobs(n=500, spread=2.0)
    model = HeadCommittee(n_members=5).fit(X[:100], y[:100], n_classes=4)
    whole = S.score(strategy, model.predict_proba_members(X))
    chunked = model.score(X, strategy, chunk_size=64)
    torch.testing.assert_close(chunked, whole)
    a = S.select_batch(strategy, 20, scores=chunked)
    b = S.select_batch(strategy, 20, probs=model.predict_proba_members(X))
    assert a.indices.tolist() == b.indices.tolist()


def test_bad_input():
    X, y = _blobs()
    with pytest.raises(ValueError):
        HeadCommittee().fit(X, y, n_classes=3)  # label 3 out of range
    with pytest.raises(ValueError):
        HeadCommittee().fit(X, y[:10], n_classes=4)
    with pytest.raises(RuntimeError):
        HeadCommittee().predict_proba(X)


@CUDA
def test_cuda_parity():
    X, y = _blobs()
    cpu = HeadCommittee(n_members=3).fit(X, y, n_classes=4)
    gpu = HeadCommittee(n_members=3, device="cuda").fit(X, y, n_classes=4)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-3)
    moved = HeadCommittee.from_state_dict(cpu.state_dict(), device="cuda")
    np.testing.assert_allclose(moved.predict_proba(X), cpu.predict_proba(X), atol=1e-5)
