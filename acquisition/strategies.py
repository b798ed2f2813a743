"""Acquisition functions: which pool items are worth a human label next.

Pure numerics (NumPy + PyTorch, no Django). Every function takes arrays and returns arrays,
computes on the device its inputs live on (CPU or CUDA, the same code), and never allocates an
``n × |L|`` or ``n × n`` matrix: pools are walked in chunks of ``chunk_size`` rows.

Conventions
-----------
* ``probs``: class probabilities, either ``(M, n, C)`` (M committee members or MC-dropout samples)
  or ``(n, C)`` (one model, treated as ``M = 1``); ``torch.Tensor`` or ``np.ndarray``.
  ``p̄ = mean_m p_m`` is the committee mean.
* Every score has shape ``(n,)`` and **higher = more informative**.
* Distances are Euclidean (L2) in embedding space; a *min-distance cache* ``d(x) = min_{x'∈L} ‖x − x'‖``
  over the labelled set ``L`` is kept per item and updated with only the newly labelled points.
* Deterministic tie order everywhere: among equal scores the lowest index comes first.

Scores (formulas of ``shared/DESIGN.md``)
-----------------------------------------
=================  =================================================================
least_confidence   ``1 − max_c p̄(c|x)``
margin             ``−(p̄₁ − p̄₂)`` (top two classes of ``p̄``)
entropy            ``−Σ_c p̄(c) log p̄(c)`` (nats)
bald               ``H[p̄] − mean_m H[p_m]`` (mutual information between label and model)
qbc                vote entropy ``−Σ_c V(c)/M · log(V(c)/M)``, V(c) = members voting c,
                   plus a tie-break ``δ · (1 + margin)`` smaller than any gap between distinct
                   vote entropies, so that the (frequent) ties are broken by the committee margin
msal               ``U(x) + α · min_{x'∈L} ‖φ(x) − φ(x')‖₂``, U = margin by default, greedy in-batch
coreset            k-center greedy: repeatedly take ``argmax_x min_{x'∈L} ‖φ(x) − φ(x')‖₂``
random             uniform without replacement
=================  =================================================================

Selection of a batch: :func:`select_batch`. MSAL and core-set are *greedy*: after each pick the
picked point joins ``L`` and the min distances are updated, so a batch is diverse within itself.
The greedy is exact and cheap on a 1M pool (see :func:`_lazy_greedy`): scores only ever decrease
during the greedy, so the initial score is an upper bound and only a shortlist of the best
candidates by that bound needs updating; the shortlist grows whenever the bound of the first item
outside it could still win.

Cost
----
Scoring is one matrix product per model and chunk (``HeadCommittee.score``); the rest is a few passes
over ``n × C``. The diversity term is the expensive one: a first full computation of ``d`` for 1M items
against 10k labelled points is ``2 · 10⁶ · 10⁴ · 384 ≈ 7.7 TFLOP`` of GEMM whatever the algorithm, i.e.
minutes on a 2-core CPU (whose float32 peak is about 0.17 TFLOP/s) and seconds on a GPU. Hence the cache:
each later round updates ``d`` with the new labels only (``n × |new|``), and MSAL's ``α`` trades margin
(in ``[−1, 0]``) against distance (in ``[0, 2]`` for unit-norm sentence embeddings).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from quorum import vocabulary

from .coldstart import typical_diverse

__all__ = [
    "STRATEGIES",
    "UNCERTAINTIES",
    "SCORE_FUNCTIONS",
    "Selection",
    "as_probs",
    "least_confidence",
    "margin",
    "entropy",
    "bald",
    "vote_entropy",
    "score",
    "min_distances",
    "update_min_distances",
    "top_k",
    "select_batch",
    "cold_start",
    "COLD_START_METHODS",
]

#: The single-label strategies (``quorum.vocabulary.TASK_STRATEGIES``); each is implemented here. The
#: multi-label ones are ``acquisition.multilabel``'s.
STRATEGIES = vocabulary.TASK_STRATEGIES[vocabulary.TEXT_CLASSIFICATION]  # the single-label ones
#: Uncertainty terms MSAL can use.
UNCERTAINTIES = ("margin", "entropy", "least_confidence")

DEFAULT_CHUNK = 65536
# MSAL's distance weight. On unit-norm MiniLM embeddings with a C=10 logistic model, margins of the
# top of the pool sit within 0.005 of each other while distances to the labelled set spread over
# 0.36-0.92: α = 1 lets distance swamp uncertainty (MSAL turns into core-set), α = 0.01 was best on
# banking77 (bench/learning_curve.py: random's 2,000-label accuracy reached with 950 labels).
DEFAULT_MSAL_ALPHA = 0.01
#: Labelled points per GEMM block in the distance computation (bounds memory to chunk × block).
_LABELLED_BLOCK = 4096
#: Pool rows per GEMM tile in the distance computation.
_ROW_TILE = 16384
#: Smallest greedy shortlist (MSAL / core-set); it grows by doubling when needed.
_SHORTLIST_MIN = 4096

ArrayLike = torch.Tensor | np.ndarray


# --------------------------------------------------------------------------- helpers


def _device(device) -> torch.device | None:
    return None if device is None else torch.device(device)


def _tensor(x: ArrayLike, device=None, dtype=None) -> torch.Tensor:
    """``x`` as a tensor (no copy for a NumPy array already on the right device and dtype)."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if device is not None or dtype is not None:
        t = t.to(device=device if device is not None else t.device, dtype=dtype if dtype is not None else t.dtype)
    return t


def as_probs(probs: ArrayLike, device=None) -> torch.Tensor:
    """``probs`` as a floating ``(M, n, C)`` tensor; ``(n, C)`` becomes ``(1, n, C)``."""
    p = _tensor(probs, _device(device))
    if not p.is_floating_point():
        p = p.float()
    if p.dim() == 2:
        p = p.unsqueeze(0)
    if p.dim() != 3:
        raise ValueError(f"probs must be (M, n, C) or (n, C), got shape {tuple(p.shape)}")
    return p


def _mean(p: torch.Tensor) -> torch.Tensor:
    """Committee mean ``p̄ = mean_m p_m`` of ``(M, n, C)``, as ``(n, C)``."""
    return p[0] if p.shape[0] == 1 else p.mean(0)


def _top2(pbar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest and second-largest entry of each row (second = 0 when there is one class)."""
    if pbar.shape[-1] == 1:
        return pbar[..., 0], torch.zeros_like(pbar[..., 0])
    v = pbar.topk(2, dim=-1).values
    return v[..., 0], v[..., 1]


def _entropy_rows(p: torch.Tensor) -> torch.Tensor:
    """``−Σ_c p log p`` over the last axis, with ``0 log 0 = 0``."""
    return -torch.special.xlogy(p, p).sum(-1)


# --------------------------------------------------------------------------- scores


def least_confidence(probs: ArrayLike) -> torch.Tensor:
    """Least confidence ``1 − max_c p̄(c|x)``, shape ``(n,)``."""
    return 1.0 - _mean(as_probs(probs)).amax(-1)


def margin(probs: ArrayLike) -> torch.Tensor:
    """Margin ``−(p̄₁ − p̄₂)``, where p̄₁ ≥ p̄₂ are the two largest mean probabilities; in ``[−1, 0]``."""
    p1, p2 = _top2(_mean(as_probs(probs)))
    return p2 - p1


def entropy(probs: ArrayLike) -> torch.Tensor:
    """Predictive entropy ``−Σ_c p̄(c) log p̄(c)`` in nats, shape ``(n,)``."""
    return _entropy_rows(_mean(as_probs(probs)))


def bald(probs: ArrayLike) -> torch.Tensor:
    """BALD ``H[mean_m p_m] − mean_m H[p_m]`` (expected information gain about the model), ``(n,)``.

    Needs samples from a posterior over models: MC-dropout samples or a deep ensemble (with a
    single member it is identically 0).
    """
    p = as_probs(probs)
    return _entropy_rows(_mean(p)) - _entropy_rows(p).mean(0)


def _partitions(m: int, parts: int, largest: int | None = None):
    """Partitions of ``m`` into at most ``parts`` positive parts, each a non-increasing tuple."""
    largest = m if largest is None else largest
    if m == 0:
        yield ()
        return
    if parts == 0:
        return
    for first in range(min(m, largest), 0, -1):
        for rest in _partitions(m - first, parts - 1, first):
            yield (first, *rest)


#: Enumerating vote patterns is cheap up to this committee size (p(49) ≈ 173k partitions).
_MAX_ENUMERATED_MEMBERS = 49


#: Up to this committee size the product of vote counts fits in int64 (15^15 < 2^63).
_MAX_PRODUCT_MEMBERS = 15


def _vote_entropy_of_counts(cnt: torch.Tensor, m: int) -> torch.Tensor:
    """Vote entropy from ``cnt`` (n, M): for each member, how many members voted for its class.

    ``VE = −Σ_c V_c/M · log(V_c/M) = log M − (1/M) Σ_m log cnt_m`` (a class with V_c votes appears V_c times
    among the members). Computed canonically, so that equal vote patterns give bit-equal values: from the
    integer ``Π_m cnt_m`` when it fits in int64, else summing the logs of the sorted counts in order.
    """
    if m <= _MAX_PRODUCT_MEMBERS:
        prod = cnt[:, 0].clone()
        for j in range(1, m):
            prod *= cnt[:, j]
        total = torch.log(prod.double())
    else:
        logs = torch.log(cnt.sort(dim=1).values.double())
        total = logs[:, 0].clone()
        for j in range(1, m):
            total += logs[:, j]
    return math.log(m) - total / m


@functools.lru_cache(maxsize=64)
def _vote_entropy_tiebreak_scale(m: int, c: int) -> float:
    """A scale ``δ`` below half of the smallest gap between two distinct vote entropies of M votes on C classes.

    Every vote pattern is a partition of M into at most ``min(M, C)`` parts; its vote entropy is computed by
    the same function as :func:`vote_entropy` uses. Values closer than 1e-12 count as equal. For M above
    ``_MAX_ENUMERATED_MEMBERS`` (too many patterns) the scale falls back to 1e-9.
    """
    if m > _MAX_ENUMERATED_MEMBERS:
        return 1e-9
    rows = [[v for v in part for _ in range(v)] for part in _partitions(m, min(m, c))]
    values = _vote_entropy_of_counts(torch.tensor(rows, dtype=torch.int64), m).tolist()
    ordered = sorted(set(values))
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False) if b - a > 1e-12]
    return (min(gaps) if gaps else 1.0) / 4.0


def vote_entropy(probs: ArrayLike) -> torch.Tensor:
    """QBC vote entropy with a margin tie-break, float64 ``(n,)``.

    ``VE(x) = −Σ_c V(c,x)/M · log(V(c,x)/M)`` where ``V(c,x)`` is the number of the M members whose
    arg-max class is c (lowest class index on a tie). A committee of 5 has only 7 distinct vote
    entropies, so most of a pool ties; the returned score is ``VE + δ · (1 + margin)`` with ``margin`` of
    the committee mean (``∈ [−1, 0]``, so the term is in ``[0, δ]``) and ``δ`` below half the smallest gap
    between distinct vote entropies: the term orders ties by the committee's uncertainty and never
    reorders items of different vote entropy.
    """
    p = as_probs(probs)
    m, n, c = p.shape
    votes = p.argmax(-1).T  # (n, M)
    counts = torch.zeros(n, c, dtype=torch.int64, device=p.device)
    counts.scatter_add_(1, votes, torch.ones_like(votes))
    ve = _vote_entropy_of_counts(counts.gather(1, votes), m)
    delta = _vote_entropy_tiebreak_scale(m, c)
    p1, p2 = _top2(_mean(p))
    return ve + delta * (1.0 - (p1 - p2)).double()


SCORE_FUNCTIONS = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
    "bald": bald,
    "qbc": vote_entropy,
}


def score(strategy: str, probs: ArrayLike) -> torch.Tensor:
    """The per-item score of a probability-based strategy (``least_confidence``, ``margin``, ``entropy``,
    ``bald``, ``qbc``)."""
    try:
        fn = SCORE_FUNCTIONS[strategy]
    except KeyError:
        raise ValueError(
            f"{strategy!r} is not a probability-based strategy; one of {sorted(SCORE_FUNCTIONS)}"
        ) from None
    return fn(probs)


# --------------------------------------------------------------------------- distances


def _rows(x: ArrayLike, start: int, stop: int, device) -> torch.Tensor:
    """Rows ``start:stop`` of ``x`` (array, memmap or tensor) as a contiguous float32 tensor on ``device``."""
    if isinstance(x, torch.Tensor):
        r = x[start:stop]
    else:
        a = np.ascontiguousarray(x[start:stop], dtype=np.float32)
        r = torch.from_numpy(a if a.flags.writeable else a.copy())  # read-only memmap rows
    return r.to(device=device, dtype=torch.float32).contiguous()


def _pair_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise ``‖a_i − b_i‖₂`` (``b`` may be one broadcast row), computed directly from the difference.

    Used for every distance value that is stored, so a value does not depend on chunking or on how many
    points were compared at once.
    """
    return (a - b).square_().sum(1).sqrt_()


def _nearest(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of ``b`` for every row of ``a`` (GEMM form, blocked over ``b``).

    ``argmin_j ‖a − b_j‖² = argmin_j (‖b_j‖² − 2 a·b_j)``: one ``addmm`` per tile of ``_ROW_TILE`` rows ×
    ``_LABELLED_BLOCK`` points, so the extra memory is at most ``_ROW_TILE × _LABELLED_BLOCK`` floats (256 MB).
    """
    out = torch.empty(a.shape[0], dtype=torch.int64, device=a.device)
    for r in range(0, a.shape[0], _ROW_TILE):
        rows = a[r : r + _ROW_TILE]
        best_val = best_idx = None
        for s in range(0, b.shape[0], _LABELLED_BLOCK):
            blk = b[s : s + _LABELLED_BLOCK]
            d = torch.addmm(b_sq[s : s + _LABELLED_BLOCK], rows, blk.T, beta=1.0, alpha=-2.0)
            val, idx = d.min(1)
            if best_val is None:
                best_val, best_idx = val, idx
            else:
                better = val < best_val
                best_val = torch.where(better, val, best_val)
                best_idx = torch.where(better, idx + s, best_idx)
        out[r : r + rows.shape[0]] = best_idx
    return out


def _min_dist_update_tensor(
    min_dist: torch.Tensor | None, pool: ArrayLike, points: torch.Tensor, chunk_size: int, device
) -> torch.Tensor:
    n = len(pool)
    out = torch.full((n,), math.inf, dtype=torch.float32, device=device) if min_dist is None else min_dist
    if points.shape[0] == 0 or n == 0:
        return out
    points = points.to(device=device, dtype=torch.float32).contiguous()
    b_sq = points.square().sum(1)
    for s in range(0, n, chunk_size):
        a = _rows(pool, s, s + chunk_size, device)
        if points.shape[0] == 1:
            d = _pair_dist(a, points)
        else:
            d = _pair_dist(a, points[_nearest(a, points, b_sq)])
        torch.minimum(out[s : s + a.shape[0]], d, out=out[s : s + a.shape[0]])
    return out


def update_min_distances(
    min_dist: ArrayLike, pool: ArrayLike, new_points: ArrayLike, *, chunk_size: int = DEFAULT_CHUNK, device=None
) -> ArrayLike:
    """Incremental min-distance cache: ``d'(x) = min(d(x), min_{y ∈ new} ‖x − y‖₂)`` for every pool row x.

    A round costs O(n · |new|), not O(n · |L|). The nearest new point of each row is found with the GEMM
    form ``‖a‖² + ‖b‖² − 2a·b`` (chunks of ``chunk_size`` pool rows × blocks of labelled points; ``‖a‖²`` is
    constant per row and dropped), then its distance is computed directly as ``‖a − b‖₂`` in float32, so
    values are the same whatever the chunking and whichever round the point arrived in.

    ``min_dist`` (n,) is not modified; the result has its type (NumPy in, NumPy out; tensor in, tensor out
    on its device, or on ``device``). ``pool`` may be a NumPy memmap: it is read chunk by chunk.
    """
    as_numpy = not isinstance(min_dist, torch.Tensor)
    dev = _device(device) or (min_dist.device if isinstance(min_dist, torch.Tensor) else torch.device("cpu"))
    cache = _tensor(min_dist, dev, torch.float32).clone()
    if cache.shape != (len(pool),):
        raise ValueError(f"min_dist has shape {tuple(cache.shape)}, expected ({len(pool)},)")
    new = _tensor(new_points, dev, torch.float32).reshape(-1, _dim(pool))
    out = _min_dist_update_tensor(cache, pool, new, chunk_size, dev)
    return out.cpu().numpy() if as_numpy else out


def _dim(pool: ArrayLike) -> int:
    return int(pool.shape[1])


def min_distances(pool: ArrayLike, points: ArrayLike, *, chunk_size: int = DEFAULT_CHUNK, device=None) -> ArrayLike:
    """``d(x) = min_{y ∈ points} ‖x − y‖₂`` for every pool row (``+inf`` when ``points`` is empty).

    The same as :func:`update_min_distances` from an all-``+inf`` cache. Returns NumPy float32 for a NumPy
    pool, else a float32 tensor on the pool's device (or ``device``).
    """
    as_numpy = not isinstance(pool, torch.Tensor)
    dev = _device(device) or (pool.device if isinstance(pool, torch.Tensor) else torch.device("cpu"))
    pts = _tensor(points, dev, torch.float32).reshape(-1, _dim(pool))
    out = _min_dist_update_tensor(None, pool, pts, chunk_size, dev)
    return out.cpu().numpy() if as_numpy else out


# --------------------------------------------------------------------------- selection


def top_k(scores: ArrayLike, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, best first; equal scores in increasing index order; NaN is lowest.

    Exact and deterministic (``torch.topk`` alone does not fix the order of ties): the k-th largest value
    is found with ``topk``, every index above it is kept, and the ties at it are filled lowest-index first.
    Returns an int64 tensor on the scores' device.
    """
    s = _tensor(scores)
    if s.dim() != 1:
        raise ValueError("scores must be one-dimensional")
    n = s.numel()
    k = max(0, min(int(k), n))
    if k == 0:
        return torch.empty(0, dtype=torch.int64, device=s.device)
    s = torch.nan_to_num(s, nan=-math.inf) if s.is_floating_point() else s
    if k < n:
        kth = torch.topk(s, k, sorted=False).values.min()
        above = (s > kth).nonzero().squeeze(1)
        at = (s == kth).nonzero().squeeze(1)[: k - above.numel()]
        idx = torch.cat([above, at]).sort().values
    else:
        idx = torch.arange(n, device=s.device)
    order = torch.sort(s[idx], descending=True, stable=True).indices
    return idx[order]


@dataclass
class Selection:
    """A selected batch.

    ``indices``: int64 positions into the candidate arrays, in pick order. ``scores``: float64, the score each
    pick had when it was picked (the in-batch updated score for MSAL / core-set; the item's strategy score,
    before in-batch updates, for exploration picks; 0 for ``random``). ``exploration``: True for the ε
    uniform-random picks.
    """

    indices: np.ndarray
    scores: np.ndarray
    exploration: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def _lazy_greedy(
    base: torch.Tensor,
    dist: torch.Tensor,
    alpha: float,
    embeddings: ArrayLike,
    k: int,
    device,
) -> tuple[list[int], list[float]]:
    """Greedy batch of ``k`` maximising ``s(x) = base(x) + α · d(x)``, adding each pick to the reference set.

    Exactly the naive greedy — at every step pick ``argmax s`` (lowest index on ties) among unpicked items,
    then ``d(x) ← min(d(x), ‖x − pick‖)`` — but touching only a shortlist: since ``d`` never grows, the
    initial score ``s₀`` bounds every later score. The shortlist holds the best items by ``s₀``; a step's
    best shortlist score is the true argmax when it beats ``s₀`` of the first item outside, otherwise the
    shortlist doubles (its new members get ``d`` updated with the picks so far) and the step is retried.
    Cost per step O(shortlist · dim) instead of O(n · dim).

    ``base`` float64 (n,), ``dist`` float32 (n,) min distances (finite), both on ``device``.
    """
    n = base.numel()
    s0 = base + alpha * dist.double()
    size = min(n, max(_SHORTLIST_MIN, 32 * k))
    ranked = top_k(s0, min(n, size + 1))
    cand = ranked[:size]
    cand_base = base[cand]
    cand_d = dist[cand].clone()
    cand_x = _gather(embeddings, cand, device)
    taken = torch.zeros(size, dtype=torch.bool, device=device)
    picks: list[int] = []
    pick_scores: list[float] = []
    pick_x: list[torch.Tensor] = []
    while len(picks) < k:
        s = cand_base + alpha * cand_d.double()
        s = s.masked_fill(taken, -math.inf)
        best = s.max()
        tied = (s == best).nonzero().squeeze(1)
        j = int(tied[cand[tied].argmin()]) if tied.numel() > 1 else int(tied[0])
        bound = s0[ranked[size]] if size < n else None
        if bound is not None and not bool(best > bound):
            # the first item outside the shortlist might still win: double the shortlist
            new_size = min(n, 2 * size)
            ranked = top_k(s0, min(n, new_size + 1))
            extra = ranked[size:new_size]
            extra_x = _gather(embeddings, extra, device)
            extra_d = dist[extra].clone()
            for px in pick_x:
                torch.minimum(extra_d, _pair_dist(extra_x, px), out=extra_d)
            cand = torch.cat([cand, extra])
            cand_base = torch.cat([cand_base, base[extra]])
            cand_d = torch.cat([cand_d, extra_d])
            cand_x = torch.cat([cand_x, extra_x])
            taken = torch.cat([taken, torch.zeros(extra.numel(), dtype=torch.bool, device=device)])
            size = new_size
            continue
        picks.append(int(cand[j]))
        pick_scores.append(float(best))
        taken[j] = True
        px = cand_x[j : j + 1].clone()
        pick_x.append(px)
        torch.minimum(cand_d, _pair_dist(cand_x, px), out=cand_d)
    return picks, pick_scores


def _gather(x: ArrayLike, idx: torch.Tensor, device) -> torch.Tensor:
    """Rows ``idx`` of ``x`` as float32 on ``device``."""
    if isinstance(x, torch.Tensor):
        return x[idx.to(x.device)].to(device=device, dtype=torch.float32)
    rows = np.asarray(x[np.sort(idx.cpu().numpy())], dtype=np.float32)
    order = np.argsort(np.argsort(idx.cpu().numpy(), kind="stable"), kind="stable")
    return torch.from_numpy(np.ascontiguousarray(rows[order])).to(device)


def _first_center(
    base: torch.Tensor, embeddings: ArrayLike, first: int, chunk_size: int, device
) -> tuple[torch.Tensor, float]:
    """Distances of the whole pool to one point (the reference set is empty before the first pick)."""
    point = _gather(embeddings, torch.tensor([first], device=device), device)
    d = _min_dist_update_tensor(None, embeddings, point, chunk_size, device)
    return d, float(base[first])


def _greedy_batch(
    base: torch.Tensor,
    dist: torch.Tensor | None,
    alpha: float,
    embeddings: ArrayLike,
    k: int,
    chunk_size: int,
    device,
    first_pick: int | None = None,
) -> tuple[list[int], list[float]]:
    """Greedy ``base + α · d`` batch; with no reference set (``dist`` None or all +inf) the first pick is
    ``first_pick`` (default: ``argmax base``) and distances start from it."""
    if dist is not None and not bool(torch.isinf(dist).all()):
        if not bool(torch.isfinite(dist).all()):
            raise ValueError("min distances contain non-finite values: update the cache for every candidate")
        return _lazy_greedy(base, dist, alpha, embeddings, k, device)
    first = int(top_k(base, 1)[0]) if first_pick is None else first_pick
    d, s = _first_center(base, embeddings, first, chunk_size, device)
    d[first] = 0.0
    if k == 1:
        return [first], [s]
    base_rest = base.clone()
    base_rest[first] = -math.inf  # never picked twice
    picks, scores = _lazy_greedy(base_rest, d, alpha, embeddings, k - 1, device)
    return [first, *picks], [s, *scores]


def _check_strategy(strategy: str, uncertainty: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {STRATEGIES}")
    if uncertainty not in UNCERTAINTIES:
        raise ValueError(f"unknown uncertainty {uncertainty!r}; one of {UNCERTAINTIES}")


def select_batch(
    strategy: str,
    k: int,
    *,
    probs: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    embeddings: ArrayLike | None = None,
    labelled_embeddings: ArrayLike | None = None,
    min_dist: ArrayLike | None = None,
    uncertainty: str = "margin",
    alpha: float = DEFAULT_MSAL_ALPHA,
    epsilon: float = 0.0,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK,
    device=None,
) -> Selection:
    """Choose ``k`` of ``n`` candidates to label next.

    * ``random``: uniform without replacement (NumPy ``default_rng(seed)``).
    * ``least_confidence`` / ``margin`` / ``entropy`` / ``bald`` / ``qbc``: exact top-k of the score of
      ``probs`` ``(M, n, C)`` or ``(n, C)``. ``scores`` (n,) may be passed instead of ``probs`` when the pool
      was scored elsewhere (e.g. chunk by chunk with :meth:`HeadCommittee.score`).
    * ``msal``: greedy ``U(x) + α · d(x)`` with ``U`` = ``uncertainty`` of ``probs`` (or the given
      ``scores``) and ``d`` the min distance to the labelled set, updated after every pick.
    * ``coreset``: greedy k-center, ``argmax d(x)`` with the same in-batch update.

    ``d`` comes from ``min_dist`` (n,) — a cache the caller keeps with :func:`update_min_distances` — or is
    computed from ``labelled_embeddings`` (|L|, dim); with neither (no labels yet) MSAL starts from its most
    uncertain item and core-set from a seeded random item. ``embeddings`` (n, dim) of the candidates are
    needed by MSAL and core-set (a NumPy memmap is fine: only chunks and shortlist rows are read).

    ε exploration: ``round(epsilon · k)`` of the picks are drawn uniformly at random (seeded) from the
    candidates the strategy did not pick, appended after the strategy's picks and flagged in
    ``Selection.exploration``.

    Everything runs on ``device`` (default: the device of ``probs`` / ``scores`` / ``embeddings``).
    """
    _check_strategy(strategy, uncertainty)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError("epsilon must be in [0, 1]")
    n = _n_candidates(probs, scores, embeddings, min_dist)
    k = max(0, min(int(k), n))
    n_explore = min(k, int(round(epsilon * k)))
    k_main = k - n_explore
    dev = _device(device) or _infer_device(probs, scores, embeddings)
    rng = np.random.default_rng(seed)

    item_score: torch.Tensor | None = None  # each item's strategy score before in-batch updates
    if strategy == "random":
        main = rng.choice(n, size=k_main, replace=False).astype(np.int64) if k_main else np.empty(0, np.int64)
        main_scores = np.zeros(k_main)
    elif strategy in SCORE_FUNCTIONS:
        item_score = _scores_for(strategy, probs, scores, dev)
        idx = top_k(item_score, k_main)
        main = idx.cpu().numpy().astype(np.int64)
        main_scores = item_score[idx].double().cpu().numpy()
    else:  # msal, coreset
        if embeddings is None:
            raise ValueError(f"{strategy} needs the candidates' embeddings")
        if strategy == "msal":
            base = _scores_for(uncertainty, probs, scores, dev).double()
        else:
            base = torch.zeros(n, dtype=torch.float64, device=dev)
            alpha = 1.0
        dist = _initial_distances(embeddings, labelled_embeddings, min_dist, chunk_size, dev)
        first = None
        if strategy == "coreset" and (dist is None or bool(torch.isinf(dist).all())):
            first = int(rng.integers(n))
        if k_main:
            picks, pick_scores = _greedy_batch(base, dist, alpha, embeddings, k_main, chunk_size, dev, first)
        else:
            picks, pick_scores = [], []
        main = np.asarray(picks, dtype=np.int64)
        main_scores = np.asarray(pick_scores, dtype=np.float64)
        item_score = base if dist is None or bool(torch.isinf(dist).all()) else base + alpha * dist.double()

    explore = _explore(n, main, n_explore, rng)
    if strategy == "random":
        explore_scores = np.zeros(n_explore)
    else:
        explore_scores = item_score[torch.from_numpy(explore).to(item_score.device)].double().cpu().numpy()
    return Selection(
        indices=np.concatenate([main, explore]).astype(np.int64),
        scores=np.concatenate([main_scores, explore_scores]).astype(np.float64),
        exploration=np.concatenate([np.zeros(len(main), bool), np.ones(n_explore, bool)]),
    )


def _n_candidates(probs, scores, embeddings, min_dist) -> int:
    sizes = {}
    if probs is not None:
        sizes["probs"] = int(probs.shape[-2])
    for name, a in (("scores", scores), ("embeddings", embeddings), ("min_dist", min_dist)):
        if a is not None:
            sizes[name] = int(a.shape[0])
    if not sizes:
        raise ValueError("pass probs, scores, embeddings or min_dist so the number of candidates is known")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"inputs disagree on the number of candidates: {sizes}")
    return next(iter(sizes.values()))


def _infer_device(*arrays) -> torch.device:
    for a in arrays:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


def _scores_for(name: str, probs, scores, device) -> torch.Tensor:
    if scores is not None:
        return _tensor(scores, device)
    if probs is None:
        raise ValueError(f"{name} needs probs (or precomputed scores)")
    return score(name, as_probs(probs, device))


def _initial_distances(embeddings, labelled, min_dist, chunk_size, device) -> torch.Tensor | None:
    if min_dist is not None:
        d = _tensor(min_dist, device, torch.float32)
        if d.shape != (len(embeddings),):
            raise ValueError(f"min_dist has shape {tuple(d.shape)}, expected ({len(embeddings)},)")
        return d
    if labelled is None or len(labelled) == 0:
        return None
    pts = _tensor(labelled, device, torch.float32).reshape(-1, _dim(embeddings))
    return _min_dist_update_tensor(None, embeddings, pts, chunk_size, device)


def _explore(n: int, picked: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uniform draws without replacement from ``range(n)`` minus ``picked``."""
    if count == 0:
        return np.empty(0, dtype=np.int64)
    if len(picked) == 0:
        return rng.choice(n, size=count, replace=False).astype(np.int64)
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), picked, assume_unique=False)
    return rng.choice(rest, size=count, replace=False).astype(np.int64)


#: Cold-start methods of :func:`cold_start`; the first is the default.
COLD_START_METHODS = ("typiclust", "kcenter", "kmeans++")


def cold_start(
    embeddings: ArrayLike,
    k: int,
    *,
    seed: int = 0,
    method: str = "typiclust",
    labelled: ArrayLike | None = None,
    labelled_classes: np.ndarray | None = None,
    prior=None,
    chunk_size: int = DEFAULT_CHUNK,
    device=None,
) -> np.ndarray:
    """A first batch before any model exists: int64 positions of ``k`` rows of ``embeddings``, in pick order.

    ``method="typiclust"`` (default): typical and diverse (``acquisition.coldstart.typical_diverse``):
    k-means with ``|labelled| + k`` clusters, the most typical point of each largest cluster no labelled
    point covers. ``labelled`` (|L|, dim) are the points already labelled or being labelled,
    ``labelled_classes`` their classes (-1 unknown), ``prior`` a class prior (``acquisition.zeroshot``)
    that steers picks towards classes not covered yet.
    ``method="kcenter"``: a seeded uniform first point, then k-center greedy (each next point maximises its
    distance to those already chosen) — the batch spreads over the whole embedding space, outliers first.
    ``method="kmeans++"``: k-means++ seeding (each next point drawn with probability ∝ d(x)², seeded),
    which favours dense regions a little more and outliers a little less.
    ``labelled``, ``labelled_classes`` and ``prior`` are used by ``typiclust`` only, which computes on the CPU
    (k-means on a subsample and per-cluster typicality cost seconds on a 1M pool; ``device`` is for the others).
    """
    if method not in COLD_START_METHODS:
        raise ValueError(f"method must be one of {COLD_START_METHODS}, got {method!r}")
    if method == "typiclust":
        x = embeddings.cpu().numpy() if isinstance(embeddings, torch.Tensor) else embeddings
        ref = labelled.cpu().numpy() if isinstance(labelled, torch.Tensor) else labelled
        return typical_diverse(
            x, k, labelled=ref, labelled_classes=labelled_classes, prior=prior, seed=seed, chunk_size=chunk_size
        )
    n = len(embeddings)
    k = max(0, min(int(k), n))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    dev = _device(device) or _infer_device(embeddings)
    rng = np.random.default_rng(seed)
    first = int(rng.integers(n))
    if method == "kcenter":
        base = torch.zeros(n, dtype=torch.float64, device=dev)
        picks, _ = _greedy_batch(base, None, 1.0, embeddings, k, chunk_size, dev, first)
        return np.asarray(picks, dtype=np.int64)
    picks = [first]
    d = torch.full((n,), math.inf, dtype=torch.float32, device=dev)
    while len(picks) < k:
        point = _gather(embeddings, torch.tensor([picks[-1]], device=dev), dev)
        d = _min_dist_update_tensor(d, embeddings, point, chunk_size, dev)
        w = d.double().square().cpu().numpy()
        w[picks] = 0.0
        total = w.sum()
        if total <= 0:  # fewer distinct points than k: fill with unpicked rows, seeded
            rest = np.setdiff1d(np.arange(n), picks)
            picks.extend(rng.choice(rest, size=k - len(picks), replace=False).tolist())
            break
        pick = int(np.searchsorted(np.cumsum(w), rng.random() * total, side="right"))
        picks.append(min(pick, n - 1) if w[min(pick, n - 1)] > 0 else int(np.flatnonzero(w)[-1]))
    return np.asarray(picks[:k], dtype=np.int64)
