"""Multi-label classification on frozen embeddings: a one-vs-rest sigmoid head, its metrics, and the
acquisition scores of tag sets.

Pure numerics (NumPy + PyTorch + scikit-learn, no Django). An item carries a *tag set*, any subset of
the project's ``L`` labels (possibly empty); tag sets are ``(n, L)`` 0/1 indicator arrays ``Y`` and the
model gives ``P`` ``(n, L)``, ``P[i, l] = P(tag l present | x_i)``, one independent sigmoid per tag.

The head (:class:`OneVsRestHead`)
---------------------------------
``P[:, l] = σ(x W_l + b_l)``: one logistic regression per tag, all tags in one PyTorch model with ``L``
outputs, fitted together by full-batch L-BFGS on the binary cross-entropy with an L2 penalty in
scikit-learn's scale (``weight_decay`` plays ``1/C``; default 0.1, the single-label head's)::

    J = Σ_l ( Σ_i w_i · BCE(y_il, σ(x_i W_l + b_l)) + weight_decay/2 · ‖W_l‖² ) / Σ_i w_i

A tag whose training rows are all negative (or all positive) carries no information to separate
anything: its weights are 0 and its bias the smoothed base rate ``logit((n₊ + ½)/(n + 1))``.

Thresholds (``thresholds_``, one per tag) maximise F1, estimated one of two ways:

* with the unlabelled pool (``fit(..., X_unlabelled=U)``, what the app and the benchmark do): the
  *expected* F1 over the pool's predicted probabilities. Predicting the ``k`` most probable pool rows
  present has expected F1 ≈ ``2 Σ_{i≤k} p₍ᵢ₎ / (Σ_i p_i + k)`` (the plug-in / decision-theoretic estimate of
  Ye, Chai, Lee & Chieu, "Optimizing F-measures: a tale of two approaches", ICML 2012; at the optimum the
  threshold is half the best F1, Lipton, Elkan & Naryanaswamy, ECML 2014); the threshold is the cut
  halfway between the ``k``-th and the next probability. It needs no held-out labels: it reads the
  distribution the model will be used on (tens of thousands of rows), where a few hundred labels give a
  noisy F1 curve, and an active-learning sample is not distributed like the pool. On GoEmotions
  (``bench/multilabel_curve.py --thresholds cv`` against the default, seed 0, all seven strategies, five
  checkpoints from 200 to 2,000 labels) it gave a higher test micro-F1 at all 35 points (by 0.003 to
  0.14) and a higher macro-F1 at 33 of them (mmc at 500 and 1,000 labels the exceptions). At most
  ``max_unlabelled`` pool rows are read (a seeded uniform sample).
* without it: on held-out predictions. The training rows are dealt into ``cv`` folds (stratified: tags
  from the rarest up, each tag's rows dealt round-robin, so a rare tag's positives spread over the
  folds); a model fitted without each fold predicts it, which gives an out-of-fold probability for every
  training row; the threshold maximises the F1 of those (the cut halfway between the last probability
  predicted present and the next one; among equal F1 the highest cut). The fold models are fitted
  together in one L-BFGS run (one matrix product for all of them per step), then the final model alone
  on every row; with fewer than ``2·cv`` rows every threshold stays 0.5.

Either way a tag with fewer than ``min_positives`` positive rows (default 3), or no negative one, keeps
0.5: one or two positives say nothing about where its boundary lies.

``weight_decay`` may be a sequence: the value with the lowest out-of-fold binary cross-entropy (mean
over rows and tags) is kept, from the same folds and the same run of fold models (the folds are fitted
for this even when the thresholds come from the pool).

Metrics (:func:`multilabel_metrics`)
------------------------------------
micro-F1 ``2ΣTP / (2ΣTP + ΣFP + ΣFN)`` over all (item, tag) cells; macro-F1 the mean over tags of the
per-tag F1 (0 for a tag never present nor predicted: scikit-learn's ``zero_division=0``); subset
accuracy (the predicted set equals the true set); Hamming loss (share of wrong cells); per tag F1 and
support; binary ECE per tag, ``Σ_b |B_b|/n · |mean(y ∈ B_b) − mean(p ∈ B_b)|`` over ``ECE_BINS``
equal-width bins of ``P(tag present)``, and its mean over tags.

Acquisition scores (one per pool row, higher = ask first; all chunked)
----------------------------------------------------------------------
==================  ==================================================================================
mean_entropy        ``(1/L) Σ_l H(p_l)``, ``H(p) = −p log p − (1−p) log(1−p)`` (nats): binary
                    relevance uncertainty (e.g. Esuli & Sebastiani, ECIR 2009, "average" aggregation)
max_entropy         ``max_l H(p_l)``: the most uncertain tag (Esuli & Sebastiani's "max" aggregation)
mmc                 maximum model change / max loss (Yang, Sun, Wang, Zhang, Hua, Chen: "Effective
                    multi-label active learning for text classification", KDD 2009): with SVM outputs
                    ``f_l = 2 p_l − 1`` and the predicted tag vector ``ŷ`` (the ``k̂`` most probable tags
                    present, ``k̂`` the predicted cardinality) the score ``Σ_l (1 − ŷ_l f_l)/2`` is
                    ``Σ_{l∈ŷ} (1 − p_l) + Σ_{l∉ŷ} p_l``: the expected number of wrong tags of ``ŷ``
cardinality_margin  label-cardinality-aware margin: with ``s_l = p_l − t_l`` (distance of each tag to its
                    threshold) sorted ``s₍₁₎ ≥ … ≥ s₍L₎`` and ``k̂`` the predicted cardinality, the
                    score ``−(s₍k̂₎ − s₍k̂₊₁₎)``, the gap at the boundary of the predicted set between its
                    weakest member and the strongest tag left out (``s₍₀₎ = s₍L₊₁₎ = 0``: the threshold
                    itself when the set is empty or full); in ``[−2, 0]``, 0 when a tag sits on its
                    threshold. With one tag and ``k̂ ≤ 1`` it is ``−|p − t|``, binary margin
==================  ==================================================================================

Predicted cardinality ``k̂``: the number of tags at or above their thresholds (``thresholds``; 0.5 when
none are given), at least 1 when empty sets are not allowed (``allow_empty=False``: the most probable
tag is then predicted, as :meth:`OneVsRestHead.predict` does), or an explicit per-row ``cardinality``.

:func:`select_batch_multilabel` turns a score into a batch (``acquisition.strategies.select_batch`` on
precomputed scores: exact top-k, or MSAL's greedy ``U + α · min distance to the labelled set`` with the
multi-label uncertainty as ``U``, or core-set), with the same ε exploration share.
:data:`MULTILABEL_STRATEGIES` maps the project's strategy names to these. The single-label
``least_confidence``, ``qbc`` and ``bald`` are not offered for multi-label projects: least confidence
of a tag set is what ``max_entropy`` measures, and a committee of one-vs-rest heads (QBC / BALD) is not
built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from acquisition.evaluation import ECE_BINS
from acquisition.strategies import DEFAULT_CHUNK, DEFAULT_MSAL_ALPHA, Selection, _rows, select_batch

__all__ = [
    "DEFAULT_MULTILABEL_STRATEGY",
    "MULTILABEL_SCORES",
    "MULTILABEL_STRATEGIES",
    "NOT_OFFERED",
    "OneVsRestHead",
    "binary_ece",
    "cardinality_margin",
    "max_entropy",
    "mean_entropy",
    "mmc",
    "multilabel_metrics",
    "predict_tags",
    "predicted_cardinality",
    "score_multilabel",
    "select_batch_multilabel",
]

ArrayLike = torch.Tensor | np.ndarray


# =========================================================================== the head


def _check_tags(Y, n: int | None = None) -> np.ndarray:
    """``Y`` as a float32 ``(n, L)`` 0/1 array (bool or integer 0/1 accepted)."""
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] == 0:
        raise ValueError(f"Y must be a 2-D (n, L) indicator array with L >= 1, got shape {Y.shape}")
    if n is not None and Y.shape[0] != n:
        raise ValueError(f"Y has {Y.shape[0]} rows for {n} rows of X")
    if Y.size and not np.isin(Y, (0, 1)).all():
        raise ValueError("Y must hold only 0 and 1")
    return Y.astype(np.float32)


def _tag_folds(Y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold of each row, stratified for tag sets: tags from the rarest up, each tag's rows not dealt yet
    shuffled and dealt round-robin (the deal continuing where the previous tag's ended), then the rows
    with no tag; a rare tag's positives thus spread over the folds."""
    rng = np.random.default_rng(seed)
    n = len(Y)
    fold = np.full(n, -1, dtype=np.int64)
    start = 0
    counts = Y.sum(0)
    for tag in np.argsort(counts, kind="stable"):
        rows = np.flatnonzero((Y[:, tag] > 0) & (fold < 0))
        if rows.size == 0:
            continue
        rows = rng.permutation(rows)
        fold[rows] = (start + np.arange(rows.size)) % n_folds
        start = (start + rows.size) % n_folds
    rest = rng.permutation(np.flatnonzero(fold < 0))
    fold[rest] = (start + np.arange(rest.size)) % n_folds
    return fold


def _f1_threshold(q: np.ndarray, y: np.ndarray) -> float:
    """The cut maximising F1 of ``q ≥ cut`` against ``y`` (module docstring): halfway between the lowest
    probability predicted present and the next one down; among equal F1 the highest cut."""
    order = np.argsort(-q, kind="stable")
    qs, ys = q[order], y[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(q) + 1)
    f1 = 2.0 * tp / (ys.sum() + k)
    valid = np.ones(len(q), dtype=bool)
    valid[:-1] = qs[:-1] > qs[1:]  # cut only between distinct probabilities
    f1 = np.where(valid, f1, -1.0)
    j = int(np.argmax(f1))
    lower = qs[j + 1] if j + 1 < len(qs) else 0.0
    return float((qs[j] + lower) / 2.0)


def _expected_f1_threshold(q: np.ndarray) -> float:
    """The cut maximising the plug-in expected F1 of ``q ≥ cut`` when ``q`` are calibrated probabilities:
    predicting the ``k`` most probable rows present gives ``E[TP] ≈ Σ_{i≤k} q₍ᵢ₎`` and ``E[#present] ≈ Σ_i q_i``,
    so ``F1 ≈ 2 Σ_{i≤k} q₍ᵢ₎ / (Σ_i q_i + k)``; the cut lies halfway between the ``k``-th and ``(k+1)``-th
    probability, among equal values the highest cut."""
    qs = np.sort(q)[::-1]
    if qs.size == 0:
        return 0.5
    ef1 = 2.0 * np.cumsum(qs) / (qs.sum() + np.arange(1, qs.size + 1))
    valid = np.ones(qs.size, dtype=bool)
    valid[:-1] = qs[:-1] > qs[1:]
    j = int(np.argmax(np.where(valid, ef1, -1.0)))
    lower = qs[j + 1] if j + 1 < qs.size else 0.0
    return float((qs[j] + lower) / 2.0)


class OneVsRestHead(BaseEstimator):
    """One sigmoid logistic output per tag on frozen embeddings, per-tag F1 thresholds from the unlabelled
    pool's expected F1 or by cross-validation (module docstring).

    Parameters: ``weight_decay`` the L2 penalty ``1/C`` (a float, or a sequence chosen by out-of-fold
    cross-entropy); ``cv`` folds for the thresholds when no pool is given (0 or 1: every threshold 0.5);
    ``min_positives`` the fewest positive rows for a tuned threshold; ``max_unlabelled`` the most pool rows
    read for the thresholds; ``allow_empty``: when False an item with no tag above its
    threshold gets its most probable tag; ``epochs`` L-BFGS iterations (default 100), ``tol`` its gradient
    tolerance; ``warm_start``: a refit starts from the previous weights when they fit (same features,
    tags and number of fitted models); ``random_state`` fixes the folds; ``device`` ``"cpu"`` / ``"cuda"``.

    Fitted attributes: ``classes_`` (the tag names or ``0..L−1``), ``n_labels_``, ``n_features_in_``,
    ``coef_`` ``(L, d)`` and ``intercept_`` ``(L,)`` (NumPy, as scikit-learn's), ``thresholds_`` ``(L,)``,
    ``weight_decay_`` (the value used), ``tuned_`` ``(L,)`` bool (threshold tuned, not 0.5),
    ``threshold_source_`` (``"pool"``, ``"cv"`` or ``"none"``), ``cv_loss_`` (out-of-fold cross-entropy per
    ``weight_decay`` value, empty without CV).
    """

    def __init__(
        self,
        weight_decay: float | Sequence[float] = 0.1,
        cv: int = 5,
        min_positives: int = 3,
        allow_empty: bool = True,
        max_unlabelled: int = 100_000,
        epochs: int | None = None,
        tol: float = 1e-6,
        random_state: int = 0,
        device: str = "cpu",
        warm_start: bool = False,
    ):
        self.weight_decay = weight_decay
        self.cv = cv
        self.min_positives = min_positives
        self.allow_empty = allow_empty
        self.max_unlabelled = max_unlabelled
        self.epochs = epochs
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.warm_start = warm_start

    @property
    def _dev(self) -> torch.device:
        return torch.device(self.device)

    def _decays(self) -> tuple[float, ...]:
        values = (self.weight_decay,) if np.ndim(self.weight_decay) == 0 else tuple(self.weight_decay)
        if not values or any(float(v) < 0 for v in values):
            raise ValueError("weight_decay must be >= 0 (or a non-empty sequence of such values)")
        return tuple(float(v) for v in values)

    # ------------------------------------------------------------------ fit

    def fit(self, X, Y, *, labels=None, sample_weight=None, X_unlabelled=None) -> OneVsRestHead:
        """Fit on embeddings ``X`` ``(n, d)`` and tag sets ``Y`` ``(n, L)`` (0/1). ``labels``: the names of
        the ``L`` columns (``classes_``; default ``0..L−1``). ``sample_weight`` ``(n,)`` ≥ 0 (default 1).
        ``X_unlabelled`` ``(m, d)``: rows of the pool without labels (array, memmap or tensor; at most
        ``max_unlabelled`` of them, a seeded uniform sample, are read); when given, the thresholds maximise
        the expected F1 over their predicted probabilities instead of the cross-validated F1 (module
        docstring)."""
        if self.cv < 0 or self.min_positives < 1 or self.max_unlabelled < 1:
            raise ValueError("cv must be >= 0, min_positives >= 1 and max_unlabelled >= 1")
        decays = self._decays()
        dev = self._dev
        Xt = _rows(X, 0, len(X), dev)
        n, d = Xt.shape
        if n == 0:
            raise ValueError("cannot fit on zero samples")
        Y = _check_tags(Y, n)
        L = Y.shape[1]
        classes = np.arange(L) if labels is None else np.asarray(labels)
        if classes.shape != (L,):
            raise ValueError(f"labels must name the {L} columns of Y")
        w = np.ones(n, dtype=np.float32)
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float32)
            if w.shape != (n,) or bool((w < 0).any()):
                raise ValueError("sample_weight must be (n,) and non-negative")
        use_pool = X_unlabelled is not None and len(X_unlabelled) > 0
        if use_pool and int(X_unlabelled.shape[1]) != d:
            raise ValueError(f"X_unlabelled has {X_unlabelled.shape[1]} features, X {d}")

        positives = Y.sum(0)
        tunable = (positives >= self.min_positives) & (positives < n)
        k = self.cv if self.cv >= 2 and n >= 2 * self.cv else 0
        Yt = torch.from_numpy(Y).to(dev)
        best = 0
        thresholds = np.full(L, 0.5)
        self.cv_loss_ = {}
        self.threshold_source_ = "none"
        if k and (not use_pool or len(decays) > 1):
            fold = _tag_folds(Y, k, self.random_state)
            # one model per (weight decay, held-out fold), all fitted in one run
            models = [(g, f) for g in range(len(decays)) for f in range(k)]
            member_w = np.stack([(fold != f) * w for _, f in models], 1)  # (n, M)
            W, b = self._fit_models(Xt, Yt, Y, member_w, [decays[g] for g, _ in models], "cv")
            oof = np.empty((len(decays), n, L), dtype=np.float32)
            with torch.inference_mode():
                for j, (g, f) in enumerate(models):
                    rows = np.flatnonzero(fold == f)
                    z = torch.addmm(b[j], Xt[torch.from_numpy(rows).to(dev)], W[:, j])
                    oof[g, rows] = torch.sigmoid(z).cpu().numpy()
            q = np.clip(oof.astype(np.float64), 1e-7, 1 - 1e-7)
            bce = -(Y * np.log(q) + (1 - Y) * np.log1p(-q))  # (G, n, L)
            losses = (bce * w[None, :, None]).sum((1, 2)) / (max(float(w.sum()), 1e-12) * L)
            self.cv_loss_ = {decays[g]: float(losses[g]) for g in range(len(decays))}
            best = int(np.argmin(losses))
            if not use_pool:
                for tag in np.flatnonzero(tunable):
                    thresholds[tag] = _f1_threshold(oof[best, :, tag].astype(np.float64), Y[:, tag])
                self.threshold_source_ = "cv"
        W, b = self._fit_models(Xt, Yt, Y, w[:, None], [decays[best]], "final")
        self.classes_ = classes
        self.n_labels_ = L
        self.n_features_in_ = d
        self.weight_decay_ = decays[best]
        self.weights_ = {"W": W[:, 0].contiguous(), "b": b[0].contiguous()}
        if use_pool:
            m = len(X_unlabelled)
            rows = np.arange(m)
            if m > self.max_unlabelled:
                rows = np.sort(np.random.default_rng(self.random_state).choice(m, self.max_unlabelled, replace=False))
            P = self._pool_proba(X_unlabelled, rows)
            for tag in np.flatnonzero(tunable):
                thresholds[tag] = _expected_f1_threshold(P[:, tag])
            self.threshold_source_ = "pool"
        elif self.threshold_source_ == "none":
            tunable[:] = False
        self.thresholds_ = thresholds
        self.tuned_ = tunable.copy()
        return self

    def _pool_proba(self, pool, rows: np.ndarray) -> np.ndarray:
        """Probabilities of the pool rows ``rows`` (sorted), read ``DEFAULT_CHUNK`` rows at a time (a memmap
        or a tensor is never copied whole): float64 ``(len(rows), L)``."""
        out = np.empty((len(rows), self.n_labels_), dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, len(rows), DEFAULT_CHUNK):
                r = rows[s : s + DEFAULT_CHUNK]
                if isinstance(pool, torch.Tensor):
                    x = pool[torch.from_numpy(r).to(pool.device)].to(self._dev, torch.float32)
                elif len(r) == len(pool):
                    x = _rows(pool, 0, len(pool), self._dev)
                else:
                    x = _rows(pool[r], 0, len(r), self._dev)
                out[s : s + len(r)] = self._proba_chunk(x).double().cpu().numpy()
        return out

    def _fit_models(self, X, Yt, Y, member_w, decays, slot):
        """Fit ``M`` models (the columns of ``member_w`` ``(n, M)``: each model's row weights) in one L-BFGS
        run; returns ``W`` ``(d, M, L)`` and ``b`` ``(M, L)``, constant tags set to their smoothed base rate.
        ``slot`` names the warm-start memory (the fold models and the final model are kept apart)."""
        dev = X.device
        n, d = X.shape
        L = Y.shape[1]
        m = member_w.shape[1]
        pos = member_w.T @ Y  # (M, L): weighted rows with the tag present
        tot = member_w.sum(0)[:, None]  # (M, 1)
        active = (pos > 0) & (pos < tot)  # a tag with both outcomes among the model's rows
        prior = np.log((pos + 0.5) / (tot + 1.0)) - np.log((tot - pos + 0.5) / (tot + 1.0))
        memory = getattr(self, "_warm", None) or {}
        init = memory.get(slot) if self.warm_start else None
        if init is not None and (tuple(init["W"].shape), tuple(init["b"].shape)) != ((d, m * L), (m * L,)):
            init = None
        W, b = self._fit_logistic(
            X,
            Yt,
            torch.from_numpy(member_w.astype(np.float32)).to(dev),
            torch.from_numpy(active.astype(np.float32)).to(dev),
            torch.tensor(decays, dtype=torch.float32, device=dev),
            m,
            L,
            init,
        )
        memory[slot] = {"W": W.clone(), "b": b.clone()}
        self._warm = memory
        act = torch.from_numpy(active).to(dev)
        W = torch.where(act[None], W.view(d, m, L), torch.zeros((), device=dev))
        b = torch.where(act, b.view(m, L), torch.from_numpy(prior.astype(np.float32)).to(dev))
        return W, b

    def _fit_logistic(self, X, Y, member_w, active, decays, m, L, init):
        """All models at once: logits ``(n, M, L)`` from one ``addmm``; model j's objective is
        ``Σ_i w_ij Σ_l a_jl · BCE + wd_j/2 · ‖W_j‖²`` over ``Σ_i w_ij`` (``a_jl`` = tag l has both outcomes
        among model j's rows; the other tags are set to their base rate afterwards)."""
        n, d = X.shape
        if init is not None:
            W = init["W"].detach().clone().requires_grad_()
            b = init["b"].detach().clone().requires_grad_()
        else:
            W = torch.zeros(d, m * L, device=X.device, requires_grad=True)
            b = torch.zeros(m * L, device=X.device, requires_grad=True)
        totals = member_w.sum(0).clamp_min(1e-12)  # (M,)
        target = Y[:, None, :].expand(n, m, L)
        cell_w = member_w[:, :, None] * active[None]  # (n, M, L)
        opt = torch.optim.LBFGS(
            [W, b],
            lr=1.0,
            max_iter=self.epochs or 100,
            history_size=10,
            tolerance_grad=self.tol,
            tolerance_change=1e-9,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            logits = torch.addmm(b, X, W).view(n, m, L)
            bce = F.binary_cross_entropy_with_logits(logits, target, weight=cell_w, reduction="none")
            per_model = bce.sum((0, 2))
            penalty = W.view(d, m, L).square().sum((0, 2))
            loss = ((per_model + 0.5 * decays * penalty) / totals).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return W.detach(), b.detach()

    # ------------------------------------------------------------------ predict

    @property
    def coef_(self) -> np.ndarray:
        check_is_fitted(self, "weights_")
        return self.weights_["W"].T.cpu().numpy()

    @property
    def intercept_(self) -> np.ndarray:
        check_is_fitted(self, "weights_")
        return self.weights_["b"].cpu().numpy()

    def _proba_chunk(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.addmm(self.weights_["b"], x, self.weights_["W"]))

    def predict_proba(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """``P(tag present)``: NumPy float32 ``(n, L)``, computed ``chunk_size`` rows at a time."""
        check_is_fitted(self, "weights_")
        n = len(X)
        out = np.empty((n, self.n_labels_), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, n, chunk_size):
                x = _rows(X, s, s + chunk_size, self._dev)
                out[s : s + x.shape[0]] = self._proba_chunk(x).cpu().numpy()
        return out

    def predict(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """Tag sets: ``P ≥ thresholds_`` (and the most probable tag where none passes, unless
        ``allow_empty``), NumPy uint8 ``(n, L)``."""
        check_is_fitted(self, "weights_")
        n = len(X)
        out = np.empty((n, self.n_labels_), dtype=np.uint8)
        for s in range(0, n, chunk_size):
            p = self.predict_proba(X[s : s + chunk_size], chunk_size=chunk_size)
            out[s : s + len(p)] = predict_tags(p, self.thresholds_, allow_empty=self.allow_empty)
        return out

    def score(self, X, strategy: str, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """Acquisition score ``strategy`` (a key of :data:`MULTILABEL_SCORES` or a probability-based name of
        :data:`MULTILABEL_STRATEGIES`) of every row of ``X`` with this head's thresholds, chunk by chunk so
        the ``(n, L)`` probabilities never exist at once: NumPy float64 ``(n,)``."""
        check_is_fitted(self, "weights_")
        fn = _score_function(strategy)
        n = len(X)
        out = np.empty(n, dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, n, chunk_size):
                x = _rows(X, s, s + chunk_size, self._dev)
                p = self._proba_chunk(x)
                out[s : s + x.shape[0]] = _as_numpy(
                    fn(p, thresholds=self.thresholds_, allow_empty=self.allow_empty, chunk_size=chunk_size)
                )
        return out

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, learned tensors and thresholds (on CPU); ``torch.save``-able and loadable with
        ``torch.load(..., weights_only=True)`` (``classes`` is a plain list)."""
        check_is_fitted(self, "weights_")
        params = self.get_params()
        if np.ndim(params["weight_decay"]):
            params["weight_decay"] = [float(v) for v in params["weight_decay"]]
        return {
            "kind": "one_vs_rest",
            "params": params,
            "classes": self.classes_.tolist(),
            "n_labels": self.n_labels_,
            "n_features_in": self.n_features_in_,
            "weight_decay_": self.weight_decay_,
            "weights": {k: v.detach().cpu().clone() for k, v in self.weights_.items()},
            "thresholds": torch.from_numpy(np.asarray(self.thresholds_, dtype=np.float64).copy()),
            "tuned": torch.from_numpy(np.asarray(self.tuned_, dtype=bool).copy()),
            "threshold_source": self.threshold_source_,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], *, device: str | None = None) -> OneVsRestHead:
        """Rebuild a fitted head from :meth:`state_dict` (optionally on another ``device``)."""
        if state.get("kind") != "one_vs_rest":
            raise ValueError(f"not a one-vs-rest head's state: kind {state.get('kind')!r}")
        params = dict(state["params"])
        if device is not None:
            params["device"] = device
        model = cls(**params)
        dev = model._dev
        model.n_labels_ = int(state["n_labels"])
        model.n_features_in_ = int(state["n_features_in"])
        model.classes_ = np.asarray(state["classes"])
        if model.classes_.shape != (model.n_labels_,):
            raise ValueError("the state's classes do not match its n_labels")
        model.weight_decay_ = float(state["weight_decay_"])
        model.weights_ = {k: v.to(dev) for k, v in state["weights"].items()}
        model.thresholds_ = np.asarray(state["thresholds"], dtype=np.float64)
        model.tuned_ = np.asarray(state["tuned"], dtype=bool)
        model.threshold_source_ = str(state.get("threshold_source", "cv"))
        model.cv_loss_ = {}
        return model


# =========================================================================== predictions and metrics


def predict_tags(P, thresholds=None, *, allow_empty: bool = True) -> np.ndarray:
    """Tag sets ``P ≥ thresholds`` (0.5 when None) as uint8 ``(n, L)``; with ``allow_empty=False`` a row
    where no tag passes gets its most probable tag (lowest index on ties)."""
    P = _as_numpy(P)
    t = np.full(P.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    pred = (P >= t).astype(np.uint8)
    if not allow_empty and len(P):
        empty = ~pred.any(1)
        pred[np.flatnonzero(empty), P[empty].argmax(1)] = 1
    return pred


def binary_ece(y, p, n_bins: int = ECE_BINS) -> float:
    """Calibration error of ``P(present)`` for one tag: ``Σ_b |B_b|/n · |mean(y ∈ B_b) − mean(p ∈ B_b)|``,
    bin ``b`` holding ``p ∈ (b/B, (b+1)/B]`` (``p = 0`` in the first), as ``acquisition.evaluation``."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if not y.size:
        return float("nan")
    bins = np.clip(np.ceil(p * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ys = np.bincount(bins, weights=y, minlength=n_bins)
    ps = np.bincount(bins, weights=p, minlength=n_bins)
    return float(np.abs(ys - ps).sum() / y.size)


def multilabel_metrics(
    Y_true, P, thresholds=None, label_names=None, *, allow_empty: bool = True, n_bins: int = ECE_BINS
) -> dict:
    """Every figure of a multi-label model on held-out tag sets (JSON-ready; formulas in the module
    docstring). ``Y_true`` ``(n, L)`` 0/1, ``P`` ``(n, L)`` probabilities, ``thresholds`` ``(L,)`` (0.5 when
    None), predictions as :func:`predict_tags`. Keys: ``n``, ``micro_f1``, ``macro_f1``,
    ``subset_accuracy``, ``hamming_loss``, ``per_label`` ``{name: {"f1", "support"}}``, ``ece_per_tag``
    ``{name: ece}``, ``ece_mean``."""
    Y = _check_tags(Y_true).astype(bool)
    P = np.asarray(_as_numpy(P), dtype=np.float64)
    if P.shape != Y.shape:
        raise ValueError(f"P has shape {P.shape}, Y_true {Y.shape}")
    n, L = Y.shape
    names = [str(c) for c in range(L)] if label_names is None else [str(c) for c in label_names]
    if len(names) != L:
        raise ValueError(f"label_names must name the {L} tags")
    pred = predict_tags(P, thresholds, allow_empty=allow_empty).astype(bool)
    tp = (pred & Y).sum(0).astype(np.float64)
    fp = (pred & ~Y).sum(0).astype(np.float64)
    fn = (~pred & Y).sum(0).astype(np.float64)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(L), where=denom > 0)
    micro_denom = denom.sum()
    ece = [binary_ece(Y[:, j], P[:, j], n_bins) for j in range(L)]
    return {
        "n": int(n),
        "micro_f1": float(2 * tp.sum() / micro_denom) if micro_denom > 0 else 0.0,
        "macro_f1": float(f1.mean()),
        "subset_accuracy": float((pred == Y).all(1).mean()) if n else float("nan"),
        "hamming_loss": float((pred != Y).mean()) if n else float("nan"),
        "per_label": {names[j]: {"f1": float(f1[j]), "support": int(Y[:, j].sum())} for j in range(L)},
        "ece_per_tag": {names[j]: ece[j] for j in range(L)},
        "ece_mean": float(np.mean(ece)) if n else float("nan"),
    }


# =========================================================================== acquisition scores


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _chunked(fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], P, extra, chunk_size: int):
    """Apply ``fn(P_chunk, extra_chunk)`` to ``chunk_size`` rows at a time; float64 ``(n,)`` in the input's
    kind (NumPy in, NumPy out; tensor in, tensor on its device out)."""
    is_tensor = isinstance(P, torch.Tensor)
    Pt = P if is_tensor else torch.from_numpy(np.asarray(P))
    if Pt.dim() != 2:
        raise ValueError(f"P must be (n, L), got shape {tuple(Pt.shape)}")
    n = Pt.shape[0]
    out = torch.empty(n, dtype=torch.float64, device=Pt.device)
    for s in range(0, n, chunk_size):
        p = Pt[s : s + chunk_size].to(torch.float64)
        e = None if extra is None else extra[s : s + chunk_size]
        out[s : s + p.shape[0]] = fn(p, e)
    return out if is_tensor else out.numpy()


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))


def mean_entropy(P, *, chunk_size: int = DEFAULT_CHUNK, **_ignored) -> ArrayLike:
    """Mean binary entropy over tags ``(1/L) Σ_l H(p_l)`` in nats, ``(n,)`` in ``[0, log 2]``."""
    return _chunked(lambda p, _: _binary_entropy(p).mean(1), P, None, chunk_size)


def max_entropy(P, *, chunk_size: int = DEFAULT_CHUNK, **_ignored) -> ArrayLike:
    """Entropy of the most uncertain tag ``max_l H(p_l)`` in nats, ``(n,)`` in ``[0, log 2]``."""
    return _chunked(lambda p, _: _binary_entropy(p).amax(1), P, None, chunk_size)


def _thresholds(thresholds, L: int, device) -> torch.Tensor:
    if thresholds is None:
        return torch.full((L,), 0.5, dtype=torch.float64, device=device)
    t = torch.as_tensor(_as_numpy(thresholds), dtype=torch.float64, device=device)
    if t.shape != (L,):
        raise ValueError(f"thresholds must have shape ({L},), got {tuple(t.shape)}")
    return t


def _cardinality_rows(p: torch.Tensor, t: torch.Tensor, allow_empty: bool, card) -> torch.Tensor:
    """Predicted cardinality k̂ of each row of the chunk (module docstring)."""
    if card is not None:
        k = torch.as_tensor(_as_numpy(card), dtype=torch.int64, device=p.device)
    else:
        k = (p >= t).sum(1)
        if not allow_empty:
            k = k.clamp_min(1)
    return k.clamp(0, p.shape[1])


def predicted_cardinality(
    P, thresholds=None, *, allow_empty: bool = True, chunk_size: int = DEFAULT_CHUNK
) -> np.ndarray:
    """``k̂``: tags at or above their thresholds (0.5 when None) per row, at least 1 unless
    ``allow_empty``; int64 ``(n,)``."""
    t = None

    def fn(p, _):
        nonlocal t
        t = _thresholds(thresholds, p.shape[1], p.device) if t is None else t
        return _cardinality_rows(p, t, allow_empty, None).double()

    return _as_numpy(_chunked(fn, P, None, chunk_size)).astype(np.int64)


def mmc(
    P, *, thresholds=None, allow_empty: bool = True, cardinality=None, chunk_size: int = DEFAULT_CHUNK, **_ignored
) -> ArrayLike:
    """Maximum model change / max loss (Yang et al., KDD 2009): ``Σ_{l∈ŷ} (1 − p_l) + Σ_{l∉ŷ} p_l``, ``ŷ`` the
    ``k̂`` most probable tags (``k̂``: ``cardinality`` per row, else from ``thresholds`` as
    :func:`predicted_cardinality`); ``(n,)`` in ``[0, L]``."""
    t = None

    def fn(p, card):
        nonlocal t
        t = _thresholds(thresholds, p.shape[1], p.device) if t is None else t
        k = _cardinality_rows(p, t, allow_empty, card)
        ranked = p.sort(1, descending=True).values
        inside = torch.arange(p.shape[1], device=p.device)[None] < k[:, None]
        return torch.where(inside, 1 - ranked, ranked).sum(1)

    return _chunked(fn, P, None if cardinality is None else _as_numpy(cardinality), chunk_size)


def cardinality_margin(
    P, *, thresholds=None, allow_empty: bool = True, cardinality=None, chunk_size: int = DEFAULT_CHUNK, **_ignored
) -> ArrayLike:
    """Label-cardinality-aware margin ``−(s₍k̂₎ − s₍k̂₊₁₎)`` of ``s_l = p_l − t_l`` sorted in decreasing order,
    ``s₍₀₎ = s₍L₊₁₎ = 0`` (module docstring); ``(n,)`` in ``[−2, 0]``, higher = closer to a tag flipping."""
    t = None

    def fn(p, card):
        nonlocal t
        t = _thresholds(thresholds, p.shape[1], p.device) if t is None else t
        k = _cardinality_rows(p, t, allow_empty, card)
        s = (p - t).sort(1, descending=True).values
        zero = torch.zeros(s.shape[0], 1, dtype=s.dtype, device=s.device)
        padded = torch.cat([zero, s, zero], 1)  # padded[:, j] = s₍j₎
        upper = padded.gather(1, k[:, None])[:, 0]
        lower = padded.gather(1, (k + 1)[:, None])[:, 0]
        return -(upper - lower)

    return _chunked(fn, P, None if cardinality is None else _as_numpy(cardinality), chunk_size)


#: Probability-based multi-label scores by name.
MULTILABEL_SCORES: dict[str, Callable[..., ArrayLike]] = {
    "mean_entropy": mean_entropy,
    "max_entropy": max_entropy,
    "mmc": mmc,
    "cardinality_margin": cardinality_margin,
}

#: The project's strategy names (``quorum.vocabulary.TASK_STRATEGIES["multi_label"]``) → what they mean
#: for tag sets: a score of :data:`MULTILABEL_SCORES`, or a batch rule of :func:`select_batch_multilabel`.
MULTILABEL_STRATEGIES: dict[str, str] = {
    "entropy": "mean_entropy",
    "max_entropy": "max_entropy",
    "mmc": "mmc",
    "margin": "cardinality_margin",
    "msal": "msal",
    "coreset": "coreset",
    "random": "random",
}

#: Single-label strategies with no multi-label reading.
NOT_OFFERED: tuple[str, ...] = ("least_confidence", "qbc", "bald")

#: The multi-label strategy a new project starts with. Measured on GoEmotions (``bench/multilabel_curve.py``,
#: 5 seeds, 28 seed labels, batches of 50, 10 % exploration): the cardinality margin was the only line to
#: reach random's 2,000-label macro-F1 within the budget (at 1,600 labels) and had the best micro-F1 from
#: 500 labels on; entropy, max_entropy, mmc, msal and coreset stayed at or below random on macro-F1.
DEFAULT_MULTILABEL_STRATEGY = "margin"

#: MSAL's uncertainty term for tag sets.
DEFAULT_MSAL_UNCERTAINTY = "margin"


def _score_function(name: str) -> Callable[..., ArrayLike]:
    key = MULTILABEL_STRATEGIES.get(name, name)
    if key not in MULTILABEL_SCORES:
        raise ValueError(
            f"{name!r} is not a probability-based multi-label score; one of "
            f"{sorted(set(MULTILABEL_SCORES) | {s for s, v in MULTILABEL_STRATEGIES.items() if v in MULTILABEL_SCORES})}"
        )
    return MULTILABEL_SCORES[key]


def score_multilabel(
    strategy: str, P, *, thresholds=None, allow_empty: bool = True, chunk_size: int = DEFAULT_CHUNK
) -> ArrayLike:
    """The per-row score of a probability-based multi-label strategy (a project name such as ``"margin"``
    or a score name such as ``"cardinality_margin"``)."""
    return _score_function(strategy)(P, thresholds=thresholds, allow_empty=allow_empty, chunk_size=chunk_size)


def _seed(rng) -> int:
    if rng is None:
        return 0
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**63 - 1))
    return int(rng)


def select_batch_multilabel(
    strategy: str,
    P,
    k: int,
    *,
    thresholds=None,
    embeddings=None,
    labelled=None,
    min_dist=None,
    scores=None,
    exploration: float = 0.1,
    rng=None,
    allow_empty: bool = True,
    uncertainty: str = DEFAULT_MSAL_UNCERTAINTY,
    alpha: float = DEFAULT_MSAL_ALPHA,
    chunk_size: int = DEFAULT_CHUNK,
    device=None,
) -> Selection:
    """Choose ``k`` of the ``n`` candidate rows of ``P`` ``(n, L)`` to label next (an
    ``acquisition.strategies.Selection``: indices in pick order, their scores, the exploration flags).

    ``strategy`` is a project name of :data:`MULTILABEL_STRATEGIES` (or a score name):

    * ``entropy`` / ``max_entropy`` / ``mmc`` / ``margin``: exact top-k of the score (lowest index first on
      ties), computed from ``P`` and ``thresholds`` or given as ``scores`` ``(n,)`` (e.g. from
      :meth:`OneVsRestHead.score`, chunk by chunk over a large pool).
    * ``msal``: the single-label MSAL greedy ``U(x) + α · min_{x'∈L} ‖φ(x) − φ(x')‖₂`` with ``U`` the
      ``uncertainty`` score (default the cardinality margin, in ``[−2, 0]`` like the single-label margin's
      ``[−1, 0]``, hence the same ``α``), after each pick the pick joins ``L`` (a diverse batch).
    * ``coreset``: greedy k-center on the same distances.
    * ``random``: uniform.

    Distances come from ``min_dist`` ``(n,)`` (the cache kept with ``acquisition.strategies.
    update_min_distances``) or are computed from ``labelled`` ``(|L|, d)``, the embeddings of the labelled
    items; ``embeddings`` ``(n, d)`` of the candidates are needed by ``msal`` and ``coreset``. ``P`` may be
    None for ``random`` / ``coreset`` (or with ``scores``).

    ``exploration``: the share ε of the batch drawn uniformly from the rest of the pool (``round(ε·k)``
    picks, after the strategy's, flagged). ``rng``: an int seed or a ``np.random.Generator`` (one draw
    seeds the batch); None is seed 0.
    """
    name = MULTILABEL_STRATEGIES.get(strategy, strategy)
    seed = _seed(rng)
    common = {"epsilon": exploration, "seed": seed, "chunk_size": chunk_size, "device": device}
    if name == "random":
        n = _n_rows(P, scores, embeddings, min_dist)
        return select_batch("random", k, scores=np.zeros(n), **common)
    if name == "coreset":
        return select_batch(
            "coreset", k, embeddings=embeddings, labelled_embeddings=labelled, min_dist=min_dist, **common
        )
    if name == "msal":
        if scores is None:
            if P is None:
                raise ValueError("msal needs P (or the uncertainty as scores)")
            scores = score_multilabel(
                uncertainty, P, thresholds=thresholds, allow_empty=allow_empty, chunk_size=chunk_size
            )
        return select_batch(
            "msal",
            k,
            scores=scores,
            embeddings=embeddings,
            labelled_embeddings=labelled,
            min_dist=min_dist,
            alpha=alpha,
            **common,
        )
    if name not in MULTILABEL_SCORES:
        raise ValueError(f"unknown multi-label strategy {strategy!r}; one of {sorted(MULTILABEL_STRATEGIES)}")
    if scores is None:
        if P is None:
            raise ValueError(f"{strategy} needs P (or precomputed scores)")
        scores = score_multilabel(name, P, thresholds=thresholds, allow_empty=allow_empty, chunk_size=chunk_size)
    # any probability-based name of select_batch ranks precomputed scores by exact top-k
    return select_batch("entropy", k, scores=scores, **common)


def _n_rows(P, scores, embeddings, min_dist) -> int:
    for a in (P, scores, embeddings, min_dist):
        if a is not None:
            return int(a.shape[0])
    raise ValueError("pass P, scores, embeddings or min_dist so the number of candidates is known")
