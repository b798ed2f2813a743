"""A committee of small PyTorch heads on frozen embeddings (no Django).

``HeadCommittee`` is a scikit-learn estimator (``sklearn.base.BaseEstimator``): hyper-parameters in
``__init__`` (``get_params`` / ``set_params`` / ``clone`` work), ``fit`` / ``predict_proba`` /
``predict``, learned state with a trailing underscore, deterministic for a ``random_state``. The
classes are ``classes_``: those of ``y`` (``np.unique(y)``) or the ``classes`` given to ``fit``, which
may include classes with no example yet (``fit(X, y, n_classes=C)`` is short for
``classes=np.arange(C)``); ``predict`` returns values of ``classes_`` and the probability columns follow
``classes_``. Everything returned is NumPy; PyTorch (CPU or CUDA) is only used inside. It is not a
``ClassifierMixin``: its ``score(X, strategy)`` is the acquisition score, not scikit-learn's accuracy.

Members
-------
* ``hidden=0``: multinomial logistic regression ``p_m(c|x) = softmax(x W_m + b_m)_c``.
* ``hidden>0``: one hidden layer ``p_m(c|x) = softmax(dropout(relu(x U_m + a_m)) V_m + b_m)_c``.

Every member is fitted on its own bootstrap resample (multinomial counts with a seed derived from
``random_state``), expressed as per-sample weights, so all members train *together* on the same full
batch: the first layers of all members are stacked into one ``(d, M·C)`` (or ``(d, M·h)``) matrix and a
forward pass over the pool is ONE matrix product per chunk. The objective of member m is the weighted
cross-entropy of scikit-learn's ``LogisticRegression`` (``weight_decay`` plays ``1/C``)::

    L_m = ( Σ_i w_i k_mi · (−log p_m(y_i|x_i)) + weight_decay/2 · ‖θ_m‖² ) / Σ_i w_i k_mi

with sample weights ``w_i`` (e.g. label confidence) and bootstrap counts ``k_mi``. Logistic heads are
fitted with full-batch L-BFGS (convex; zero init), MLP heads with full-batch Adam (seeded init, dropout).
With ``warm_start=True`` a refit starts from the learned weights instead (see ``HeadCommittee``).

MC dropout (``mc_dropout=True``, needs ``hidden>0``): one head is fitted on all the data (``n_members`` and
``bootstrap`` do not apply) and ``predict_proba_members`` returns ``mc_samples`` thinned versions of it,
each with its own dropout mask over the hidden units (drawn once, seeded, shared by all items — so scores
do not depend on chunking); ``bald`` over them estimates the mutual information under the dropout
posterior.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from acquisition.strategies import DEFAULT_CHUNK, SCORE_FUNCTIONS, _rows

__all__ = ["HeadCommittee"]


def _fit_classes(y: np.ndarray, classes=None, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(classes_, codes)``: the classes of a fit and ``y`` encoded as int64 column indices into them.

    ``classes_`` is ``classes`` as given (order kept), ``np.arange(n_classes)`` for the legacy
    ``n_classes``, else ``np.unique(y)``. A value of ``y`` outside ``classes_`` raises ``ValueError``.
    """
    if n_classes is not None:
        if classes is not None:
            raise ValueError("pass classes or n_classes, not both")
        classes = np.arange(int(n_classes))
    if classes is None:
        classes_ = np.unique(y)
    else:
        classes_ = np.asarray(classes)
        if classes_.ndim != 1 or classes_.size == 0:
            raise ValueError("classes must be a non-empty one-dimensional array")
        if np.unique(classes_).size != classes_.size:
            raise ValueError("classes must not repeat")
    order = np.argsort(classes_, kind="stable")
    ordered = classes_[order]
    try:
        pos = np.clip(np.searchsorted(ordered, y), 0, ordered.size - 1)
        unknown = ordered[pos] != y
    except TypeError:  # y and classes of incomparable types
        unknown = np.ones(y.shape, dtype=bool)
        pos = np.zeros(y.shape, dtype=np.int64)
    if np.any(unknown):
        raise ValueError(f"y has labels that are not in classes: {np.unique(y[unknown])[:10].tolist()}")
    return classes_, order[pos].astype(np.int64)


def _same_classes(a: np.ndarray, b: np.ndarray) -> bool:
    try:
        return a.shape == b.shape and bool(np.all(a == b))
    except (TypeError, ValueError):
        return False


class HeadCommittee(BaseEstimator):
    """Committee of ``n_members`` logistic (``hidden=0``) or one-hidden-layer MLP heads.

    ``epochs``: full-batch optimiser iterations (default 100 L-BFGS iterations for logistic heads, 300
    Adam steps for MLP heads). ``lr``: default 1.0 (L-BFGS) / 1e-2 (Adam). ``weight_decay``: L2 penalty
    in scikit-learn's scale, ``1/C`` (default 0.1 ≡ ``C=10``). ``tol``: L-BFGS stops once no gradient entry
    exceeds it in absolute value (logistic heads only). ``device``: ``"cpu"`` or ``"cuda[:i]"``.

    ``warm_start``: bool, default False. When set to True, reuse the solution of the previous call to
    ``fit`` as initialisation, otherwise, just erase the previous solution. The previous solution is
    reused only if it fits the new call: same ``n_features_in_``, ``classes_`` and architecture
    (``hidden``, and ``n_members`` or ``mc_dropout``, which set the number of heads); otherwise, and on
    the first fit, the weights are initialised as usual. A warm fit minimises the same objective with the
    same optimiser for ``epochs`` iterations; only the starting point differs (the optimiser's own state,
    L-BFGS history or Adam moments, starts afresh). Bootstrap resamples and dropout masks still come from
    ``random_state``, so a sequence of fits is deterministic. ``epochs`` may be lowered with
    ``set_params`` between warm fits, e.g. when each refit only adds a few labels.
    """

    def __init__(
        self,
        n_members: int = 5,
        hidden: int = 0,
        dropout: float = 0.1,
        mc_dropout: bool = False,
        mc_samples: int = 10,
        epochs: int | None = None,
        lr: float | None = None,
        weight_decay: float = 0.1,
        bootstrap: bool = True,
        random_state: int = 0,
        device: str = "cpu",
        tol: float = 1e-6,
        warm_start: bool = False,
    ):
        self.n_members = n_members
        self.hidden = hidden
        self.dropout = dropout
        self.mc_dropout = mc_dropout
        self.mc_samples = mc_samples
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.bootstrap = bootstrap
        self.random_state = random_state
        self.device = device
        self.tol = tol
        self.warm_start = warm_start

    @property
    def _dev(self) -> torch.device:
        return torch.device(self.device)

    def _check_params(self) -> None:
        if self.n_members < 1:
            raise ValueError("n_members must be >= 1")
        if self.hidden < 0:
            raise ValueError("hidden must be >= 0")
        if self.mc_dropout and self.hidden == 0:
            raise ValueError("mc_dropout needs MLP heads (hidden > 0)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    # ------------------------------------------------------------------ fit

    def fit(self, X, y, *, classes=None, sample_weight=None, n_classes: int | None = None) -> HeadCommittee:
        """Fit every member on its bootstrap resample of ``(X, y)``.

        ``X`` (n, d) float32; ``y`` (n,) labels; ``sample_weight`` (n,) ≥ 0 (default 1). ``classes``: the
        label set, ``classes_`` (default ``np.unique(y)``); every value of ``y`` must be in it, and classes
        absent from ``y`` still get a column (their probability stays low). ``n_classes=C`` (legacy) is
        short for ``classes=np.arange(C)``.
        """
        self._check_params()
        dev = self._dev
        X = _rows(X, 0, len(X), dev)
        y = np.asarray(y)
        n, d = X.shape
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},)")
        if n == 0:
            raise ValueError("cannot fit on zero samples")
        classes_, codes = _fit_classes(y, classes, n_classes)
        y = torch.as_tensor(codes, dtype=torch.int64, device=dev)
        w = torch.ones(n, dtype=torch.float32, device=dev)
        if sample_weight is not None:
            w = torch.as_tensor(np.asarray(sample_weight, dtype=np.float32), device=dev)
            if w.shape != (n,) or bool((w < 0).any()):
                raise ValueError("sample_weight must be (n,) and non-negative")
        # MC dropout samples come from one head, fitted on all the (weighted) data
        m, c = (1 if self.mc_dropout else self.n_members), len(classes_)
        seeds = np.random.SeedSequence(self.random_state).spawn(m)
        rngs = [np.random.default_rng(s) for s in seeds]
        if self.bootstrap and not self.mc_dropout:
            counts = np.stack([r.multinomial(n, np.full(n, 1.0 / n)) for r in rngs]).astype(np.float32)
        else:
            counts = np.ones((m, n), dtype=np.float32)
        weights = w[:, None] * torch.from_numpy(counts.T).to(dev)  # (n, M)
        totals = weights.sum(0).clamp_min(1e-12)  # (M,)

        torch_seed = int(np.random.SeedSequence(self.random_state).generate_state(1)[0])
        gen = torch.Generator(device=dev).manual_seed(torch_seed)
        init = self._warm_weights(d, m, classes_)
        self.classes_ = classes_
        self.n_classes_ = c
        self.n_features_in_ = d
        self.mc_masks_ = None
        self._mc_w2_cache = None
        if self.hidden == 0:
            self.weights_ = self._fit_logistic(X, y, weights, totals, m, c, init)
        else:
            self.weights_ = self._fit_mlp(X, y, weights, totals, m, c, gen, init)
            if self.mc_dropout:
                keep = torch.rand(self.mc_samples, self.hidden, generator=gen, device=dev) >= self.dropout
                self.mc_masks_ = keep
        self.members_ = m
        return self

    def _warm_weights(self, d: int, m: int, classes: np.ndarray) -> dict[str, torch.Tensor] | None:
        """Copies of the learned weights to start a warm fit from, or ``None`` for the usual init."""
        if not self.warm_start or getattr(self, "weights_", None) is None:
            return None
        if (self.n_features_in_, self.members_) != (d, m) or not _same_classes(self.classes_, classes):
            return None
        c = len(classes)
        h = self.hidden
        shapes = {"W": (d, m * c), "b": (m * c,)}
        if h:
            shapes = {"W1": (d, m * h), "b1": (m * h,), "W2": (m, h, c), "b2": (m, c)}
        wt = self.weights_
        if set(wt) != set(shapes) or any(tuple(wt[k].shape) != s for k, s in shapes.items()):
            return None
        return {k: v.detach().to(self._dev, torch.float32, copy=True) for k, v in wt.items()}

    def _objective(self, logits: torch.Tensor, y, weights, totals, params: list[torch.Tensor]) -> torch.Tensor:
        """Σ_m ( Σ_i w_im · CE_im + wd/2 · ‖θ_m‖² ) / Σ_i w_im for logits (n, M, C)."""
        nll = -F.log_softmax(logits, dim=-1).gather(2, y[:, None, None].expand(-1, logits.shape[1], 1))[..., 0]
        per_member = (weights * nll).sum(0)
        penalty = sum(p.square().reshape(p.shape[0], -1).sum(1) for p in params)
        return ((per_member + 0.5 * self.weight_decay * penalty) / totals).sum()

    def _fit_logistic(self, X, y, weights, totals, m, c, init=None) -> dict[str, torch.Tensor]:
        n, d = X.shape
        if init is not None:
            W, b = init["W"].requires_grad_(), init["b"].requires_grad_()
        else:
            W = torch.zeros(d, m * c, device=X.device, requires_grad=True)
            b = torch.zeros(m * c, device=X.device, requires_grad=True)
        opt = torch.optim.LBFGS(
            [W, b],
            lr=self.lr or 1.0,
            max_iter=self.epochs or 100,
            history_size=10,
            tolerance_grad=self.tol,
            tolerance_change=1e-9,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            logits = torch.addmm(b, X, W).view(n, m, c)
            loss = self._objective(logits, y, weights, totals, [W.view(d, m, c).permute(1, 0, 2), b.view(m, c)])
            loss.backward()
            return loss

        opt.step(closure)
        return {"W": W.detach(), "b": b.detach()}

    def _fit_mlp(self, X, y, weights, totals, m, c, gen, init=None) -> dict[str, torch.Tensor]:
        n, d = X.shape
        h, dev = self.hidden, X.device
        if init is not None:
            W1, b1, W2, b2 = (init[k].requires_grad_() for k in ("W1", "b1", "W2", "b2"))
        else:
            # PyTorch's nn.Linear default init, U(−1/√fan_in, 1/√fan_in), drawn from the seeded generator
            bound1, bound2 = 1.0 / math.sqrt(d), 1.0 / math.sqrt(h)
            W1 = ((torch.rand(d, m * h, generator=gen, device=dev) * 2 - 1) * bound1).requires_grad_()
            b1 = ((torch.rand(m * h, generator=gen, device=dev) * 2 - 1) * bound1).requires_grad_()
            W2 = ((torch.rand(m, h, c, generator=gen, device=dev) * 2 - 1) * bound2).requires_grad_()
            b2 = ((torch.rand(m, c, generator=gen, device=dev) * 2 - 1) * bound2).requires_grad_()
        opt = torch.optim.Adam([W1, b1, W2, b2], lr=self.lr or 1e-2)
        p = self.dropout
        for _ in range(self.epochs or 300):
            opt.zero_grad()
            hid = torch.relu(torch.addmm(b1, X, W1)).view(n, m, h)
            if p > 0:
                keep = torch.rand(hid.shape, generator=gen, device=dev) >= p
                hid = hid * keep / (1.0 - p)
            logits = torch.bmm(hid.transpose(0, 1), W2).transpose(0, 1) + b2  # (n, M, C)
            params = [W1.view(d, m, h).permute(1, 0, 2), b1.view(m, h), W2, b2]
            loss = self._objective(logits, y, weights, totals, params)
            loss.backward()
            opt.step()
        return {"W1": W1.detach(), "b1": b1.detach(), "W2": W2.detach(), "b2": b2.detach()}

    # ------------------------------------------------------------------ predict

    @property
    def n_outputs_(self) -> int:
        """Number of probability samples per item: ``mc_samples`` with MC dropout, else ``n_members``."""
        return self.mc_samples if (self.hidden and self.mc_dropout) else self.members_

    def _logits_chunk(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(c, S, C)`` of a chunk for the S outputs (members or MC samples): one GEMM per layer."""
        c = self.n_classes_
        wt = self.weights_
        if self.hidden == 0:
            return torch.addmm(wt["b"], x, wt["W"]).view(x.shape[0], -1, c)
        h, m = self.hidden, self.members_
        if self.mc_dropout:
            hid = torch.relu(torch.addmm(wt["b1"][:h], x, wt["W1"][:, :h]))  # member 0
            w2 = self._mc_w2()
            return torch.addmm(wt["b2"][0].repeat(self.mc_samples), hid, w2).view(x.shape[0], -1, c)
        hid = torch.relu(torch.addmm(wt["b1"], x, wt["W1"])).view(x.shape[0], m, h)
        return torch.bmm(hid.transpose(0, 1), wt["W2"]).transpose(0, 1) + wt["b2"]

    def _mc_w2(self) -> torch.Tensor:
        """``(h, S·C)``: member 0's output layer under each of the S dropout masks, scaled by 1/(1−p)."""
        if getattr(self, "_mc_w2_cache", None) is None:
            keep = self.mc_masks_.to(self.weights_["W2"].dtype)  # (S, h)
            w2 = keep[:, :, None] * self.weights_["W2"][0][None] / (1.0 - self.dropout)  # (S, h, C)
            self._mc_w2_cache = w2.permute(1, 0, 2).reshape(self.hidden, -1).contiguous()
        return self._mc_w2_cache

    def predict_proba_members(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """Probabilities of every member (or MC-dropout sample): NumPy float32 ``(S, n, C)``, columns in
        the order of ``classes_``."""
        check_is_fitted(self, "weights_")
        n = len(X)
        out = np.empty((self.n_outputs_, n, self.n_classes_), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, n, chunk_size):
                x = _rows(X, s, s + chunk_size, self._dev)
                p = torch.softmax(self._logits_chunk(x), dim=-1).transpose(0, 1)
                out[:, s : s + x.shape[0]] = p.cpu().numpy()
        return out

    def predict_proba(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """Committee mean ``p̄(c|x) = mean_m p_m(c|x)``: NumPy float32 ``(n, C)``, columns in the order of
        ``classes_``."""
        check_is_fitted(self, "weights_")
        n = len(X)
        out = np.empty((n, self.n_classes_), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, n, chunk_size):
                x = _rows(X, s, s + chunk_size, self._dev)
                out[s : s + x.shape[0]] = torch.softmax(self._logits_chunk(x), dim=-1).mean(1).cpu().numpy()
        return out

    def predict(self, X, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """``classes_[argmax_c p̄(c|x)]``: NumPy ``(n,)`` of the dtype of ``classes_``."""
        best = self.predict_proba(X, chunk_size=chunk_size).argmax(1)
        return self.classes_[best]

    def score(self, X, strategy: str, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
        """Acquisition score of ``strategy`` (``least_confidence``, ``margin``, ``entropy``, ``bald``, ``qbc``)
        for every row of ``X``, computed chunk by chunk so the ``(S, n, C)`` probabilities never exist at
        once: NumPy ``(n,)`` (float32, float64 for ``qbc``), to pass to ``select_batch(..., scores=...)``.

        Not scikit-learn's ``ClassifierMixin.score(X, y)`` (accuracy)."""
        check_is_fitted(self, "weights_")
        fn = SCORE_FUNCTIONS[strategy]
        n = len(X)
        out = None
        with torch.inference_mode():
            for s in range(0, n, chunk_size):
                x = _rows(X, s, s + chunk_size, self._dev)
                # (S, c, C) contiguous: the score functions reduce over the member axis first
                sc = fn(torch.softmax(self._logits_chunk(x), dim=-1).transpose(0, 1).contiguous()).cpu().numpy()
                if out is None:
                    out = np.empty(n, dtype=sc.dtype)
                out[s : s + x.shape[0]] = sc
        return out if out is not None else np.empty(0, dtype=np.float32)

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters and learned tensors (on CPU); ``torch.save``-able and loadable with
        ``torch.load(..., weights_only=True)`` (``classes`` is a plain list)."""
        check_is_fitted(self, "weights_")
        state = {
            "params": self.get_params(),
            "n_classes": self.n_classes_,
            "classes": self.classes_.tolist(),
            "n_features_in": self.n_features_in_,
            "members": self.members_,
            "weights": {k: v.detach().cpu().clone() for k, v in self.weights_.items()},
        }
        if getattr(self, "mc_masks_", None) is not None:
            state["mc_masks"] = self.mc_masks_.cpu().clone()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], *, device: str | None = None) -> HeadCommittee:
        """Rebuild a fitted committee from :meth:`state_dict` (optionally on another ``device``). A state
        saved without ``classes`` (older versions) gets ``classes_ = np.arange(n_classes)``."""
        params = dict(state["params"])
        if device is not None:
            params["device"] = device
        model = cls(**params)
        dev = model._dev
        model.n_classes_ = int(state["n_classes"])
        model.n_features_in_ = int(state["n_features_in"])
        model.classes_ = _state_classes(state, model.n_classes_)
        model.members_ = int(state["members"])
        model.weights_ = {k: v.to(dev) for k, v in state["weights"].items()}
        model.mc_masks_ = state["mc_masks"].to(dev) if "mc_masks" in state else None
        model._mc_w2_cache = None
        return model


def _state_classes(state: dict[str, Any], n_classes: int) -> np.ndarray:
    """``classes_`` of a saved state: its ``classes`` list, or ``np.arange(n_classes)`` for older states."""
    if state.get("classes") is None:
        return np.arange(n_classes)
    classes = np.asarray(state["classes"])
    if classes.shape != (n_classes,):
        raise ValueError(f"the state's classes do not match its n_classes ({n_classes})")
    return classes
