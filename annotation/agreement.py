"""Inter-annotator agreement: Cohen's kappa, the pairwise kappa matrix, Fleiss' kappa, Krippendorff's alpha.

Pure NumPy (no Django): annotations come in *long format*, the way they leave the database, as three
integer arrays of equal length

    items[n]    index of the item of annotation n       (0 <= items[n] < n_items)
    workers[n]  index of the annotator of annotation n  (0 <= workers[n] < n_workers)
    labels[n]   index of the label given                (0 <= labels[n] < n_classes)

plus the counts (inferred as ``max + 1`` when not given). Every function is vectorised with
``np.bincount`` / ``np.unique``; nothing loops over annotations in Python.

One label per (item, annotator): when an annotator labelled an item more than once, the *last*
annotation in the input stands (an edit replaces the earlier answer). :func:`deduplicate` applies
that rule and every function here calls it.

Undefined values are ``nan``, never an exception: a kappa whose chance agreement is 1 (both sides
used one and the same label throughout), a pair of annotators who share too few items, an alpha
with fewer than two pairable values or only one label in use.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "Annotations",
    "as_annotations",
    "cohen_kappa",
    "cohen_kappa_pair",
    "deduplicate",
    "fleiss_kappa",
    "item_label_counts",
    "krippendorff_alpha",
    "pairwise_kappa",
]

#: Default minimum number of shared items for an entry of :func:`pairwise_kappa`.
MIN_OVERLAP = 10


class Annotations(NamedTuple):
    """Validated long-format annotations and their index ranges."""

    items: np.ndarray
    workers: np.ndarray
    labels: np.ndarray
    n_items: int
    n_workers: int
    n_classes: int


def _index_array(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
            raise ValueError(f"{name} must hold integer indices")
    array = array.astype(np.int64, copy=False)
    if array.min() < 0:
        raise ValueError(f"{name} must be non-negative indices")
    return array


def _count(array: np.ndarray, given: int | None, name: str) -> int:
    observed = int(array.max()) + 1 if array.size else 0
    if given is None:
        return observed
    given = int(given)
    if given < observed:
        raise ValueError(f"{name}={given} but the data holds index {observed - 1}")
    return given


def as_annotations(items, workers, labels, *, n_items=None, n_workers=None, n_classes=None) -> Annotations:
    """Check and convert long-format annotations; counts default to ``max index + 1``."""
    items = _index_array(items, "items")
    workers = _index_array(workers, "workers")
    labels = _index_array(labels, "labels")
    if not (items.shape == workers.shape == labels.shape):
        raise ValueError(f"items, workers and labels differ in length: {items.size}, {workers.size}, {labels.size}")
    return Annotations(
        items,
        workers,
        labels,
        _count(items, n_items, "n_items"),
        _count(workers, n_workers, "n_workers"),
        _count(labels, n_classes, "n_classes"),
    )


def deduplicate(items, workers, labels, *, n_items=None, n_workers=None, n_classes=None) -> Annotations:
    """Keep one annotation per (item, annotator): the last one in input order.

    Returns the kept annotations sorted by (item, annotator).
    """
    data = as_annotations(items, workers, labels, n_items=n_items, n_workers=n_workers, n_classes=n_classes)
    key = data.items * max(data.n_workers, 1) + data.workers
    # Unique keys of the reversed array point at each key's last occurrence.
    _, last_from_end = np.unique(key[::-1], return_index=True)
    keep = key.size - 1 - last_from_end  # sorted by key, i.e. by (item, worker)
    return data._replace(items=data.items[keep], workers=data.workers[keep], labels=data.labels[keep])


def item_label_counts(items, labels, *, n_items: int, n_classes: int) -> np.ndarray:
    """The (n_items, n_classes) matrix ``n[i, c]`` = number of annotations of item i with label c."""
    flat = np.bincount(np.asarray(items) * n_classes + np.asarray(labels), minlength=n_items * n_classes)
    return flat.reshape(n_items, n_classes).astype(np.float64)


def _kappa(p_o, p_e):
    """``(p_o - p_e) / (1 - p_e)``, nan where ``p_e == 1``."""
    p_o = np.asarray(p_o, dtype=np.float64)
    p_e = np.asarray(p_e, dtype=np.float64)
    denominator = 1.0 - p_e
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(np.isclose(denominator, 0.0, atol=1e-12), np.nan, (p_o - p_e) / denominator)
    return kappa


def cohen_kappa(labels_a, labels_b, *, n_classes: int | None = None) -> float:
    r"""Cohen's kappa of two aligned label arrays (position n = the same item).

    .. math::
        \kappa = \frac{p_o - p_e}{1 - p_e},\qquad
        p_o = \frac{1}{N}\sum_c n_{cc},\qquad
        p_e = \frac{1}{N^2}\sum_c n_{c\cdot}\, n_{\cdot c}

    where :math:`n_{ck}` counts items labelled c by the first and k by the second annotator.
    Example: :math:`n_{11}=40, n_{10}=10, n_{01}=5, n_{00}=45` gives :math:`p_o=0.85`,
    :math:`p_e=0.5\cdot0.45+0.5\cdot0.55=0.5` and :math:`\kappa=0.70`.

    Returns nan for empty input or when :math:`p_e = 1` (both always used the same single label;
    scikit-learn's ``cohen_kappa_score`` also gives nan there).
    """
    a = _index_array(labels_a, "labels_a")
    b = _index_array(labels_b, "labels_b")
    if a.shape != b.shape:
        raise ValueError(f"labels_a and labels_b differ in length: {a.size} != {b.size}")
    if a.size == 0:
        return float("nan")
    c = _count(np.concatenate([a, b]), n_classes, "n_classes")
    table = np.bincount(a * c + b, minlength=c * c).reshape(c, c).astype(np.float64)
    n = a.size
    p_o = np.trace(table) / n
    p_e = float(table.sum(axis=1) @ table.sum(axis=0)) / (n * n)
    return float(_kappa(p_o, p_e))


def cohen_kappa_pair(items, workers, labels, worker_a: int, worker_b: int, *, n_classes: int | None = None) -> float:
    """Cohen's kappa of annotators ``worker_a`` and ``worker_b`` over the items both labelled.

    Long-format input; see :func:`cohen_kappa` for the formula. nan when they share no item.
    """
    data = deduplicate(items, workers, labels, n_classes=n_classes)
    on_a = data.workers == worker_a
    on_b = data.workers == worker_b
    shared, at_a, at_b = np.intersect1d(data.items[on_a], data.items[on_b], assume_unique=True, return_indices=True)
    if shared.size == 0:
        return float("nan")
    return cohen_kappa(data.labels[on_a][at_a], data.labels[on_b][at_b], n_classes=data.n_classes)


def _co_annotation_pairs(data: Annotations):
    """All ordered pairs (a, b) of annotations on the same item, a == b included.

    ``data`` must be sorted by item (as :func:`deduplicate` returns it). Returns the two index
    arrays into ``data``; their length is :math:`\\sum_i m_i^2` for m_i annotators on item i.
    """
    m = np.bincount(data.items, minlength=data.n_items)
    start = np.concatenate([[0], np.cumsum(m)[:-1]])
    per_row = m[data.items]  # each annotation pairs with every annotation of its item
    first = np.repeat(np.arange(data.items.size), per_row)
    # offset of the partner within the item's block: 0 .. m_i - 1 for each repetition
    block_start = np.repeat(np.cumsum(per_row) - per_row, per_row)
    offset = np.arange(first.size) - block_start
    second = start[data.items[first]] + offset
    return first, second


def pairwise_kappa(
    items,
    workers,
    labels,
    *,
    n_items: int | None = None,
    n_workers: int | None = None,
    n_classes: int | None = None,
    min_overlap: int = MIN_OVERLAP,
    return_overlap: bool = False,
):
    r"""The (n_workers, n_workers) matrix of Cohen's kappa between every two annotators.

    Entry (a, b) is :func:`cohen_kappa` of a and b over the :math:`N_{ab}` items both labelled:

    .. math::
        p_o = \frac{A_{ab}}{N_{ab}},\qquad p_e = \frac{1}{N_{ab}^2}\sum_c n^{a}_{ab}(c)\, n^{b}_{ab}(c)

    with :math:`A_{ab}` the shared items on which they agree and :math:`n^{a}_{ab}(c)` the shared
    items that a labelled c. The entry is **nan when** :math:`N_{ab} <` ``min_overlap`` (default
    :data:`MIN_OVERLAP` = 10 shared items: below that a kappa swings by tenths with one item) or
    when :math:`p_e = 1`. The matrix is symmetric; the diagonal is 1 for an annotator with at least
    ``min_overlap`` items who used more than one label.

    Cost: one pass over the :math:`\sum_i m_i^2` co-annotation pairs (m_i annotators on item i),
    grouped with ``np.bincount`` / ``np.unique``; memory is that plus the output matrix.

    With ``return_overlap=True`` also returns the integer matrix :math:`N_{ab}`.
    """
    data = deduplicate(items, workers, labels, n_items=n_items, n_workers=n_workers, n_classes=n_classes)
    w, c = data.n_workers, max(data.n_classes, 1)
    first, second = _co_annotation_pairs(data)
    wa, wb = data.workers[first], data.workers[second]
    la, lb = data.labels[first], data.labels[second]
    pair = wa * w + wb
    shared = np.bincount(pair, minlength=w * w)
    agree = np.bincount(pair, weights=(la == lb).astype(np.float64), minlength=w * w)
    # n^a_ab(c) and n^b_ab(c) as sparse (pair, label) counts; chance agreement joins them on the key.
    keys_a, counts_a = np.unique(pair * c + la, return_counts=True)
    keys_b, counts_b = np.unique(pair * c + lb, return_counts=True)
    common, at_a, at_b = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
    chance = np.bincount(common // c, weights=counts_a[at_a].astype(np.float64) * counts_b[at_b], minlength=w * w)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_o = agree / shared
        p_e = chance / (shared.astype(np.float64) ** 2)
    kappa = _kappa(p_o, p_e)
    kappa[shared < max(min_overlap, 1)] = np.nan
    kappa = kappa.reshape(w, w)
    if return_overlap:
        return kappa, shared.reshape(w, w)
    return kappa


def fleiss_kappa(items, workers, labels, *, n_items=None, n_workers=None, n_classes=None) -> float:
    r"""Fleiss' kappa, generalised to items with varying numbers of raters.

    With :math:`r_{ic}` the raters who put item i in class c and :math:`r_i = \sum_c r_{ic}`:

    .. math::
        P_i = \frac{\sum_c r_{ic}(r_{ic}-1)}{r_i(r_i-1)},\qquad
        \bar P = \operatorname{mean}_{i:\,r_i\ge2} P_i,\qquad
        \pi_c = \operatorname{mean}_{i:\,r_i\ge1} \frac{r_{ic}}{r_i},\qquad
        P_e = \sum_c \pi_c^2,\qquad
        \kappa = \frac{\bar P - P_e}{1 - P_e}

    Items rated once add to the class shares :math:`\pi_c` but carry no agreement; unrated items
    are ignored. This is the generalisation of Gwet (Handbook of Inter-Rater Reliability, 4th ed.,
    2014; R ``irrCAC::fleiss.kappa.raw``); when every item has the same number of raters it is
    exactly Fleiss (1971), as computed by ``statsmodels.stats.inter_rater.fleiss_kappa``.
    nan when no item has two raters or :math:`P_e = 1`.
    """
    data = deduplicate(items, workers, labels, n_items=n_items, n_workers=n_workers, n_classes=n_classes)
    counts = item_label_counts(data.items, data.labels, n_items=data.n_items, n_classes=data.n_classes)
    raters = counts.sum(axis=1)
    multi = raters >= 2
    if not multi.any():
        return float("nan")
    p_item = (counts[multi] * (counts[multi] - 1)).sum(axis=1) / (raters[multi] * (raters[multi] - 1))
    rated = raters >= 1
    shares = (counts[rated] / raters[rated, None]).mean(axis=0)
    return float(_kappa(p_item.mean(), shares @ shares))


def krippendorff_alpha(items, workers, labels, *, n_items=None, n_workers=None, n_classes=None) -> float:
    r"""Krippendorff's alpha for nominal data; any annotator may skip any item.

    Coincidences within each item u with :math:`m_u \ge 2` values (:math:`n_{uc}` values c):

    .. math::
        o_{ck} = \sum_u \frac{n_{uc}\,(n_{uk} - [c=k])}{m_u - 1},\qquad
        n_c = \sum_k o_{ck},\qquad n = \sum_c n_c

    and with the nominal metric (disagreement 1 between different labels):

    .. math::
        \alpha = 1 - \frac{D_o}{D_e} = 1 - (n-1)\,\frac{n - \sum_c o_{cc}}{n^2 - \sum_c n_c^2}

    Items with a single value are not pairable and drop out (Krippendorff, Content Analysis, 2004,
    ch. 11; "Computing Krippendorff's Alpha-Reliability", 2011). nan when no item has two values or
    only one label occurs among the pairable values. Matches ``krippendorff.alpha(...,
    level_of_measurement="nominal")`` on the annotator x item matrix.
    """
    data = deduplicate(items, workers, labels, n_items=n_items, n_workers=n_workers, n_classes=n_classes)
    counts = item_label_counts(data.items, data.labels, n_items=data.n_items, n_classes=data.n_classes)
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts, m = counts[pairable], m[pairable]
    if counts.size == 0:
        return float("nan")
    observed_same = ((counts * (counts - 1)).sum(axis=1) / (m - 1)).sum()  # sum_c o_cc
    n_c = counts.sum(axis=0)
    n = n_c.sum()
    expected = n * n - n_c @ n_c
    if expected <= 0:
        return float("nan")
    return float(1.0 - (n - 1) * (n - observed_same) / expected)
