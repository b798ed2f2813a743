"""A semi-supervised head: label spreading over the pool, distilled into one logistic head (no Django).

The supervised head (``HeadCommittee``, one multinomial logistic model) learns from the labelled items
only, while the pool holds tens of thousands of unlabelled neighbours. ``LabelSpreadingHead`` uses them:

1. **Graph.** Nodes are the labelled items and up to ``max_unlabelled`` unlabelled ones (a uniform,
   seeded sample of those given). ``knn_graph`` finds each node's ``k`` nearest nodes by cosine
   similarity, chunk by chunk (one GEMM and one ``topk`` per block of rows, so the ``n × n``
   similarity matrix never exists); edge weights ``w_ij = max(cos(x_i, x_j), 0)``, symmetrised
   ``W = A + Aᵀ``, normalised ``S = D^{-1/2} W D^{-1/2}`` (Zhou et al., 2004).
2. **Label spreading.** ``Y`` holds the labels (one-hot times the sample weight, each class column
   scaled to sum 1, so a class with many labels does not flood the graph);
   ``F(α) = (1 − α) Σ_{t=0}^{T} α^t S^t Y`` is Zhou's iteration ``F ← αSF + (1 − α)Y`` truncated at
   ``T = n_iter`` steps. The powers ``S^t Y`` are computed once per ``k``; every ``α`` is then a
   weighted sum of them, so a grid of ``α`` costs nothing extra. ``p_LS(x) = F(x)/Σ_c F(x)_c``
   (uniform where no label reached ``x``).
3. **Mixture.** The class probabilities of a node are ``q = λ · p_LR + (1 − λ) · p_LS``, with
   ``p_LR`` the supervised head's.
4. **Distillation.** The served model is one logistic head (a ``HeadCommittee`` with one member),
   refitted on the labelled items (their labels, their weights) and on the unlabelled nodes with
   pseudo-labels ``argmax q`` weighted by their confidence ``ω = 1 − H(q)/log C`` (Iscen et al.,
   2019): a node whose spread scores are flat counts for nothing. It predicts every item, node of
   the graph or not, pool or new, from its vector alone: predicting needs no graph and no stored
   pool scores, costs one matrix product as before, and the state is a head's state.

Every free choice is made by the data
-------------------------------------
``n_neighbors`` (``k``), ``alpha`` and ``mixing`` (``λ``) accept a value or a grid (default grids:
``k ∈ {5, 10, 20}``, ``α ∈ {0.5, 0.75, 0.9, 0.99}``, ``λ ∈ {0, 0.25, 0.5, 0.75, 1}``). With more than
one combination they are chosen by stratified ``cv``-fold cross-validation on the labelled items:
each fold's labels are spread from the other folds' labels over the same graph (all folds at once:
the ``K`` folds are ``K·C`` columns of one ``Y``) and the supervised head is refitted without them,
which gives out-of-fold probabilities of both for every combination. The most accurate combination
wins (on a tie the largest ``λ``, closest to the supervised head). ``λ = 1`` is in the grid: where
the graph does not help on held-out labels the supervised head is returned unchanged (also when no
class has two labels, so nothing can be held out: every combination then scores 0). Guards against
fitting the grid to noise: the grid is coarse and generic (``k`` in octaves, ``α`` from Zhou's 0.99
down to 0.5, ``λ`` in quarters), every combination is judged only on labels its spreading and head
did not see, and the distilled head still has to pass the promotion gate on held-out labels it never
trained on. (A one-standard-error rule towards larger ``λ`` was tried: on BANKING77 it kept ``λ = 0.75``
where ``λ ≤ 0.5`` was better on the test split, so it is not used.) ``cv_results_`` keeps every
combination's out-of-fold accuracy. A refit on more labels can reuse the choices (pass the chosen values, e.g.
``n_neighbors=model.n_neighbors_``): a single combination skips the cross-validation.

``warm_start=True`` starts the supervised fit from the previous head's weights, and each fold's head
of the cross-validation from that fold's previous head (``HeadCommittee``'s warm start): the same
objectives from nearer starting points, for a sequence of fits on growing label sets.

Cost: the graph is ``O(n² d)`` for ``n`` nodes (12,000 × 384: 55 GFLOP), the spreading
``O(T · n k · K C)`` sparse products, the distillation one logistic fit on ``n`` rows; all bounded by
``max_unlabelled``, not by the pool's size. ``KnnGraph.subset`` keeps a graph for a subset of its
nodes (e.g. without held-out items), so two fits on nested node sets build one graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from acquisition.committee import HeadCommittee, _fit_classes, _state_classes
from acquisition.strategies import DEFAULT_CHUNK, _rows

__all__ = ["KnnGraph", "LabelSpreadingHead", "knn_graph", "spread"]

GRAPH_BLOCK_FLOATS = 1 << 25  # similarity entries per block of rows (128 MB of float32)


# ------------------------------------------------------------------------------------- graph
@dataclass
class KnnGraph:
    """Each node's nearest nodes: ``indices`` (n, k) int64 (−1: none), ``similarities`` (n, k)
    float32, best first."""

    indices: np.ndarray
    similarities: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def subset(self, keep) -> KnnGraph:
        """The graph of the nodes ``keep`` (a mask, or distinct indices in any order), renumbered in that order;
        edges to dropped nodes are dropped (those rows keep fewer neighbours)."""
        n = len(self)
        keep = np.asarray(keep)
        rows = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.int64)
        new = np.full(n + 1, -1, dtype=np.int64)  # slot n maps the padding −1 to −1
        new[rows] = np.arange(len(rows))
        idx = new[self.indices[rows]]
        sims = np.where(idx >= 0, self.similarities[rows], 0.0).astype(np.float32)
        # keep the kept neighbours first, best first
        order = np.argsort(idx < 0, axis=1, kind="stable")
        return KnnGraph(np.take_along_axis(idx, order, 1), np.take_along_axis(sims, order, 1))

    def adjacency(self, k: int) -> sp.csr_matrix:
        """``S = D^{-1/2} (A + Aᵀ) D^{-1/2}`` of the ``k``-nearest-neighbour graph, weights
        ``max(similarity, 0)``."""
        n = len(self)
        k = min(k, self.k)
        idx = self.indices[:, :k]
        ok = idx >= 0
        rows = np.repeat(np.arange(n), k)[ok.ravel()]
        cols = idx[ok]
        vals = np.clip(self.similarities[:, :k][ok], 0.0, None).astype(np.float32)
        a = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        w = (a + a.T).tocsr()
        deg = np.asarray(w.sum(1)).ravel()
        inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-30)), 0.0).astype(np.float32)
        d = sp.diags(inv)
        return (d @ w @ d).tocsr().astype(np.float32)


def knn_graph(X, n_neighbors: int, *, chunk_size: int | None = None, device: str = "cpu") -> KnnGraph:
    """The ``n_neighbors`` nearest other rows of every row of ``X`` by cosine similarity.

    Rows are L2-normalised (a zero row stays zero); blocks of ``chunk_size`` rows (default: as many as
    keep a block's similarities within ``GRAPH_BLOCK_FLOATS`` entries) are compared with every row in
    one GEMM and cut to their top ``k`` with ``torch.topk``; a row is never its own neighbour. The
    result does not depend on ``chunk_size``.
    """
    dev = torch.device(device)
    n = len(X)
    k = int(min(n_neighbors, max(n - 1, 0)))
    if k <= 0:
        return KnnGraph(np.full((n, 0), -1, dtype=np.int64), np.zeros((n, 0), dtype=np.float32))
    Z = _rows(X, 0, n, dev)
    Z = Z / Z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    step = int(chunk_size or max(1, GRAPH_BLOCK_FLOATS // max(n, 1)))
    indices = np.empty((n, k), dtype=np.int64)
    sims = np.empty((n, k), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, n, step):
            e = min(n, s + step)
            block = Z[s:e] @ Z.T
            block[torch.arange(e - s, device=dev), torch.arange(s, e, device=dev)] = -float("inf")
            # ties are broken by the lower index, so blocks of any size agree
            v, i = torch.topk(block, k, dim=1, sorted=True)
            indices[s:e] = i.cpu().numpy()
            sims[s:e] = v.cpu().numpy()
    return KnnGraph(indices, sims)


# ----------------------------------------------------------------------------------- spreading
def spread(S: sp.csr_matrix, Y: np.ndarray, alphas, n_iter: int, rows: np.ndarray | None = None) -> np.ndarray:
    """``F(α) = (1 − α) Σ_{t=0}^{T} α^t S^t Y`` for every ``α`` in ``alphas``: ``(len(alphas), r, m)``
    for the ``rows`` of interest (default all), from ``T = n_iter`` sparse products."""
    alphas = np.asarray(alphas, dtype=np.float64)
    P = np.ascontiguousarray(Y, dtype=np.float32)
    take = (lambda a: a) if rows is None else (lambda a: a[rows])
    out = np.zeros((len(alphas),) + take(P).shape, dtype=np.float64)
    for t in range(n_iter + 1):
        if t:
            P = S @ P
        part = take(P).astype(np.float64)
        for j, alpha in enumerate(alphas):
            out[j] += (1.0 - alpha) * alpha**t * part
    return out


def _label_columns(codes: np.ndarray, w: np.ndarray, use: np.ndarray, n_nodes: int, c: int) -> np.ndarray:
    """``Y`` (n_nodes, c): the labelled rows ``i`` (the first ``len(codes)`` nodes) where ``use[i]``,
    one-hot times their weight, each class column scaled to sum 1."""
    Y = np.zeros((n_nodes, c), dtype=np.float32)
    rows = np.flatnonzero(use)
    Y[rows, codes[rows]] = w[rows]
    mass = Y.sum(0)
    Y /= np.where(mass > 0, mass, 1.0)
    return Y


def _normalise_rows(F: np.ndarray) -> np.ndarray:
    """``F/Σ_c F_c`` per row, uniform where the row is all zero (no label reached it)."""
    F = np.clip(F, 0.0, None)
    total = F.sum(-1, keepdims=True)
    uniform = np.full_like(F, 1.0 / F.shape[-1])
    return np.where(total > 0, F / np.where(total > 0, total, 1.0), uniform)


def _folds(codes: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Stratified fold of each labelled row: each class's rows shuffled and dealt round-robin, the
    deal starting where the previous class's ended (so small classes spread over the folds)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(codes), dtype=np.int64)
    start = 0
    for c in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == c))
        fold[rows] = (start + np.arange(len(rows))) % n_folds
        start = (start + len(rows)) % n_folds
    return fold


def _most_accurate(accuracy: dict) -> tuple:
    """The combination ``(k, α, λ)`` with the best out-of-fold accuracy; on a tie the largest ``λ``
    (closest to the supervised head), then the first in grid order."""
    return max(accuracy, key=lambda key: (accuracy[key], key[2]))


def _grid(value) -> tuple:
    if np.ndim(value) == 0:
        return (value,)
    values = tuple(value)
    if not values:
        raise ValueError("a grid must not be empty")
    return values


# ----------------------------------------------------------------------------------- estimator
class LabelSpreadingHead(BaseEstimator):
    """A logistic head refitted on label-spread pseudo-labels of unlabelled pool items (module
    docstring). ``fit(X, y, X_unlabelled=U)``; ``predict_proba`` / ``predict`` /
    ``predict_proba_members`` / ``score`` as ``HeadCommittee`` (one member).

    ``n_neighbors``, ``alpha``, ``mixing``: a value, or a grid chosen by ``cv``-fold cross-validation.
    ``n_iter``: spreading steps ``T``. ``max_unlabelled``: most unlabelled nodes (a seeded uniform
    sample of those given). ``weight_decay``, ``epochs``, ``tol``: the logistic heads'
    (``HeadCommittee``). ``distill_epochs``: L-BFGS iterations of the distillation, which starts from
    the supervised head's weights (a bound on its cost: on BANKING77 the test accuracy was the same,
    within noise, after 20, 40 or 100). Deterministic for a ``random_state``.
    """

    def __init__(
        self,
        n_neighbors=(5, 10, 20),
        alpha=(0.5, 0.75, 0.9, 0.99),
        mixing=(0.0, 0.25, 0.5, 0.75, 1.0),
        n_iter: int = 20,
        cv: int = 4,
        max_unlabelled: int = 10_000,
        weight_decay: float = 0.1,
        epochs: int | None = None,
        distill_epochs: int = 30,
        tol: float = 1e-6,
        random_state: int = 0,
        device: str = "cpu",
        warm_start: bool = False,
    ):
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.mixing = mixing
        self.n_iter = n_iter
        self.cv = cv
        self.max_unlabelled = max_unlabelled
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.distill_epochs = distill_epochs
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.warm_start = warm_start

    # ------------------------------------------------------------------ fit
    def _head(self, warm: HeadCommittee | None = None) -> HeadCommittee:
        if warm is not None:
            return warm
        return HeadCommittee(
            n_members=1,
            hidden=0,
            bootstrap=False,
            weight_decay=self.weight_decay,
            epochs=self.epochs,
            tol=self.tol,
            random_state=self.random_state,
            device=self.device,
            warm_start=True,
        )

    def _check_params(self) -> tuple[tuple, tuple, tuple]:
        ks, alphas, mixes = _grid(self.n_neighbors), _grid(self.alpha), _grid(self.mixing)
        if any(int(k) < 1 for k in ks):
            raise ValueError("n_neighbors must be >= 1")
        if any(not 0.0 < float(a) < 1.0 for a in alphas):
            raise ValueError("alpha must be in (0, 1)")
        if any(not 0.0 <= float(m) <= 1.0 for m in mixes):
            raise ValueError("mixing must be in [0, 1]")
        if self.n_iter < 1 or self.cv < 2 or self.max_unlabelled < 0:
            raise ValueError("n_iter must be >= 1, cv >= 2 and max_unlabelled >= 0")
        return tuple(int(k) for k in ks), tuple(float(a) for a in alphas), tuple(float(m) for m in mixes)

    def fit(
        self,
        X,
        y,
        *,
        X_unlabelled=None,
        classes=None,
        sample_weight=None,
        n_classes: int | None = None,
        graph: KnnGraph | None = None,
    ) -> LabelSpreadingHead:
        """Fit on the labelled ``(X, y)`` and the unlabelled rows ``X_unlabelled`` (module docstring).

        ``classes`` / ``n_classes`` / ``sample_weight`` as ``HeadCommittee.fit``. ``graph``: a
        ``KnnGraph`` of the nodes ``[X; X_unlabelled]`` in that order (at least ``max(n_neighbors)``
        neighbours), e.g. built once for several fits; by default it is built here (then
        ``X_unlabelled`` is first cut to a seeded sample of ``max_unlabelled`` rows; with ``graph``
        given, every row is a node). Without unlabelled rows the supervised head is fitted alone.
        """
        ks, alphas, mixes = self._check_params()
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        n = len(X)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},)")
        if n == 0:
            raise ValueError("cannot fit on zero samples")
        classes_, codes = _fit_classes(y, classes, n_classes)
        w = np.ones(n, dtype=np.float32) if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        if w.shape != (n,) or (w < 0).any():
            raise ValueError("sample_weight must be (n,) and non-negative")
        c = len(classes_)
        rng = np.random.default_rng(np.random.SeedSequence(self.random_state).spawn(1)[0])

        U = np.empty((0, X.shape[1]), dtype=np.float32)
        if X_unlabelled is not None and len(X_unlabelled):
            if graph is None and len(X_unlabelled) > self.max_unlabelled:
                pick = np.sort(rng.choice(len(X_unlabelled), self.max_unlabelled, replace=False))
                U = np.asarray(X_unlabelled[pick])
            else:
                U = np.asarray(X_unlabelled)
            U = U.astype(np.float32, copy=False).reshape(len(U), -1)
            if U.shape[1] != X.shape[1]:
                raise ValueError("X_unlabelled must have as many columns as X")

        warm = getattr(self, "head_", None) if self.warm_start else None
        supervised = self._head(warm)
        supervised.fit(X, classes_[codes], classes=classes_, sample_weight=w)
        self.classes_ = classes_
        self.n_classes_ = c
        self.n_features_in_ = X.shape[1]
        self.n_unlabelled_ = int(len(U))
        self.cv_results_ = {}
        self.n_neighbors_, self.alpha_, self.mixing_ = ks[0], alphas[0], 1.0
        if len(U) == 0 or c < 2:
            self.head_ = supervised
            return self

        nodes = np.concatenate([X, U])
        if graph is None:
            graph = knn_graph(nodes, max(ks), device=self.device)
        elif len(graph) != len(nodes):
            raise ValueError(f"graph has {len(graph)} nodes, [X; X_unlabelled] has {len(nodes)}")
        if max(ks) > graph.k:
            raise ValueError(f"graph has {graph.k} neighbours per node, n_neighbors asks for {max(ks)}")

        if len(ks) * len(alphas) * len(mixes) > 1:
            k, alpha, mix = self._select(graph, X, classes_, codes, w, ks, alphas, mixes, len(nodes))
        else:
            k, alpha, mix = ks[0], alphas[0], mixes[0]
        self.n_neighbors_, self.alpha_, self.mixing_ = k, alpha, mix
        if mix >= 1.0:
            self.head_ = supervised
            return self

        S = graph.adjacency(k)
        p_ls = _normalise_rows(
            spread(S, _label_columns(codes, w, np.ones(n, dtype=bool), len(nodes), c), [alpha], self.n_iter)[0][n:]
        )
        q = mix * supervised.predict_proba(U).astype(np.float64) + (1.0 - mix) * p_ls
        entropy = -(q * np.log(np.clip(q, 1e-12, None))).sum(1)
        omega = np.clip(1.0 - entropy / math.log(c), 0.0, 1.0).astype(np.float32)
        pseudo = q.argmax(1)
        keep = omega > 0
        self.pseudo_label_weight_ = float(omega.sum())
        # distil: the supervised head, refitted from its own weights on labels and pseudo-labels
        supervised.set_params(epochs=self.distill_epochs)
        supervised.fit(
            np.concatenate([X, U[keep]]),
            classes_[np.concatenate([codes, pseudo[keep]])],
            classes=classes_,
            sample_weight=np.concatenate([w, omega[keep]]),
        )
        supervised.set_params(epochs=self.epochs)
        self.head_ = supervised
        return self

    def _select(self, graph, X, classes_, codes, w, ks, alphas, mixes, n_nodes) -> tuple[int, float, float]:
        """Out-of-fold accuracy of every (k, α, λ) on the labelled rows; the one-standard-error choice."""
        n, c = len(codes), len(classes_)
        n_folds = int(min(self.cv, max(2, np.bincount(codes).max())))
        fold = _folds(codes, n_folds, self.random_state)
        # Y of all folds at once: block f holds the labels outside fold f
        Y = np.zeros((n_nodes, n_folds * c), dtype=np.float32)
        for f in range(n_folds):
            Y[:, f * c : (f + 1) * c] = _label_columns(codes, w, fold != f, n_nodes, c)
        p_lr = np.zeros((n, c), dtype=np.float64)
        # with warm_start, each fold's head starts from that fold's head of the previous fit
        previous = getattr(self, "_fold_heads", None) if self.warm_start else None
        heads = previous if previous is not None and len(previous) == n_folds else [None] * n_folds
        for f in range(n_folds):
            train, test = fold != f, fold == f
            if not test.any():
                continue
            heads[f] = self._head(heads[f])
            heads[f].fit(X[train], classes_[codes[train]], classes=classes_, sample_weight=w[train])
            p_lr[test] = heads[f].predict_proba(X[test])
        self._fold_heads = heads
        rows = np.arange(n)
        block = fold[:, None] * c + np.arange(c)[None, :]  # each labelled row's own out-of-fold block
        weights = (w / w.sum()).astype(np.float64)
        accuracy = {}
        for k in ks:
            F = spread(graph.adjacency(k), Y, alphas, self.n_iter, rows=rows)  # (A, n, K·C)
            for j, alpha in enumerate(alphas):
                p_ls = _normalise_rows(np.take_along_axis(F[j], block, 1))
                for mix in mixes:
                    hits = (mix * p_lr + (1.0 - mix) * p_ls).argmax(1) == codes
                    accuracy[(k, alpha, mix)] = float(weights @ hits)
        self.cv_results_ = {f"k={k} alpha={a:g} mixing={m:g}": acc for (k, a, m), acc in accuracy.items()}
        return _most_accurate(accuracy)

    # ------------------------------------------------------------------ predict
    @property
    def n_outputs_(self) -> int:
        return 1

    def predict_proba(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        check_is_fitted(self, "head_")
        return self.head_.predict_proba(X, chunk_size=chunk_size)

    def predict_proba_members(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        check_is_fitted(self, "head_")
        return self.head_.predict_proba_members(X, chunk_size=chunk_size)

    def predict(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        return self.classes_[self.predict_proba(X, chunk_size=chunk_size).argmax(1)]

    def score(self, X, strategy: str, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """The acquisition score of ``strategy`` (``HeadCommittee.score`` of the distilled head)."""
        check_is_fitted(self, "head_")
        return self.head_.score(X, strategy, chunk_size=chunk_size)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, the choices made and the distilled head's state; ``torch.save``-able and
        loadable with ``torch.load(..., weights_only=True)``."""
        check_is_fitted(self, "head_")
        params = {key: (list(value) if isinstance(value, tuple) else value) for key, value in self.get_params().items()}
        return {
            "kind": "label_spreading",
            "params": params,
            "classes": self.classes_.tolist(),
            "n_classes": self.n_classes_,
            "n_features_in": self.n_features_in_,
            "chosen": {
                "n_neighbors": self.n_neighbors_,
                "alpha": self.alpha_,
                "mixing": self.mixing_,
                "n_unlabelled": self.n_unlabelled_,
            },
            "cv_results": dict(self.cv_results_),
            "head": self.head_.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], *, device: str | None = None) -> LabelSpreadingHead:
        params = dict(state["params"])
        if device is not None:
            params["device"] = device
        model = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
        model.n_classes_ = int(state["n_classes"])
        model.n_features_in_ = int(state["n_features_in"])
        model.classes_ = _state_classes(state, model.n_classes_)
        chosen = state["chosen"]
        model.n_neighbors_ = int(chosen["n_neighbors"])
        model.alpha_ = float(chosen["alpha"])
        model.mixing_ = float(chosen["mixing"])
        model.n_unlabelled_ = int(chosen["n_unlabelled"])
        model.cv_results_ = dict(state.get("cv_results") or {})
        model.head_ = HeadCommittee.from_state_dict(state["head"], device=device)
        return model

    def summary(self) -> dict[str, Any]:
        """The choices made, for a version's record."""
        check_is_fitted(self, "head_")
        return {
            "n_neighbors": self.n_neighbors_,
            "alpha": self.alpha_,
            "mixing": self.mixing_,
            "n_unlabelled": self.n_unlabelled_,
            "cv_accuracy": max(self.cv_results_.values()) if self.cv_results_ else None,
        }
