r"""Multi-label annotation (tag sets): agreement and aggregation, pure NumPy + SciPy.

No Django here. In a multi-label project every answer is a *tag set*: any subset of the project's
L labels, the empty set included. Answers come in long format, as in :mod:`annotation.agreement`,
one row per answer:

    items[n]    index of the item of answer n       (0 <= items[n] < n_items)
    workers[n]  index of the annotator of answer n  (0 <= workers[n] < n_workers)
    Y[n, l]     1 when answer n includes tag l, else 0 (an (n_answers, L) 0/1 array or scipy.sparse)

plus the counts (``max + 1`` when not given; ``n_labels`` defaults to ``Y.shape[1]`` and, when
larger, adds tags nobody chose). Nothing loops over answers in Python.

Agreement
---------
As in :mod:`annotation.agreement`, one answer per (item, annotator) counts: the *last* one in the
input (an edit replaces the earlier answer); undefined values are ``nan``, never an exception.

- :func:`per_label_kappa`: each tag as its own present / absent question; per tag, Cohen's kappa of
  every pair of annotators over the items they share, averaged over the pairs with at least
  ``min_overlap`` shared items weighted by the shared items (the project kappa of the
  single-label aggregation: ``annotation.services.aggregation._project_kappa`` over
  :func:`annotation.agreement.pairwise_kappa`).
- :func:`pairwise_set_agreement`: the per-annotator-pair heatmap. For annotators a and b and the
  :math:`N_{ab}` items both answered, a Cohen-style chance-corrected agreement on whole tag sets
  with a set distance d (weighted kappa with disagreement weights d, Cohen 1968):

  .. math::
      \kappa_d(a, b) = 1 - \frac{D_o}{D_e},\qquad
      D_o = \frac1{N_{ab}}\sum_i d(S_{ai}, S_{bi}),\qquad
      D_e = \frac1{N_{ab}^2}\sum_{i,j} d(S_{ai}, S_{bj})

  (:math:`D_e`: each annotator's own tag sets on the shared items paired at random). With
  single-tag answers and MASI (which is then the nominal 0/1 distance) it *is* Cohen's kappa.
- :func:`krippendorff_alpha_sets`: Krippendorff's alpha with a set distance, coincidence based:
  with :math:`m_u \ge 2` values on item u and :math:`n = \sum_u m_u` pairable values,

  .. math::
      D_o = \frac1n \sum_u \frac{1}{m_u - 1}\sum_{i \ne j \in u} d(v_i, v_j),\qquad
      D_e = \frac{1}{n(n-1)}\sum_{i \ne j} d(v_i, v_j),\qquad
      \alpha = 1 - \frac{D_o}{D_e}

  (Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011; with MASI as Passonneau,
  "Measuring agreement on set-valued items (MASI)", LREC 2006). :math:`D_e` runs over *distinct*
  tag sets: with :math:`n_s` pairable values equal to set s, :math:`\sum_{i\ne j} d = n^2 -
  \sum_{s,t} n_s n_t\,\mathrm{sim}(s, t)` (``sim = 1 - d`` and ``d(s, s) = 0``), and ``sim`` is 0 for
  disjoint sets, so only the pairs of distinct sets that share a tag are visited (a sparse
  product, in row blocks of bounded size).

Distances (:func:`jaccard_distance`, :func:`masi_distance`, and ``"nominal"``: 0 for the same set,
else 1), with J the Jaccard index :math:`|A\cap B| / |A\cup B|`: Jaccard :math:`1 - J`; MASI
:math:`1 - J\,M` with M = 1 for identical sets, 2/3 when one is a subset of the other, 1/3 when
they overlap otherwise, 0 when disjoint. Two empty sets are identical: distance 0.

Aggregation
-----------
:class:`BinaryRelevanceDawidSkene`: one present / absent question per tag, with the annotators'
skill shared across tags where the data are few (model in the class docstring);
:func:`tag_vote_shares` is majority vote per tag. :func:`tag_confidence` and
:func:`disputed_tags` turn posteriors into routing figures: an item is final when every tag is
confident, and a reviewer sees the disputed tags.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from scipy.special import digamma, expit
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from annotation.agreement import MIN_OVERLAP, as_annotations, deduplicate
from annotation.dawid_skene import (
    MIN_CALIBRATION_GOLD,
    _beta_binomial_strength,
    _beta_binomial_strength_per_row,
)

__all__ = [
    "DISTANCES",
    "BinaryRelevanceDawidSkene",
    "TagAnswers",
    "as_tag_answers",
    "disputed_tags",
    "jaccard_distance",
    "krippendorff_alpha_sets",
    "masi_distance",
    "pairwise_set_agreement",
    "per_label_kappa",
    "tag_confidence",
    "tag_vote_shares",
]

#: Set distances understood by the agreement functions.
DISTANCES = ("masi", "jaccard", "nominal")
#: Entries of one block of the sparse set-similarity matrix (bounds the memory of D_e).
_BLOCK_ENTRIES = 4_000_000
_TEMPERATURE_BOUNDS = (0.05, 3.0)  # as HierarchicalDawidSkene
_MAX_CALIBRATION_CELLS = 2_000_000


# -- input ------------------------------------------------------------------------------------


class TagAnswers(NamedTuple):
    """Validated long-format tag-set answers: ``Y`` is a canonical (n_answers, n_labels) CSR of ones."""

    items: np.ndarray
    workers: np.ndarray
    Y: sp.csr_matrix
    n_items: int
    n_workers: int
    n_labels: int


def as_tag_answers(items, workers, Y, *, n_items=None, n_workers=None, n_labels=None) -> TagAnswers:
    """Check and convert long-format tag-set answers.

    ``Y``: (n_answers, L) array-like of 0/1 (or booleans) or a scipy.sparse matrix of them.
    ``n_labels`` defaults to ``Y.shape[1]``; a larger value adds tags nobody chose.
    """
    if sp.issparse(Y):
        matrix = sp.csr_matrix(Y, dtype=np.float64, copy=True)
    else:
        array = np.asarray(Y)
        if array.ndim != 2:
            raise ValueError(f"Y must be two-dimensional (answers x labels), got shape {array.shape}")
        matrix = sp.csr_matrix(array.astype(np.float64))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if matrix.nnz and not np.all(matrix.data == 1.0):
        raise ValueError("Y must hold 0/1 values")
    labels = matrix.shape[1] if n_labels is None else int(n_labels)
    if labels < matrix.shape[1]:
        raise ValueError(f"n_labels={labels} but Y has {matrix.shape[1]} columns")
    if labels > matrix.shape[1]:
        matrix = sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], labels))
    matrix.sort_indices()
    # agreement's checks of the index arrays (a zero label per answer stands in for Y)
    data = as_annotations(
        items, workers, np.zeros(matrix.shape[0], dtype=np.int64), n_items=n_items, n_workers=n_workers
    )
    if data.items.size != matrix.shape[0]:
        raise ValueError(f"items and Y differ in length: {data.items.size} != {matrix.shape[0]}")
    return TagAnswers(data.items, data.workers, matrix, data.n_items, data.n_workers, labels)


def _deduplicated(items, workers, Y, **counts) -> TagAnswers:
    """One answer per (item, annotator), the last in input order, sorted by (item, annotator)."""
    data = as_tag_answers(items, workers, Y, **counts)
    kept = deduplicate(
        data.items, data.workers, np.arange(data.items.size), n_items=data.n_items, n_workers=data.n_workers
    )
    return data._replace(items=kept.items, workers=kept.workers, Y=data.Y[kept.labels])


def _distinct_sets(Y: sp.csr_matrix) -> tuple[np.ndarray, sp.csr_matrix]:
    """Each row's index among the distinct rows, and the distinct rows as a CSR (sorted by bit pattern)."""
    n, L = Y.shape
    width = max((L + 7) // 8, 1)
    rows = np.repeat(np.arange(n), np.diff(Y.indptr))
    packed = np.zeros(n * width, dtype=np.uint8)
    # packbits layout: byte col // 8, bit 7 - col % 8; a row's tags are distinct, so adding is or-ing
    np.add.at(packed, rows * width + Y.indices // 8, (1 << (7 - Y.indices % 8)).astype(np.uint8))
    packed = packed.reshape(n, width)
    if width <= 8:
        keys = np.zeros((n, 8), dtype=np.uint8)
        keys[:, :width] = packed
        keys = keys.view(np.uint64).ravel()
    else:
        keys = np.ascontiguousarray(packed).view(np.dtype((np.void, width))).ravel()
    _, first, ids = np.unique(keys, return_index=True, return_inverse=True)
    return ids.ravel().astype(np.int64), Y[first]


def _check_distance(distance: str) -> str:
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, not {distance!r}")
    return distance


# -- set distances ------------------------------------------------------------------------------


def jaccard_distance(a, b) -> float:
    """``1 - |a & b| / |a | b|`` of two sets (any iterables of hashable tags); 0 for two empty sets."""
    a, b = set(a), set(b)
    union = len(a | b)
    return 0.0 if union == 0 else 1.0 - len(a & b) / union


def masi_distance(a, b) -> float:
    """MASI distance (Passonneau 2006): ``1 - J * M``, J the Jaccard index and M = 1 (identical),
    2/3 (one a subset of the other), 1/3 (overlapping otherwise), 0 (disjoint); 0 for two empty sets.

    NLTK's ``nltk.metrics.distance.masi_distance`` rounds M to 0.67 / 0.33 (its example
    ``{1, 2}`` vs ``{1, 2, 3, 4}`` gives 0.665; here ``1 - (1/2)(2/3) = 2/3``).
    """
    a, b = set(a), set(b)
    if not a and not b:
        return 0.0
    shared = len(a & b)
    if a == b:
        m = 1.0
    elif shared == min(len(a), len(b)):
        m = 2.0 / 3.0
    elif shared > 0:
        m = 1.0 / 3.0
    else:
        m = 0.0
    return 1.0 - shared / len(a | b) * m


def _similarity(shared, size_a, size_b, distance: str, *, table: bool = True) -> np.ndarray:
    """``1 - d`` from the intersection and the two sizes (arrays), for ``masi`` / ``jaccard``.

    Sets of at most 40 tags (every real tag set): a lookup in the table of every (shared, size,
    size) triple, one gather instead of a dozen passes over the pairs."""
    largest = int(max(np.max(size_a, initial=0), np.max(size_b, initial=0)))
    if table and largest <= 40 and np.size(shared) > 4096:
        k = largest + 1
        grid = np.indices((k, k, k)).reshape(3, -1)
        values = _similarity(grid[0], grid[1], grid[2], distance, table=False)
        index = (np.asarray(shared, dtype=np.int64) * k + np.asarray(size_a)) * k + np.asarray(size_b)
        return values[index]
    shared, size_a, size_b = (np.asarray(x, dtype=np.float64) for x in (shared, size_a, size_b))
    union = size_a + size_b - shared
    jaccard = np.divide(shared, union, out=np.ones_like(union), where=union > 0)
    if distance == "jaccard":
        return jaccard
    identical = (shared == size_a) & (shared == size_b)
    m = np.where(
        identical, 1.0, np.where(shared == np.minimum(size_a, size_b), 2.0 / 3.0, np.where(shared > 0, 1.0 / 3.0, 0.0))
    )
    return jaccard * m


def _pair_distances(S: sp.csr_matrix, u: np.ndarray, v: np.ndarray, distance: str) -> np.ndarray:
    """d(S[u], S[v]) for aligned arrays of distinct-set indices (each distinct pair computed once)."""
    if u.size == 0:
        return np.zeros(0)
    if distance == "nominal":
        return (u != v).astype(np.float64)
    n_sets = S.shape[0]
    keys, back = np.unique(u * n_sets + v, return_inverse=True)
    a, b = np.divmod(keys, n_sets)
    sizes = np.diff(S.indptr)
    shared = np.asarray(S[a].multiply(S[b]).sum(axis=1)).ravel()
    return 1.0 - _similarity(shared, sizes[a], sizes[b], distance)[back.ravel()]


def _similarity_blocks(S: sp.csr_matrix, distance: str):
    """Yield ``(start, stop, block)``: rows start:stop of the sparse (n_sets, n_sets) similarity
    ``1 - d``, non-zero only for identical or overlapping sets; blocks of at most about
    ``_BLOCK_ENTRIES`` stored entries."""
    n_sets = S.shape[0]
    if distance == "nominal":
        yield 0, n_sets, sp.identity(n_sets, format="csr")
        return
    sizes = np.diff(S.indptr)
    by_label = S.T.tocsr()
    holders = np.diff(by_label.indptr)  # sets holding each label
    rows = np.repeat(np.arange(n_sets), sizes)
    cost = np.cumsum(np.bincount(rows, weights=holders[S.indices], minlength=n_sets) + 1.0)  # >= entries so far
    cuts = np.searchsorted(cost, np.arange(_BLOCK_ENTRIES, cost[-1] if n_sets else 0, _BLOCK_ENTRIES)) + 1
    bounds = np.unique(np.concatenate([[0], np.minimum(cuts, n_sets), [n_sets]]))
    empty = np.flatnonzero(sizes == 0)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        shared = (S[start:stop] @ by_label).tocsr()
        row_of = np.repeat(np.arange(start, stop), np.diff(shared.indptr))
        shared.data = _similarity(shared.data, sizes[row_of], sizes[shared.indices], distance)
        for e in empty[(empty >= start) & (empty < stop)]:  # the empty set is identical to itself
            shared = shared + sp.csr_matrix(([1.0], ([e - start], [e])), shape=shared.shape)
        yield start, stop, shared


def _pairs_within_items(items: np.ndarray, n_items: int, *, self_pairs: bool) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (a, b) of rows on the same item (rows sorted by item); a == b only with ``self_pairs``."""
    m = np.bincount(items, minlength=n_items)
    start = np.concatenate([[0], np.cumsum(m)[:-1]]).astype(np.int64)
    per_row = m[items]
    first = np.repeat(np.arange(items.size), per_row)
    offset = np.arange(first.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    second = start[items[first]] + offset
    if not self_pairs:
        keep = first != second
        first, second = first[keep], second[keep]
    return first, second


# -- agreement ----------------------------------------------------------------------------------


def _kappa(p_o, p_e) -> np.ndarray:
    """``(p_o - p_e) / (1 - p_e)``, nan where ``p_e == 1`` (as :mod:`annotation.agreement`)."""
    room = 1.0 - np.asarray(p_e, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isclose(room, 0.0, atol=1e-12), np.nan, (np.asarray(p_o) - p_e) / room)


def per_label_kappa(
    items,
    workers,
    Y,
    *,
    n_items: int | None = None,
    n_workers: int | None = None,
    n_labels: int | None = None,
    min_overlap: int = MIN_OVERLAP,
) -> np.ndarray:
    r"""(L,) mean pairwise Cohen's kappa of each tag, read as a present / absent question.

    For tag l and annotators a < b sharing :math:`N_{ab}` items, with :math:`x_a, x_b` the items
    on which each chose l and :math:`x_{ab}` those on which both did:

    .. math::
        p_o = \frac{N_{ab} - x_a - x_b + 2x_{ab}}{N_{ab}},\qquad
        p_e = \frac{x_a x_b + (N_{ab} - x_a)(N_{ab} - x_b)}{N_{ab}^2},\qquad
        \kappa_{ab}(l) = \frac{p_o - p_e}{1 - p_e}

    and the tag's figure is :math:`\sum N_{ab}\kappa_{ab}(l) / \sum N_{ab}` over the pairs with
    :math:`N_{ab} \ge` ``min_overlap`` and a defined kappa, exactly the project kappa the
    single-label aggregation takes from :func:`annotation.agreement.pairwise_kappa`. nan for a tag
    without such a pair (e.g. a tag nobody chose: every pair's chance agreement is 1).
    """
    data = _deduplicated(items, workers, Y, n_items=n_items, n_workers=n_workers, n_labels=n_labels)
    L, W = data.n_labels, data.n_workers
    first, second = _pairs_within_items(data.items, data.n_items, self_pairs=False)
    upper = data.workers[first] < data.workers[second]
    first, second = first[upper], second[upper]
    if first.size == 0:
        return np.full(L, np.nan)
    keys, pair = np.unique(data.workers[first] * W + data.workers[second], return_inverse=True)
    pair = pair.ravel()
    group = sp.csr_matrix((np.ones(pair.size), (pair, np.arange(pair.size))), shape=(keys.size, pair.size))
    y_a, y_b = data.Y[first], data.Y[second]
    x_a = (group @ y_a).toarray()
    x_b = (group @ y_b).toarray()
    x_ab = (group @ y_a.multiply(y_b)).toarray()
    shared = np.bincount(pair, minlength=keys.size).astype(np.float64)[:, None]
    p_o = (shared - x_a - x_b + 2.0 * x_ab) / shared
    p_e = (x_a * x_b + (shared - x_a) * (shared - x_b)) / shared**2
    kappa = _kappa(p_o, p_e)
    use = (shared >= max(min_overlap, 1)) & np.isfinite(kappa)
    weights = np.where(use, shared, 0.0)
    total = weights.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (np.where(use, kappa, 0.0) * weights).sum(axis=0) / total, np.nan)


def pairwise_set_agreement(
    items,
    workers,
    Y,
    *,
    distance: str = "masi",
    n_items: int | None = None,
    n_workers: int | None = None,
    n_labels: int | None = None,
    min_shared: int = MIN_OVERLAP,
    return_overlap: bool = False,
):
    r"""(n_workers, n_workers) chance-corrected tag-set agreement of every two annotators.

    Entry (a, b) is :math:`1 - D_o / D_e` over the :math:`N_{ab}` items both answered (formulas in
    the module docstring): the mean distance of their tag sets on the same item against the mean
    distance of their tag sets paired at random (each annotator's own sets). 1 is perfect
    agreement, 0 chance level. With single-tag answers and MASI or ``"nominal"`` it is the entry
    of :func:`annotation.agreement.pairwise_kappa`, diagonal included (1 for an annotator with at
    least ``min_shared`` items who used more than one tag set).

    nan when :math:`N_{ab} <` ``min_shared`` (default :data:`annotation.agreement.MIN_OVERLAP`) or
    :math:`D_e = 0` (both always gave one and the same set). Symmetric. ``distance``: ``"masi"``
    (default), ``"jaccard"`` or ``"nominal"``. With ``return_overlap=True`` also returns
    :math:`N_{ab}`.
    """
    distance = _check_distance(distance)
    data = _deduplicated(items, workers, Y, n_items=n_items, n_workers=n_workers, n_labels=n_labels)
    W = data.n_workers
    ids, S = _distinct_sets(data.Y)
    n_sets = S.shape[0]
    first, second = _pairs_within_items(data.items, data.n_items, self_pairs=True)
    pair = data.workers[first] * W + data.workers[second]
    shared = np.bincount(pair, minlength=W * W).astype(np.float64)
    apart = np.bincount(pair, weights=_pair_distances(S, ids[first], ids[second], distance), minlength=W * W)
    # Expected: sum_{u,v} C_a[p, u] C_b[p, v] (1 - sim(u, v)) = N_p^2 - (C_a sim C_b')_pp
    keys, at = np.unique(pair, return_inverse=True)
    at = at.ravel()
    ones = np.ones(at.size)
    sets_a = sp.csr_matrix((ones, (at, ids[first])), shape=(keys.size, n_sets))
    sets_b = sp.csr_matrix((ones, (at, ids[second])), shape=(keys.size, n_sets)).tocsc()
    alike = np.zeros(keys.size)
    for start, stop, block in _similarity_blocks(S, distance):
        alike += np.asarray((sets_a[:, start:stop] @ block).multiply(sets_b).sum(axis=1)).ravel()
    n_p = shared[keys]
    expected = np.zeros(W * W)
    expected[keys] = (n_p**2 - alike) / np.maximum(n_p**2, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = apart / shared
    agreement = _kappa(1.0 - observed, 1.0 - expected)
    agreement[shared < max(min_shared, 1)] = np.nan
    agreement = agreement.reshape(W, W)
    if return_overlap:
        return agreement, shared.reshape(W, W).astype(np.int64)
    return agreement


def krippendorff_alpha_sets(
    items,
    workers,
    Y,
    *,
    distance: str = "masi",
    n_items: int | None = None,
    n_workers: int | None = None,
    n_labels: int | None = None,
) -> float:
    r"""Krippendorff's alpha of tag sets with a set distance (``"masi"``, ``"jaccard"`` or ``"nominal"``).

    Coincidence based (formulas in the module docstring): only items with two or more answers
    count, each value's disagreements weighted :math:`1/(m_u - 1)`; the expected disagreement over
    all pairs of pairable values is computed over distinct tag sets (a sparse product over the
    pairs that share a tag), so 100k answers take well under a second. With single-tag answers
    every distance is the nominal one and this is :func:`annotation.agreement.krippendorff_alpha`.
    nan when no item has two answers or every pairable value is the same set.
    """
    distance = _check_distance(distance)
    data = _deduplicated(items, workers, Y, n_items=n_items, n_workers=n_workers, n_labels=n_labels)
    m = np.bincount(data.items, minlength=data.n_items)
    pairable = m[data.items] >= 2
    if not pairable.any():
        return float("nan")
    ids, S = _distinct_sets(data.Y[np.flatnonzero(pairable)])
    items_kept = data.items[pairable]
    n = float(items_kept.size)
    first, second = _pairs_within_items(items_kept, data.n_items, self_pairs=False)
    weights = 1.0 / (m[items_kept[first]] - 1.0)
    observed = float((_pair_distances(S, ids[first], ids[second], distance) * weights).sum()) / n
    counts = np.bincount(ids, minlength=S.shape[0]).astype(np.float64)
    alike = sum(float(counts[start:stop] @ (block @ counts)) for start, stop, block in _similarity_blocks(S, distance))
    expected = (n * n - alike) / (n * (n - 1.0))
    if expected <= 1e-15:
        return float("nan")
    return float(1.0 - observed / expected)


# -- aggregation --------------------------------------------------------------------------------


def tag_vote_shares(items, Y, *, n_items: int | None = None, n_labels: int | None = None) -> np.ndarray:
    """Majority vote per tag: (n_items, L) share of each item's answers that include the tag.

    Every answer counts (duplicates included, as the aggregators); an item nobody answered gets
    0.5. A tag is in the majority set when its share is above 0.5.
    """
    data = as_tag_answers(
        items, np.zeros(np.asarray(items).shape, dtype=np.int64), Y, n_items=n_items, n_labels=n_labels
    )
    per_item = np.bincount(data.items, minlength=data.n_items).astype(np.float64)
    votes = sp.csr_matrix(
        (np.ones(data.items.size), (data.items, np.arange(data.items.size))), shape=(data.n_items, data.items.size)
    )
    counts = (votes @ data.Y).toarray()
    return np.divide(counts, per_item[:, None], out=np.full_like(counts, 0.5), where=per_item[:, None] > 0)


def tag_confidence(posteriors) -> np.ndarray:
    """(n_items,) confidence of an item's whole tag set: ``min over tags of max(p, 1 - p)``.

    An item is final when this reaches the project's threshold (every tag decided); 1.0 for L = 0.
    """
    p = np.asarray(posteriors, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"posteriors must be (n_items, n_labels), got shape {p.shape}")
    return np.maximum(p, 1.0 - p).min(axis=1, initial=1.0)


def disputed_tags(posteriors, min_confidence: float) -> list[np.ndarray]:
    """Per item, the indices of the tags whose ``max(p, 1 - p)`` is below ``min_confidence``:
    what a reviewer is shown (an empty array: the item is final)."""
    p = np.asarray(posteriors, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"posteriors must be (n_items, n_labels), got shape {p.shape}")
    rows, tags = np.nonzero(np.maximum(p, 1.0 - p) < min_confidence)
    return np.split(tags, np.cumsum(np.bincount(rows, minlength=p.shape[0]))[:-1])


def _true_tags(true_Y, n_items: int, n_labels: int) -> np.ndarray | None:
    if true_Y is None:
        return None
    gold = np.asarray(true_Y)
    if gold.shape != (n_items, n_labels) or not np.issubdtype(gold.dtype, np.integer):
        raise ValueError(f"true_Y must be an integer array of shape ({n_items}, {n_labels}), -1 where unknown")
    if gold.size and (gold.min() < -1 or gold.max() > 1):
        raise ValueError("true_Y must hold 0, 1 or -1")
    return gold if (gold >= 0).any() else None


def _logit(p):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


class BinaryRelevanceDawidSkene(BaseEstimator):
    r"""Dawid-Skene for tag sets: one present / absent question per tag, skill shared across tags.

    Model. Item i carries tag l (:math:`z_{il} = 1`) with the tag's prevalence :math:`\rho_l`,
    independently across tags. Annotator r includes a present tag with their *sensitivity*
    :math:`s_{rl}` and leaves out an absent one with their *specificity* :math:`c_{rl}`; answers are
    independent given the :math:`z`. So the log-odds of tag l on item i is

    .. math::
        \operatorname{logit} P(z_{il} = 1) = \operatorname{logit}\rho_l
        + \sum_{r \to i} \Big[y_{irl}\log\frac{s_{rl}}{1 - c_{rl}}
        + (1 - y_{irl})\log\frac{1 - s_{rl}}{c_{rl}}\Big]

    and EM alternates this E-step with an M-step on the expected true / false positives and
    negatives of every (annotator, tag).

    Sharing. L tags times W annotators are two numbers each, too many for a few hundred answers
    per annotator, and most (annotator, tag) cells see a handful of positives. So each of
    :math:`s_{rl}` and :math:`c_{rl}` gets :class:`annotation.dawid_skene.HierarchicalDawidSkene`'s
    partial pooling, a rung per level:

    - pool rate :math:`\bar s` (all annotators, all tags);
    - annotator rate :math:`s_r` (the annotator's sensitivity over every tag) and tag rate
      :math:`\bar s_l` (how easy tag l is to see), each Beta-shrunk towards :math:`\bar s` with
      strengths :math:`\kappa_w, \kappa_t`;
    - :math:`s_{rl} \sim \mathrm{Beta}(\kappa_r m_{rl}, \kappa_r(1 - m_{rl}))` with
      :math:`\operatorname{logit} m_{rl} = \operatorname{logit} s_r + \operatorname{logit}\bar s_l
      - \operatorname{logit}\bar s`, one strength :math:`\kappa_r` per annotator;

    and the same for the specificities. Every strength is chosen from the data by empirical Bayes
    (beta-binomial evidence of the expected counts, the largest strength within 0.5 nat of the
    best, the same searches and schedule as ``HierarchicalDawidSkene``): with few answers an
    annotator's tags share their sensitivity and specificity, with many each (annotator, tag) gets
    its own. The prevalences are *not* pooled (tags differ by orders of magnitude in frequency):
    :math:`\rho_l \sim \mathrm{Beta}(a, a)`, ``a = prior_smoothing``, from the tag's own expected
    count. The E-step uses the variational weights :math:`\exp E[\log\cdot]` (digamma of the Beta
    posteriors), as ``HierarchicalDawidSkene``; EM starts from the per-tag vote shares.

    Which model, in the end. As ``HierarchicalDawidSkene`` does, the fit is then checked on held-out
    answers against the one-coin model (one accuracy per annotator for every tag, present or
    absent, refitted from the same posteriors): every answer on an item with two or more is
    predicted from its item's other answers, tag by tag (present where the log-odds without it is
    positive), and the tag-conditional model stays only if it predicts more of them right by more
    than one standard error of the paired difference (per answer; by the held-out log-likelihood
    when both predict every held-out tag alike). With many rare tags one-coin lets the prevalence
    outvote two of three annotators and loses; on binary sets whose errors follow the item
    (ZenCrowd) it wins, as there (``bench/multilabel_aggregation.py``, table 2).

    Gold (``true_Y``) clamps its cells at every E-step; after convergence the log-odds are divided
    by a temperature :math:`\tau` (``calibrate``) that maximises the held-out likelihood of the
    gold cells of at least ``MIN_CALIBRATION_GOLD`` gold items, or else of the answers on items
    with two or more answers, each predicted from the item's other answers (as
    ``HierarchicalDawidSkene``). It never changes which side of 0.5 a posterior is on.

    Cost per EM iteration: O(answers x L) for the dense (n_items, L) products plus O(tags chosen)
    for the sparse part; the strength searches cost O(W x L) log-gamma terms each. The model
    choice runs EM a second time (one-coin, from the first fit's posteriors): about one CPU-second
    for 100k answers over 28 tags.

    Parameters
    ----------
    max_iter : int, default 100
    tol : float, default 1e-5
        Stop when the log-likelihood per answer changes by less than ``tol``.
    prior_smoothing : float, default 1.0
        Beta(a, a) pseudo-counts of each tag's prevalence (a tag nobody chose gets about
        ``a / n_items``).
    calibrate : bool, default True
        Fit the temperature τ (else τ = 1).
    max_calibration_answers : int, default 20000
        Held-out answers (evenly spread, each with all its L cells) used to fit τ; ten times as
        many (at most 2M cells) for the model choice.

    Learned attributes
    ------------------
    posteriors_ : (n_items, L) P(tag present); gold cells 0/1; unanswered items get the (tempered)
        prevalences.
    tags_ : (n_items, L) int8, ``posteriors_ > 0.5`` (what :meth:`predict` returns).
    prevalence_ : (L,) posterior-mean prevalences.
    sensitivity_, specificity_ : (n_workers,) each annotator's rate over all tags (the shared
        level, shrunk towards the pool; the pool's for an annotator without answers).
    tag_sensitivity_, tag_specificity_ : (n_workers, L) posterior means of :math:`s_{rl}, c_{rl}`.
    prior_log_odds_, present_log_odds_, absent_log_odds_ : (L,), (n_workers, L), (n_workers, L):
        the tempered weights the posteriors are made of, ``logit posteriors_[i, l] =
        prior_log_odds_[l] + sum over i's answers of present_log_odds_[r, l]`` (tag chosen) or
        ``absent_log_odds_[r, l]`` (not chosen); :meth:`item_posterior` recomputes one item.
    strengths_ : dict of the chosen prior strengths (``sensitivity_tag``, ``sensitivity_annotator``,
        ``sensitivity_annotator_tag`` (one per annotator), the same for ``specificity_*``, and
        ``annotator``, the one-coin model's).
    model_ : ``"tag-conditional"`` or ``"one-coin"``, the model kept; with one-coin the
        sensitivities and specificities are one accuracy per annotator.
    selection_ : dict: ``gain`` (right held-out tags per answer, tag-conditional minus one-coin),
        ``se`` (its standard error), ``answers`` (held out), ``criterion`` (``labels`` or
        ``log-likelihood``; absent when no item has two answers, and the tag-conditional model stays).
    temperature_, n_iter_, converged_, log_likelihood_, n_items_, n_workers_, n_labels_,
    classes_ (``np.arange(L)``, the tag of each column).

    Deterministic (no randomness).
    """

    def __init__(
        self,
        *,
        max_iter: int = 100,
        tol: float = 1e-5,
        prior_smoothing: float = 1.0,
        calibrate: bool = True,
        max_calibration_answers: int = 20000,
    ):
        self.max_iter = max_iter
        self.tol = tol
        self.prior_smoothing = prior_smoothing
        self.calibrate = calibrate
        self.max_calibration_answers = max_calibration_answers

    # -- public API -------------------------------------------------------------------------------

    def fit(self, items, workers, Y, *, n_items=None, n_workers=None, n_labels=None, true_Y=None):
        """Fit on long-format tag-set answers. ``true_Y``: optional (n_items, L) integer array of
        gold tags (1 present, 0 absent), -1 where unknown (a row of -1: an item without gold)."""
        if self.max_iter < 0 or self.tol < 0 or self.prior_smoothing <= 0 or self.max_calibration_answers < 1:
            raise ValueError(f"{self!r}: max_iter, tol must be >= 0, prior_smoothing > 0, max_calibration_answers >= 1")
        data = as_tag_answers(items, workers, Y, n_items=n_items, n_workers=n_workers, n_labels=n_labels)
        if data.n_labels == 0:
            raise ValueError("no labels: Y needs at least one column (or pass n_labels)")
        gold = _true_tags(true_Y, data.n_items, data.n_labels)
        self.n_items_, self.n_workers_, self.n_labels_ = data.n_items, data.n_workers, data.n_labels
        self._fit(data, gold)
        self.tags_ = (self.posteriors_ > 0.5).astype(np.int8)
        self.classes_ = np.arange(data.n_labels)
        return self

    def predict(self) -> np.ndarray:
        """(n_items, L) 0/1: the tags whose posterior is above 0.5."""
        check_is_fitted(self, "posteriors_")
        return self.tags_

    def predict_proba(self) -> np.ndarray:
        """(n_items, L) posterior probability of each tag being present."""
        check_is_fitted(self, "posteriors_")
        return self.posteriors_

    def fit_predict(self, items, workers, Y, **kwargs) -> np.ndarray:
        return self.fit(items, workers, Y, **kwargs).predict()

    def confidence(self) -> np.ndarray:
        """(n_items,) :func:`tag_confidence` of the fitted posteriors."""
        return tag_confidence(self.predict_proba())

    def item_posterior(self, workers, Y) -> np.ndarray:
        """(L,) P(tag present) of one item from its answers (``workers``: fitted annotator indices,
        ``Y``: their (n, L) tag sets) under the fitted weights, as the submit path would compute it."""
        check_is_fitted(self, "posteriors_")
        workers = np.asarray(workers, dtype=np.int64).ravel()
        rows = as_tag_answers(np.zeros(workers.size, dtype=np.int64), workers, Y, n_labels=self.n_labels_)
        if workers.size and workers.max() >= self.n_workers_:
            raise ValueError("an annotator unknown to the fit")
        logit = self.prior_log_odds_ + self.absent_log_odds_[workers].sum(axis=0)
        chosen = rows.Y.tocoo()
        step = self.present_log_odds_ - self.absent_log_odds_
        logit += np.bincount(chosen.col, weights=step[workers[chosen.row], chosen.col], minlength=self.n_labels_)
        return expit(logit)

    # -- fitting ----------------------------------------------------------------------------------

    def _fit(self, data: TagAnswers, gold) -> None:
        W, L, n_items = data.n_workers, data.n_labels, data.n_items
        n_answers = data.items.size
        one = np.ones(n_answers)
        self._by_item = sp.csr_matrix(
            (one, (data.items, data.workers)), shape=(n_items, W)
        )  # answers per (item, worker)
        self._by_worker = self._by_item.T.tocsr()
        coo = data.Y.tocoo()
        self._cell_item = data.items[coo.row] * L + coo.col  # index into (n_items, L) of every chosen tag
        self._cell_worker = data.workers[coo.row] * L + coo.col  # into (W, L)
        self._chosen = np.bincount(self._cell_worker, minlength=W * L).reshape(W, L).astype(np.float64)
        self._answers = np.bincount(data.workers, minlength=W).astype(np.float64)
        per_item = np.bincount(data.items, minlength=n_items)
        labelled = per_item > 0
        self._gold = gold
        if gold is not None:
            labelled |= (gold >= 0).any(axis=1)
        self._labelled = None if labelled.all() else np.flatnonzero(labelled)
        self.strengths_ = {}
        for rate in ("sensitivity", "specificity"):
            self.strengths_.update(
                {f"{rate}_tag": 1e3, f"{rate}_annotator": 1e3, f"{rate}_annotator_tag": np.full(W, 1e3)}
            )
        self._peaks = {}

        self.strengths_["annotator"] = 1e3  # the one-coin model's (see _choose_model)
        self._peaks, self._one_coin = {}, False

        weights, logits = self._em(self._clamp(tag_vote_shares(data.items, data.Y, n_items=n_items)))
        weights, logits = self._choose_model(data, per_item, weights, logits)
        self.temperature_ = self._temperature(data, logits, weights, per_item) if self.calibrate else 1.0
        tau = self.temperature_
        prior, absent, present = weights
        self.prior_log_odds_, self.absent_log_odds_, self.present_log_odds_ = tau * prior, tau * absent, tau * present
        self.posteriors_ = self._clamp(expit(tau * logits))
        scratch = ("_by_item", "_by_worker", "_cell_item", "_cell_worker", "_chosen", "_answers", "_gold")
        for name in (*scratch, "_labelled", "_peaks", "_absent_terms", "_one_coin"):
            self.__dict__.pop(name, None)

    def _em(self, posteriors: np.ndarray):
        """EM from (n_items, L) ``posteriors``; returns the last M-step's weights and their log-odds."""
        n_answers = max(self._answers.sum(), 1.0)
        weights = self._m_step(posteriors, search=True)
        previous = -np.inf
        self.n_iter_, self.converged_, self.log_likelihood_ = 0, False, float("nan")
        for iteration in range(1, self.max_iter + 1):
            logits, log_likelihood = self._e_step(weights)
            posteriors = self._clamp(expit(logits))
            self.n_iter_, self.log_likelihood_ = iteration, log_likelihood
            settled = abs(log_likelihood - previous) / n_answers < self.tol
            weights = self._m_step(posteriors, search=settled or iteration in (2, 8, 32))
            if settled:
                self.converged_ = True
                break
            previous = log_likelihood
        return weights, self._e_step(weights)[0]

    def _choose_model(self, data: TagAnswers, per_item: np.ndarray, weights, logits):
        """Keep the tag-conditional fit only if it predicts held-out answers better than one-coin.

        As ``HierarchicalDawidSkene``: every held-out answer (on an item with two or more) is
        predicted from its item's other answers, tag by tag (present when the item's log-odds
        without it is positive), by the fitted model and by the one-coin model (one accuracy per
        annotator for every tag, present or absent, refitted from these posteriors); the
        tag-conditional model stays when its right predictions per answer are more by over one
        standard error of the paired difference (by the held-out log-likelihood when both predict
        every held-out tag alike).
        """
        self.model_ = "tag-conditional"
        self.selection_ = {"gain": 0.0, "se": 0.0, "answers": 0}
        held = self._held_out(data, per_item, 10 * self.max_calibration_answers)
        if held.size < 2:
            return weights, logits
        full_match, full_log = self._held_out_scores(data, held, logits, weights)
        keep = ("sensitivity_", "specificity_", "tag_sensitivity_", "tag_specificity_", "prevalence_", "_absent_terms")
        state = {key: getattr(self, key) for key in (*keep, "n_iter_", "converged_", "log_likelihood_")}
        self._one_coin = True
        one_weights, one_logits = self._em(self._clamp(expit(logits)))
        self._one_coin = False
        one_match, one_log = self._held_out_scores(data, held, one_logits, one_weights)
        difference, criterion = full_match - one_match, "labels"
        if not difference.any():
            difference, criterion = full_log - one_log, "log-likelihood"
        gain = float(difference.mean())
        se = float(difference.std(ddof=1) / np.sqrt(difference.size))
        self.selection_ = {"gain": gain, "se": se, "answers": int(difference.size), "criterion": criterion}
        if gain > se:
            for key, value in state.items():
                setattr(self, key, value)
            return weights, logits
        self.model_ = "one-coin"
        return one_weights, one_logits

    def _held_out(self, data: TagAnswers, per_item: np.ndarray, cap: int) -> np.ndarray:
        """Answers on items with two or more answers, at most ``cap`` (and ``_MAX_CALIBRATION_CELLS``
        cells), evenly spread."""
        cap = max(1, min(cap, _MAX_CALIBRATION_CELLS // data.n_labels))
        held = np.flatnonzero(per_item[data.items] >= 2)
        if held.size > cap:
            held = held[np.linspace(0, held.size - 1, cap).astype(np.int64)]
        return held

    def _rest(self, data: TagAnswers, held: np.ndarray, logits: np.ndarray, weights):
        """Each held-out answer's (n, L) tags and its item's log-odds without it."""
        _, absent, present = weights
        r, i = data.workers[held], data.items[held]
        given = data.Y[held].toarray()
        return given, logits[i] - (absent[r] + given * (present[r] - absent[r]))

    def _held_out_scores(self, data: TagAnswers, held: np.ndarray, logits: np.ndarray, weights):
        """Per held-out answer: its tags predicted right from the rest of its item, and its log-likelihood."""
        given, rest = self._rest(data, held, logits, weights)
        match = ((rest > 0) == (given > 0)).sum(axis=1).astype(np.float64)
        r = data.workers[held]
        p = expit(rest)
        chosen = p * self.tag_sensitivity_[r] + (1.0 - p) * (1.0 - self.tag_specificity_[r])
        likelihood = np.where(given > 0, chosen, 1.0 - chosen)
        return match, np.log(np.maximum(likelihood, 1e-300)).sum(axis=1)

    def _clamp(self, posteriors: np.ndarray) -> np.ndarray:
        if self._gold is not None:
            known = self._gold >= 0
            posteriors[known] = self._gold[known]
        return posteriors

    def _counts(self, posteriors: np.ndarray):
        """Expected (W, L) true positives, false negatives, true negatives, false positives."""
        W, L = self._chosen.shape
        positives = np.asarray(self._by_worker @ posteriors)  # answers of r on items where l is present
        true_pos = np.bincount(self._cell_worker, weights=posteriors.ravel()[self._cell_item], minlength=W * L)
        true_pos = true_pos.reshape(W, L)
        false_neg = np.maximum(positives - true_pos, 0.0)
        false_pos = np.maximum(self._chosen - true_pos, 0.0)
        true_neg = np.maximum(self._answers[:, None] - positives - false_pos, 0.0)
        return true_pos, false_neg, true_neg, false_pos

    def _rung(self, rate: str, hits: np.ndarray, misses: np.ndarray, search: bool):
        """Beta posterior parameters (W, L) of one rate (``sensitivity`` / ``specificity``): pool ->
        annotator and tag -> (annotator, tag), every strength by empirical Bayes; and the annotator rates."""
        strengths, peaks = self.strengths_, self._peaks

        def choose(key: str, found) -> None:
            if found is not None:
                strengths[key], peaks[key] = found

        pool = (hits.sum() + 1.0) / (hits.sum() + misses.sum() + 2.0)
        tag_hits, tag_misses = hits.sum(axis=0), misses.sum(axis=0)
        worker_hits, worker_misses = hits.sum(axis=1), misses.sum(axis=1)
        if search:
            for key, h, f in (("tag", tag_hits, tag_misses), ("annotator", worker_hits, worker_misses)):
                name = f"{rate}_{key}"
                choose(name, _beta_binomial_strength(h, f, pool, peaks.get(name, strengths[name]), peak=True))
        k_t, k_w = strengths[f"{rate}_tag"], strengths[f"{rate}_annotator"]
        tag_rate = (tag_hits + k_t * pool) / (tag_hits + tag_misses + k_t)
        worker_rate = (worker_hits + k_w * pool) / (worker_hits + worker_misses + k_w)
        mean = expit(_logit(worker_rate)[:, None] + _logit(tag_rate)[None, :] - _logit(pool))
        name = f"{rate}_annotator_tag"
        if search and hits.size:
            found = _beta_binomial_strength_per_row(
                hits, misses, mean, strengths[name], start=peaks.get(name, strengths[name]), peak=True
            )
            choose(name, found)
        k = strengths[name][:, None]
        return hits + k * mean, misses + k * (1.0 - mean), worker_rate

    def _one_coin_rung(self, hits: np.ndarray, misses: np.ndarray, search: bool):
        """The one-coin model's Beta parameters, (W, L) alike for both rates: one accuracy per
        annotator over every (tag, present or absent) cell, shrunk towards the pool's."""
        hits, misses = hits.sum(axis=1), misses.sum(axis=1)
        pool = (hits.sum() + 1.0) / (hits.sum() + misses.sum() + 2.0)
        if search:
            start = self._peaks.get("annotator", self.strengths_["annotator"])
            found = _beta_binomial_strength(hits, misses, pool, start, peak=True)
            if found is not None:
                self.strengths_["annotator"], self._peaks["annotator"] = found
        k = self.strengths_["annotator"]
        alpha, beta = hits + k * pool, misses + k * (1.0 - pool)
        L = self._chosen.shape[1]
        return np.repeat(alpha[:, None], L, axis=1), np.repeat(beta[:, None], L, axis=1), alpha / (alpha + beta)

    def _m_step(self, posteriors: np.ndarray, search: bool):
        """(prior log-odds (L,), absent-answer log-odds (W, L), present-answer log-odds (W, L))."""
        true_pos, false_neg, true_neg, false_pos = self._counts(posteriors)
        if self._one_coin:
            a_s, b_s, self.sensitivity_ = self._one_coin_rung(true_pos + true_neg, false_neg + false_pos, search)
            a_c, b_c, self.specificity_ = a_s, b_s, self.sensitivity_
        else:
            a_s, b_s, self.sensitivity_ = self._rung("sensitivity", true_pos, false_neg, search)
            a_c, b_c, self.specificity_ = self._rung("specificity", true_neg, false_pos, search)
        self.tag_sensitivity_, self.tag_specificity_ = a_s / (a_s + b_s), a_c / (a_c + b_c)
        log_s, log_not_s = digamma(a_s) - digamma(a_s + b_s), digamma(b_s) - digamma(a_s + b_s)
        log_c, log_not_c = digamma(a_c) - digamma(a_c + b_c), digamma(b_c) - digamma(a_c + b_c)
        rows = posteriors if self._labelled is None else posteriors[self._labelled]
        mass, count = rows.sum(axis=0), float(rows.shape[0])
        a = self.prior_smoothing
        self.prevalence_ = (mass + a) / (count + 2.0 * a)
        log_absent_prior = digamma(count - mass + a) - digamma(count + 2.0 * a)
        prior = digamma(mass + a) - digamma(count + 2.0 * a) - log_absent_prior
        # what the likelihood adds for z = 0 (see _e_step)
        self._absent_terms = (log_c, log_not_c, log_absent_prior)
        return prior, log_not_s - log_c, log_s - log_not_c

    def _e_step(self, weights):
        """(n_items, L) log-odds of the tags and the (variational) log-likelihood of the answers."""
        prior, absent, present = weights
        W, L = absent.shape
        logits = np.asarray(self._by_item @ absent)
        logits += prior
        step = (present - absent).ravel()[self._cell_worker]
        logits += np.bincount(self._cell_item, weights=step, minlength=logits.size).reshape(logits.shape)
        # log P(answers, z = 0) summed over all cells, plus sum log(1 + e^logit)
        log_c, log_not_c, log_absent_prior = self._absent_terms
        base = float(self._answers @ log_c.sum(axis=1) + ((log_not_c - log_c) * self._chosen).sum())
        base += float(log_absent_prior.sum()) * logits.shape[0]
        return logits, base + float(np.logaddexp(0.0, logits).sum())

    def _temperature(self, data: TagAnswers, logits: np.ndarray, weights, per_item: np.ndarray) -> float:
        """τ maximising the held-out likelihood of the gold cells, or of the answers (class docstring)."""
        gold = self._gold
        if gold is not None:
            gold_rows = np.flatnonzero((gold >= 0).any(axis=1) & (per_item > 0))
            if gold_rows.size >= MIN_CALIBRATION_GOLD:
                known = gold[gold_rows] >= 0
                truth = gold[gold_rows][known].astype(np.float64)
                scores = logits[gold_rows][known]

                def gold_loss(tau: float) -> float:
                    z = tau * scores
                    return float((np.logaddexp(0.0, z) - truth * z).sum())

                return self._minimise(gold_loss)
        held = self._held_out(data, per_item, self.max_calibration_answers)
        if held.size == 0:
            return 1.0
        given, rest = self._rest(data, held, logits, weights)
        r = data.workers[held]
        sens, spec = self.tag_sensitivity_[r], self.tag_specificity_[r]

        def answer_loss(tau: float) -> float:
            p = expit(tau * rest)
            chosen = p * sens + (1.0 - p) * (1.0 - spec)
            likelihood = np.where(given > 0, chosen, 1.0 - chosen)
            return float(-np.log(np.maximum(likelihood, 1e-300)).sum())

        return self._minimise(answer_loss)

    @staticmethod
    def _minimise(loss) -> float:
        result = minimize_scalar(loss, bounds=_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-3})
        return float(result.x)
