"""Cold start: the first batches before any model exists, typical and diverse (TypiClust).

Pure numerics (NumPy, PyTorch; no Django).

Why not k-center
----------------
k-center greedy (``strategies.cold_start(method="kcenter")``) takes the point farthest from those already
chosen: in a sentence-embedding space that is an outlier (a one-word text, a text in another language)
first, and the dense regions where most of the classes live last. With 77 or 150 classes and a batch of 50
the first batches then miss many classes, and the few labels they buy describe rare corners of the pool.

TypiClust (Hacohen, Dekel & Weinshall, "Active learning on a budget", ICML 2022)
--------------------------------------------------------------------------------
1. Cluster the pool and the labelled points together with k-means, ``K = |L| + k`` clusters (at most
   ``max_clusters``, 500 as in the paper), so that each batch can reach clusters no label covers yet.
2. Visit clusters in order of (labelled points in it ascending, size descending): the largest uncovered
   cluster first; clusters smaller than ``min_cluster_size`` (5, as in the paper) are left for last.
3. From each visited cluster take its most *typical* point, ``typicality(x) = 1 / mean_{x' ∈ kNN(x)} ‖x − x'‖``
   with ``n_neighbors`` (20) neighbours among the cluster's own points: the centre of a dense region, which
   is both representative of many pool items and a clean example for the first model.

How it scales (1M × 384 on two cores in seconds)
------------------------------------------------
* k-means (k-means++ seeding, then Lloyd iterations; ``kmeans``) is fitted on a seeded subsample of at most
  ``sample_size`` rows (20,000: at least 40 per cluster up to the 500 clusters), so its cost does not grow
  with the pool; every pool row is then assigned to its nearest centre with one GEMM per chunk of
  ``chunk_size`` rows (``‖c‖² − 2 x·c``; memory ``chunk × K``).
* Typicality is computed only for the clusters a batch picks from, within each one, on at most
  ``typicality_sample`` (1,024) of its members drawn with the seed: one ``m × m`` distance block per cluster
  (``m ≤ 1024``), never a pool-sized matrix. In a cluster larger than that, the most typical point of the
  sample is the densest point the sample sees (the k nearest neighbours then stand for a wider
  neighbourhood of the cluster, which only smooths the density estimate).

A class prior (the zero-shot prior of ``acquisition.zeroshot``) makes the picks cover classes too. Let
``u_c`` be the probability that class c has no labelled point yet: 0 for a class some labelled point is
known to have, else ``Π (1 − p(c|x'))`` over the labelled points of unknown class and the picks so far,
and ``g(x) = Σ_c p(c|x) · u_c`` the probability that x belongs to such a class. An item is then worth
``1 + t · g(x)``: once for the pool items it represents (TypiClust's criterion) and ``g(x)`` for the class it
may add, weighted by ``t``, the accuracy the prior expects of itself (``ZeroShotPrior.reliability_``, the
mean of its top probability: once its temperature is fitted on a few labels this is close to its real
accuracy). So

* among the least covered clusters the one visited has the largest ``size × (1 + t · mean g)`` (mean over
  its members in the k-means sample; plain TypiClust: ``size``);
* within it the pick maximises ``typicality / max typicality in the cluster × (1 + t · g(x))``.

Every uncovered cluster is still visited before a second pick in any cluster, and a cluster or point at
most doubles its weight: the prior reorders, it does not override typicality, and a prior that expects
to be wrong (label names that say little about the texts) hardly moves the picks. Measured with
``bench/cold_start.py``: weighting by ``g`` alone covered more of banking77's classes after two batches (74
of 77 instead of 68) but chased the last uncovered classes with atypical points and lost 5 points of
accuracy at 200 labels; with ``1 + g`` (no ``t``) the accuracy of TypiClust came back on banking77, while
on GoEmotions, whose label names predict 13% of the texts, coverage rose (24.7 of 28 classes after two
batches instead of 20.7) and accuracy fell by 2 points.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

__all__ = ["ClassPrior", "TypicalClusters", "kmeans", "typical_diverse", "typicality"]

#: Nearest neighbours of the typicality estimate (the paper's value).
DEFAULT_NEIGHBOURS = 20
#: Upper bound on k-means clusters (the paper's value).
MAX_CLUSTERS = 500
#: Clusters smaller than this are visited only after every larger one (the paper's value).
MIN_CLUSTER_SIZE = 5
#: Rows k-means is fitted on (a seeded subsample of larger pools).
KMEANS_SAMPLE = 20_000
#: Most Lloyd iterations of k-means (it stops earlier, once at most 0.1% of the points change cluster).
KMEANS_ITERATIONS = 50
#: Members of one cluster its typicality is computed on (a seeded subsample of larger clusters).
TYPICALITY_SAMPLE = 1024
DEFAULT_CHUNK = 65536


class ClassPrior(Protocol):
    """Anything that gives class probabilities of embedding rows (``ZeroShotPrior`` does)."""

    classes_: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


def _rows(x, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (any order) of an array or memory map as float32, read in ascending order."""
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) == 0:
        return np.zeros((0, x.shape[1]), dtype=np.float32)
    order = np.argsort(idx, kind="stable")
    out = np.empty((len(idx), x.shape[1]), dtype=np.float32)
    out[order] = np.asarray(x[idx[order]], dtype=np.float32)
    return out


def typicality(X: np.ndarray, n_neighbors: int = DEFAULT_NEIGHBOURS, *, block: int = 1024) -> np.ndarray:
    """``1 / mean distance to the k nearest other rows`` of every row of ``X`` (m, d), float64 (m,).

    ``k = min(n_neighbors, m − 1)``; one row alone has typicality 1. Rows blocks of ``block`` against all of
    ``X``, so memory is ``block × m`` (callers keep ``m`` small: a cluster or a sample of one).
    """
    X = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32))
    m = X.shape[0]
    if m <= 1:
        return np.ones(m, dtype=np.float64)
    k = max(1, min(int(n_neighbors), m - 1))
    sq = X.square().sum(1)
    out = np.empty(m, dtype=np.float64)
    for s in range(0, m, block):
        rows = X[s : s + block]
        d2 = torch.addmm(sq[s : s + block, None] + sq[None, :], rows, X.T, beta=1.0, alpha=-2.0).clamp_(min=0)
        d2[torch.arange(rows.shape[0]), torch.arange(s, s + rows.shape[0])] = math.inf  # not its own neighbour
        near = torch.topk(d2, k, dim=1, largest=False).values.sqrt_()
        out[s : s + rows.shape[0]] = near.double().mean(1).numpy()
    return 1.0 / (out + 1e-12)


def _nearest_centre(
    rows: torch.Tensor, rows_sq: torch.Tensor, centres: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centre and the squared distance to it (``‖x‖² + ‖c‖² − 2 x·c``)."""
    d = torch.addmm(centres.square().sum(1), rows, centres.T, beta=1.0, alpha=-2.0)
    value, index = d.min(1)
    return index, (value + rows_sq).clamp_(min=0)


def kmeans(
    data: np.ndarray, k: int, *, rng: np.random.Generator, max_iter: int = KMEANS_ITERATIONS, tol: float = 1e-3
) -> np.ndarray:
    """Centres ``(k, d)`` float32 of k-means on ``data`` (m, d): k-means++ seeding drawn from ``rng``, then
    Lloyd iterations until at most ``tol`` of the points change cluster (or ``max_iter``). An empty cluster
    takes the point farthest from its centre. Memory ``m × k``; callers pass a subsample of a large pool."""
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    m = x.shape[0]
    k = max(1, min(int(k), m))
    x_sq = x.square().sum(1)
    centres = torch.empty(k, x.shape[1], dtype=torch.float32)
    first = int(rng.integers(m))
    centres[0] = x[first]
    d2 = (x_sq + x_sq[first] - 2 * (x @ x[first])).clamp_(min=0).double()
    for j in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than clusters: repeat a point (its cluster stays empty)
            centres[j:] = x[first]
            break
        pick = int(np.searchsorted(np.cumsum(d2.numpy()), rng.random() * total, side="right"))
        pick = min(pick, m - 1)
        centres[j] = x[pick]
        new = (x_sq + x_sq[pick] - 2 * (x @ x[pick])).clamp_(min=0).double()
        torch.minimum(d2, new, out=d2)
    assign = None
    for _ in range(max(1, int(max_iter))):
        index, dist = _nearest_centre(x, x_sq, centres)
        if assign is not None and int((index != assign).sum()) <= tol * m:
            break
        assign = index
        counts = torch.bincount(index, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, index, x)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp(min=1)[:, None].float())
        if bool(empty.any()) and float(dist.max()) > 0:
            far = torch.argsort(dist, descending=True, stable=True)[: int(empty.sum())]
            centres[empty.nonzero().squeeze(1)[: len(far)]] = x[far]
    return centres.numpy()


class TypicalClusters:
    """k-means clusters of a pool (and of its labelled points) with per-cluster typicality.

    scikit-learn style: parameters in ``__init__``, ``fit(X, reference=None)`` learns, attributes end in
    ``_``. ``X`` is the pool (an array or a read-only memory map, read in chunks), ``reference`` the labelled
    points (they count in the clusters' sizes and cover their clusters, but are never picked).

    Attributes after ``fit``: ``cluster_centers_`` (K, d), ``labels_`` (n,) cluster of every pool row,
    ``reference_labels_`` (|L|,), ``pool_sizes_`` (K,) pool rows per cluster, ``covered_`` (K,) labelled
    points per cluster, ``n_clusters_``, ``sample_`` the pool positions k-means was fitted on (ascending).
    """

    def __init__(
        self,
        n_clusters: int,
        *,
        n_neighbors: int = DEFAULT_NEIGHBOURS,
        sample_size: int = KMEANS_SAMPLE,
        typicality_sample: int = TYPICALITY_SAMPLE,
        max_iter: int = KMEANS_ITERATIONS,
        random_state: int = 0,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        self.n_clusters = n_clusters
        self.max_iter = max_iter
        self.n_neighbors = n_neighbors
        self.sample_size = sample_size
        self.typicality_sample = typicality_sample
        self.random_state = random_state
        self.chunk_size = chunk_size

    def fit(self, X, reference=None) -> TypicalClusters:
        n = len(X)
        ref = np.zeros((0, X.shape[1]), np.float32) if reference is None else np.asarray(reference, np.float32)
        total = n + len(ref)
        if n == 0:
            raise ValueError("the pool is empty")
        rng = np.random.default_rng(self.random_state)
        take = min(total, int(self.sample_size))
        sample = np.sort(rng.choice(total, size=take, replace=False)) if take < total else np.arange(total)
        in_pool = sample[sample < n]
        data = np.concatenate([_rows(X, in_pool), ref[sample[sample >= n] - n]])
        k = max(1, min(int(self.n_clusters), len(data)))
        centres = kmeans(data, k, rng=rng, max_iter=self.max_iter)
        self.cluster_centers_ = centres
        self.n_clusters_ = k
        self.labels_ = self.predict(X)
        self.reference_labels_ = self.predict(ref) if len(ref) else np.empty(0, np.int64)
        self.pool_sizes_ = np.bincount(self.labels_, minlength=k).astype(np.int64)
        self.covered_ = np.bincount(self.reference_labels_, minlength=k).astype(np.int64)
        self.sample_ = in_pool
        self._seed = int(rng.integers(2**31 - 1))
        self._members: dict[int, np.ndarray] | None = None
        return self

    def predict(self, X) -> np.ndarray:
        """Nearest centre of every row, int64 (n,), computed in chunks of ``chunk_size`` rows."""
        centres = torch.from_numpy(self.cluster_centers_)
        c_sq = centres.square().sum(1)
        out = np.empty(len(X), dtype=np.int64)
        for s in range(0, len(X), self.chunk_size):
            rows = torch.from_numpy(np.ascontiguousarray(X[s : s + self.chunk_size], dtype=np.float32))
            d = torch.addmm(c_sq, rows, centres.T, beta=1.0, alpha=-2.0)
            out[s : s + rows.shape[0]] = d.argmin(1).numpy()
        return out

    def members(self, cluster: int) -> np.ndarray:
        """Pool positions in ``cluster``, ascending."""
        if self._members is None:
            order = np.argsort(self.labels_, kind="stable")
            bounds = np.searchsorted(self.labels_[order], np.arange(self.n_clusters_ + 1))
            self._members = {j: order[bounds[j] : bounds[j + 1]] for j in range(self.n_clusters_)}
        return self._members[cluster]

    def cluster_typicality(self, X, cluster: int) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, typicality)`` of (a seeded sample of at most ``typicality_sample``) members."""
        idx = self.members(cluster)
        if len(idx) > self.typicality_sample:
            rng = np.random.default_rng([self._seed, cluster])
            idx = np.sort(rng.choice(idx, size=self.typicality_sample, replace=False))
        return idx, typicality(_rows(X, idx), self.n_neighbors)


def _uncovered(n_classes: int, known: np.ndarray | None, unknown_probs: np.ndarray | None) -> np.ndarray:
    """Probability that each class has no labelled point yet (``u_c`` of the module docstring)."""
    u = np.ones(n_classes, dtype=np.float64)
    if unknown_probs is not None and len(unknown_probs):
        u *= np.prod(np.clip(1.0 - np.asarray(unknown_probs, np.float64), 0.0, 1.0), axis=0)
    if known is not None:
        known = np.asarray(known, dtype=np.int64)
        u[known[(known >= 0) & (known < n_classes)]] = 0.0
    return u


def typical_diverse(
    X,
    k: int,
    *,
    labelled=None,
    labelled_classes=None,
    prior: ClassPrior | None = None,
    seed: int = 0,
    n_neighbors: int = DEFAULT_NEIGHBOURS,
    max_clusters: int = MAX_CLUSTERS,
    min_cluster_size: int = MIN_CLUSTER_SIZE,
    sample_size: int = KMEANS_SAMPLE,
    typicality_sample: int = TYPICALITY_SAMPLE,
    chunk_size: int = DEFAULT_CHUNK,
) -> np.ndarray:
    """TypiClust batch of ``k`` pool rows (int64 positions into ``X``, in pick order); module docstring.

    ``labelled``: embeddings of the points already labelled or being labelled (|L|, d), or None.
    ``labelled_classes``: their class index where known, -1 where not (|L|,). ``prior``: class
    probabilities (``predict_proba``), to prefer picks of classes no labelled point covers yet.
    Deterministic for a given ``seed``.
    """
    n = len(X)
    k = max(0, min(int(k), n))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    ref = None if labelled is None or len(labelled) == 0 else np.asarray(labelled, dtype=np.float32)
    n_ref = 0 if ref is None else len(ref)
    n_clusters = min(max(1, n_ref + k), max(int(max_clusters), k), n)
    model = TypicalClusters(
        n_clusters,
        n_neighbors=n_neighbors,
        sample_size=sample_size,
        typicality_sample=typicality_sample,
        random_state=seed,
        chunk_size=chunk_size,
    ).fit(X, ref)
    sizes = model.pool_sizes_ + model.covered_
    counts = model.covered_.copy()
    small = sizes < min_cluster_size
    left = model.pool_sizes_.copy()  # pool rows not picked, per cluster
    mass = sizes.astype(np.float64)  # what makes a cluster worth visiting first
    u = sample_probs = None
    if prior is not None:
        known = None if labelled_classes is None else np.asarray(labelled_classes, dtype=np.int64)
        unknown = None
        if ref is not None:
            unknown_rows = ref if known is None else ref[known < 0]
            unknown = prior.predict_proba(unknown_rows) if len(unknown_rows) else None
        u = _uncovered(len(prior.classes_), known, unknown)
        trust = float(np.clip(getattr(prior, "reliability_", 1.0), 0.0, 1.0))
        # each cluster's share of items of uncovered classes, estimated on the k-means sample
        sample_probs = np.asarray(prior.predict_proba(_rows(X, model.sample_)), dtype=np.float64)
        sample_clusters = model.labels_[model.sample_]
        per_cluster = np.bincount(sample_clusters, minlength=model.n_clusters_)

    cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    taken = np.zeros(n, dtype=bool)
    picks: list[int] = []
    while len(picks) < k:
        open_ = np.flatnonzero(left > 0)
        if not len(open_):
            break
        if u is not None:
            # each member counts once for being represented and g(x) for a class it may add
            new_share = np.bincount(sample_clusters, weights=sample_probs @ u, minlength=model.n_clusters_)
            overall = new_share.sum() / max(1, len(sample_clusters))
            share = np.divide(new_share, per_cluster, out=np.full(model.n_clusters_, overall), where=per_cluster > 0)
            mass = sizes * (1.0 + trust * share)
        # among the least covered clusters the one of largest mass; clusters below the minimum size come last
        j = int(open_[np.lexsort((open_, -sizes[open_], -mass[open_], counts[open_], small[open_]))[0]])
        if j not in cache:
            idx, typ = model.cluster_typicality(X, j)
            probs = None if u is None else np.asarray(prior.predict_proba(_rows(X, idx)), dtype=np.float64)
            cache[j] = (idx, typ, probs)
        idx, typ, probs = cache[j]
        free = ~taken[idx]
        if not free.any():  # its sample is used up: a new one from the rest of the cluster
            rest = model.members(j)
            rest = rest[~taken[rest]]
            if len(rest) > typicality_sample:
                rng = np.random.default_rng([seed, j, int(counts[j])])
                rest = np.sort(rng.choice(rest, size=typicality_sample, replace=False))
            idx, typ = rest, typicality(_rows(X, rest), n_neighbors)
            probs = None if u is None else np.asarray(prior.predict_proba(_rows(X, rest)), dtype=np.float64)
            cache[j] = (idx, typ, probs)
            free = np.ones(len(idx), dtype=bool)
        value = typ / typ[free].max()
        if probs is not None:
            value = value * (1.0 + trust * (probs @ u))
        value = np.where(free, value, -np.inf)
        best = int(np.argmax(value))  # lowest position on ties (positions ascend)
        pick = int(idx[best])
        picks.append(pick)
        taken[pick] = True
        counts[j] += 1
        left[j] -= 1
        if probs is not None:
            u *= 1.0 - probs[best]
    if len(picks) < k:  # pragma: no cover - every row belongs to a cluster, so the loop fills k
        rest = np.flatnonzero(~taken)
        picks.extend(np.random.default_rng(seed).choice(rest, size=k - len(picks), replace=False).tolist())
    return np.asarray(picks, dtype=np.int64)
