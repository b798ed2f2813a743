"""Acquisition functions: hand-worked values, NumPy references, chunking, greedy exactness, determinism."""

import math

import numpy as np
import pytest
import torch

from acquisition import strategies as S

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _dirichlet(rng, m, n, c, conc=0.3):
    return rng.dirichlet(np.full(c, conc), size=(m, n)).astype(np.float32)


# --------------------------------------------------------------------------- hand-worked values


def test_hand_worked_single_model():
    p = np.array([[0.6, 0.3, 0.1]])
    assert float(S.entropy(p)[0]) == pytest.approx(0.897, abs=1e-3)
    assert float(S.least_confidence(p)[0]) == pytest.approx(0.4)
    assert float(S.margin(p)[0]) == pytest.approx(-0.3)


def test_hand_worked_bald():
    probs = np.array([[[0.9, 0.1]], [[0.1, 0.9]]])
    # H[(.5,.5)] − (H[(.9,.1)] + H[(.1,.9)])/2 = 0.6931 − 0.3251
    assert float(S.bald(probs)[0]) == pytest.approx(0.368, abs=1e-3)
    assert float(S.bald(probs[:1])[0]) == pytest.approx(0.0, abs=1e-12)


def test_hand_worked_vote_entropy():
    # 5 members, 3 classes. Item 0: votes (3, 2, 0); item 1: unanimous; item 2: (2, 2, 1).
    member_votes = [[0, 1, 0], [0, 1, 1], [0, 1, 1], [1, 1, 0], [1, 1, 2]]
    probs = np.full((5, 3, 3), 0.1)
    for m, votes in enumerate(member_votes):
        for i, c in enumerate(votes):
            probs[m, i, c] = 0.8
    ve = S.vote_entropy(probs).numpy()
    expected = [
        -(0.6 * math.log(0.6) + 0.4 * math.log(0.4)),  # 0.6730
        0.0,
        -(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2)),  # 1.0549
    ]
    delta = S._vote_entropy_tiebreak_scale(5, 3)
    assert np.all(ve >= expected) and np.all(ve <= np.array(expected) + delta)
    assert ve[0] - 0.673 == pytest.approx(0.0, abs=delta + 1e-3)
    assert list(np.argsort(-ve)) == [2, 0, 1]


def test_vote_entropy_ties_broken_by_margin_never_reorders_entropies():
    rng = np.random.default_rng(3)
    probs = _dirichlet(rng, 5, 4000, 6, conc=0.5)
    score = S.vote_entropy(probs).numpy()
    votes = probs.argmax(-1)
    counts = np.stack([np.bincount(votes[:, i], minlength=6) for i in range(votes.shape[1])]) / 5
    ve = -(np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1)), 0)).sum(1)
    pbar = np.sort(probs.mean(0), axis=1)
    mg = -(pbar[:, -1] - pbar[:, -2])
    order = np.argsort(-score, kind="stable")
    # sorted by score == sorted by (vote entropy, margin) lexicographically
    key = np.lexsort((-mg, -np.round(ve, 9)))
    assert np.array_equal(np.round(ve[order], 9), np.round(ve[key], 9))
    same = np.isclose(ve[order][:-1], ve[order][1:], atol=1e-9)
    assert np.all(mg[order][:-1][same] >= mg[order][1:][same] - 1e-6)
    # δ is below half of the smallest gap between distinct vote entropies of 5 votes
    distinct = np.unique(np.round(ve, 9))
    assert S._vote_entropy_tiebreak_scale(5, 6) < np.diff(distinct).min() / 2


# --------------------------------------------------------------------------- NumPy references


def _ref_scores(probs):
    p = probs if probs.ndim == 3 else probs[None]
    pbar = p.mean(0).astype(np.float64)
    srt = np.sort(pbar, axis=1)
    ent = lambda q: -(np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0)).sum(-1)  # noqa: E731
    return {
        "least_confidence": 1 - pbar.max(1),
        "margin": -(srt[:, -1] - srt[:, -2]),
        "entropy": ent(pbar),
        "bald": ent(pbar) - ent(p.astype(np.float64)).mean(0),
    }


@pytest.mark.parametrize("shape", [(1, 300, 7), (5, 300, 7), (3, 200, 77)])
def test_scores_match_numpy_reference(shape):
    rng = np.random.default_rng(0)
    probs = _dirichlet(rng, *shape)
    ref = _ref_scores(probs)
    for name, expected in ref.items():
        got = S.score(name, probs).double().numpy()
        np.testing.assert_allclose(got, expected, atol=2e-6, err_msg=name)
    if shape[0] == 1:  # (n, C) is the same as (1, n, C)
        np.testing.assert_array_equal(S.entropy(probs[0]).numpy(), S.entropy(probs).numpy())


def test_top_k_exact_and_tie_order():
    s = torch.tensor([0.5, 0.9, 0.5, float("nan"), 0.9, 0.1, 0.5])
    assert S.top_k(s, 4).tolist() == [1, 4, 0, 2]
    assert S.top_k(s, 7).tolist() == [1, 4, 0, 2, 6, 5, 3]
    assert S.top_k(s, 0).tolist() == []
    rng = np.random.default_rng(1)
    r = rng.integers(0, 20, 5000).astype(np.float32)
    expected = np.lexsort((np.arange(5000), -r))[:300]
    assert S.top_k(r, 300).tolist() == expected.tolist()


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy", "bald", "qbc"])
def test_uncertainty_selection_is_top_k_of_reference(strategy):
    rng = np.random.default_rng(2)
    probs = _dirichlet(rng, 5, 1000, 10)
    sel = S.select_batch(strategy, 25, probs=probs)
    ref = S.score(strategy, probs).double().numpy() if strategy == "qbc" else _ref_scores(probs)[strategy]
    assert sel.indices.dtype == np.int64 and sel.scores.dtype == np.float64
    assert set(sel.indices) == set(np.argsort(-ref, kind="stable")[:25])
    assert np.all(np.diff(sel.scores) <= 0)
    assert not sel.exploration.any()


# --------------------------------------------------------------------------- distances


def test_min_distances_match_numpy_and_are_chunk_invariant():
    rng = np.random.default_rng(4)
    pool = rng.normal(size=(3000, 32)).astype(np.float32)
    lab = rng.normal(size=(5000, 32)).astype(np.float32)  # more than one labelled block
    ref = np.sqrt(((pool[:, None, :].astype(np.float64) - lab[None]) ** 2).sum(-1)).min(1)
    full = S.min_distances(pool, lab)
    np.testing.assert_allclose(full, ref, rtol=1e-5)
    for chunk in (1, 7, 1000, 10**6):
        np.testing.assert_array_equal(S.min_distances(pool, lab, chunk_size=chunk), full)
    assert np.isinf(S.min_distances(pool, np.empty((0, 32), np.float32))).all()


def test_incremental_update_equals_full_recompute():
    rng = np.random.default_rng(5)
    pool = rng.normal(size=(2000, 16)).astype(np.float32)
    lab = rng.normal(size=(600, 16)).astype(np.float32)
    cache = S.min_distances(pool, lab[:500], chunk_size=300)
    for new in (lab[500:550], lab[550:551], lab[551:]):
        cache = S.update_min_distances(cache, pool, new, chunk_size=128)
    np.testing.assert_array_equal(cache, S.min_distances(pool, lab))
    # tensors in, tensor out; the input cache is not modified
    t = torch.full((2000,), math.inf)
    out = S.update_min_distances(t, torch.from_numpy(pool), torch.from_numpy(lab))
    assert isinstance(out, torch.Tensor) and torch.isinf(t).all()
    np.testing.assert_array_equal(out.numpy(), cache)


def test_memmap_pool(tmp_path):
    rng = np.random.default_rng(6)
    pool = rng.normal(size=(1000, 8)).astype(np.float32)
    path = tmp_path / "pool.npy"
    np.save(path, pool)
    mm = np.load(path, mmap_mode="r")
    lab = pool[:20]
    np.testing.assert_array_equal(S.min_distances(mm, lab, chunk_size=100), S.min_distances(pool, lab))
    a = S.select_batch("coreset", 10, embeddings=mm, labelled_embeddings=lab)
    b = S.select_batch("coreset", 10, embeddings=pool, labelled_embeddings=lab)
    assert a.indices.tolist() == b.indices.tolist()


# --------------------------------------------------------------------------- greedy MSAL / core-set


def _naive_greedy(base, emb, lab, alpha, k):
    """O(k · n · |L|): recompute every distance to L ∪ picks at every step, float64."""
    emb64 = emb.astype(np.float64)
    ref = [] if lab is None else list(lab.astype(np.float64))
    picks = []
    for _ in range(k):
        if ref:
            refs = np.stack(ref)
            d = np.sqrt(((emb64[:, None, :] - refs[None]) ** 2).sum(-1)).min(1)
        else:
            d = np.zeros(len(emb))
        s = base + alpha * d
        s[picks] = -np.inf
        j = int(np.argmax(s))
        picks.append(j)
        ref.append(emb64[j])
    return picks


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 5.0])
def test_msal_greedy_equals_naive_reference(alpha, monkeypatch):
    monkeypatch.setattr(S, "_SHORTLIST_MIN", 8)  # force shortlist growth on small data
    rng = np.random.default_rng(7)
    emb = rng.normal(size=(600, 12)).astype(np.float32)
    lab = rng.normal(size=(40, 12)).astype(np.float32)
    probs = _dirichlet(rng, 1, 600, 5)
    u = S.margin(probs).double().numpy()
    sel = S.select_batch("msal", 20, probs=probs, embeddings=emb, labelled_embeddings=lab, alpha=alpha)
    assert sel.indices.tolist() == _naive_greedy(u, emb, lab, alpha, 20)
    assert len(set(sel.indices.tolist())) == 20
    # the same from a precomputed cache, and with entropy as the uncertainty
    cache = S.min_distances(emb, lab)
    same = S.select_batch("msal", 20, probs=probs, embeddings=emb, min_dist=cache, alpha=alpha)
    assert same.indices.tolist() == sel.indices.tolist()
    ent = S.select_batch("msal", 20, probs=probs, embeddings=emb, min_dist=cache, alpha=alpha, uncertainty="entropy")
    assert ent.indices.tolist() == _naive_greedy(S.entropy(probs).double().numpy(), emb, lab, alpha, 20)


def test_msal_batch_is_diverse_within_itself():
    rng = np.random.default_rng(8)
    # one tight cluster of very uncertain duplicates and a spread of others
    emb = np.concatenate([np.zeros((50, 4)) + rng.normal(scale=1e-3, size=(50, 4)), rng.normal(size=(500, 4))])
    emb = emb.astype(np.float32)
    u = np.concatenate([np.full(50, -0.01), np.full(500, -0.5)])
    sel = S.select_batch("msal", 10, scores=u, embeddings=emb, labelled_embeddings=emb[60:70], alpha=1.0)
    assert sum(i < 50 for i in sel.indices) <= 2


def test_coreset_is_k_center_greedy():
    rng = np.random.default_rng(9)
    emb = rng.normal(size=(500, 6)).astype(np.float32)
    lab = rng.normal(size=(30, 6)).astype(np.float32)
    sel = S.select_batch("coreset", 15, embeddings=emb, labelled_embeddings=lab)
    assert sel.indices.tolist() == _naive_greedy(np.zeros(500), emb, lab, 1.0, 15)


def test_chunked_and_unchunked_selections_identical():
    rng = np.random.default_rng(10)
    emb = rng.normal(size=(3000, 24)).astype(np.float32)
    lab = rng.normal(size=(2500, 24)).astype(np.float32)
    probs = _dirichlet(rng, 5, 3000, 9)
    for strategy in S.STRATEGIES:
        kw = dict(probs=probs, embeddings=emb, labelled_embeddings=lab, epsilon=0.2, seed=3)
        a = S.select_batch(strategy, 30, chunk_size=10**7, **kw)
        b = S.select_batch(strategy, 30, chunk_size=97, **kw)
        assert a.indices.tolist() == b.indices.tolist(), strategy
        np.testing.assert_array_equal(a.scores, b.scores)


def test_no_labels_yet():
    rng = np.random.default_rng(11)
    emb = rng.normal(size=(400, 5)).astype(np.float32)
    probs = _dirichlet(rng, 1, 400, 4)
    sel = S.select_batch("msal", 8, probs=probs, embeddings=emb, alpha=1.0)
    assert sel.indices[0] == int(S.top_k(S.margin(probs), 1)[0])
    assert sel.indices.tolist()[1:] == _naive_greedy(
        np.where(np.arange(400) == sel.indices[0], -np.inf, S.margin(probs).double().numpy()),
        emb,
        emb[sel.indices[:1]],
        1.0,
        7,
    )
    cs = S.select_batch("coreset", 8, embeddings=emb, seed=1)
    assert len(set(cs.indices.tolist())) == 8


def test_partial_cache_is_rejected():
    emb = np.zeros((10, 2), np.float32)
    cache = np.ones(10, np.float32)
    cache[3] = np.inf
    with pytest.raises(ValueError):
        S.select_batch("coreset", 2, embeddings=emb, min_dist=cache)


# --------------------------------------------------------------------------- exploration, random, determinism


@pytest.mark.parametrize("strategy", S.STRATEGIES)
def test_exploration_count_marking_and_determinism(strategy):
    rng = np.random.default_rng(12)
    emb = rng.normal(size=(800, 8)).astype(np.float32)
    probs = _dirichlet(rng, 5, 800, 6)
    kw = dict(probs=probs, embeddings=emb, labelled_embeddings=emb[:10], epsilon=0.1, seed=42)
    sel = S.select_batch(strategy, 50, **kw)
    assert len(sel) == 50 and len(set(sel.indices.tolist())) == 50
    assert sel.exploration.sum() == 5 and sel.exploration[-5:].all()
    plain = S.select_batch(strategy, 45, **{**kw, "epsilon": 0.0})
    assert sel.indices[:45].tolist() == plain.indices.tolist()
    again = S.select_batch(strategy, 50, **kw)
    assert again.indices.tolist() == sel.indices.tolist()
    other = S.select_batch(strategy, 50, **{**kw, "seed": 43})
    assert other.indices[-5:].tolist() != sel.indices[-5:].tolist()


def test_random_is_uniform_without_replacement():
    sel = S.select_batch("random", 100, scores=np.zeros(1000), seed=1)
    assert len(set(sel.indices.tolist())) == 100 and sel.indices.max() < 1000
    hits = np.zeros(10)
    for seed in range(300):
        hits += np.bincount(S.select_batch("random", 3, scores=np.zeros(10), seed=seed).indices, minlength=10)
    assert hits.min() > 50  # 90 expected per item


def test_k_larger_than_pool_and_bad_input():
    probs = np.full((3, 2), 0.5)
    assert len(S.select_batch("margin", 10, probs=probs)) == 3
    with pytest.raises(ValueError):
        S.select_batch("nope", 1, probs=probs)
    with pytest.raises(ValueError):
        S.select_batch("msal", 1, probs=probs)
    with pytest.raises(ValueError):
        S.select_batch("msal", 1, probs=probs, embeddings=np.zeros((3, 2)), uncertainty="bald")
    with pytest.raises(ValueError):
        S.select_batch("msal", 1, probs=probs, embeddings=np.zeros((4, 2)))


# --------------------------------------------------------------------------- cold start


@pytest.mark.parametrize("method", ["kcenter", "kmeans++"])
def test_cold_start_is_diverse_and_seeded(method):
    rng = np.random.default_rng(13)
    centers = rng.normal(scale=20, size=(8, 16))
    emb = (centers[rng.integers(0, 8, 4000)] + rng.normal(size=(4000, 16))).astype(np.float32)
    which = np.argmin(((emb[:, None] - centers[None]) ** 2).sum(-1), axis=1)
    picks = S.cold_start(emb, 8, seed=0, method=method)
    assert picks.dtype == np.int64 and len(set(picks.tolist())) == 8
    assert len(set(which[picks].tolist())) >= (8 if method == "kcenter" else 6)
    assert S.cold_start(emb, 8, seed=0, method=method).tolist() == picks.tolist()
    assert S.cold_start(emb, 8, seed=0, method=method, chunk_size=333).tolist() == picks.tolist()


def test_cold_start_with_duplicates():
    emb = np.zeros((20, 3), np.float32)
    emb[:2] = [[1, 0, 0], [0, 1, 0]]
    for method in ("kcenter", "kmeans++"):
        picks = S.cold_start(emb, 5, method=method)
        assert len(set(picks.tolist())) == 5


# --------------------------------------------------------------------------- CUDA parity


@CUDA
def test_cuda_parity():
    rng = np.random.default_rng(14)
    probs = _dirichlet(rng, 5, 2000, 12)
    emb = rng.normal(size=(2000, 16)).astype(np.float32)
    lab = rng.normal(size=(300, 16)).astype(np.float32)
    for name in S.SCORE_FUNCTIONS:
        cpu = S.score(name, probs).double().numpy()
        gpu = S.score(name, torch.from_numpy(probs).cuda()).double().cpu().numpy()
        np.testing.assert_allclose(gpu, cpu, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(
        S.min_distances(torch.from_numpy(emb).cuda(), lab).cpu().numpy(), S.min_distances(emb, lab), rtol=1e-4
    )
    for strategy in S.STRATEGIES:
        kw = dict(probs=probs, embeddings=emb, labelled_embeddings=lab, epsilon=0.2)
        cpu = S.select_batch(strategy, 20, **kw)
        gpu = S.select_batch(strategy, 20, device="cuda", **kw)
        assert cpu.indices.tolist() == gpu.indices.tolist(), strategy
