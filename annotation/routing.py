r"""What happens to an item once it has the labels it asked for: the routing rules, pure NumPy.

No Django here: the services (``annotation.services.consensus`` per item, on the submit path, and
``annotation.services.aggregation`` for the whole project) gather arrays and call these functions.

Posterior of one item
---------------------
With the latest aggregation's Dawid-Skene class priors :math:`\theta` and the confusion matrices
:math:`\pi_r` of the item's annotators, the posterior of the item whose annotator r answered
:math:`k_r` is the E-step of the model for that item alone (:func:`item_posterior`):

.. math::
    p_j \propto \theta_j \prod_r \pi_r^{j k_r}

When there is no aggregation yet, or one of the annotators (or a label) is unknown to it, the
posterior is the majority-vote share of each label (:func:`vote_shares`).

Review policy (by project kappa, :func:`review_policy`)
-------------------------------------------------------
- ``all``: kappa < ``review_all_below_kappa``: every complete item with two or more labels is
  reviewed (reason ``policy_all``), straight away: more labels from annotators who agree this
  little would not spare the review.
- ``disagreements``: ``review_all_below_kappa`` <= kappa < ``review_disagreements_below_kappa``:
  an item is *disputed* when no label holds a strict majority of its annotations (a 1:1 or a
  1:1:1 split); disputed items and items under the confidence threshold are not finalised.
- ``confidence``: kappa >= ``review_disagreements_below_kappa``: only the confidence threshold
  applies (Dawid-Skene may finalise a 1:1 split when one annotator is known to be better).

Until at least :data:`MIN_OVERLAP_ITEMS` items carry two or more labels, or while no pair of
annotators shares enough items for a kappa (``agreement.MIN_OVERLAP``), kappa is not estimated and
the middle policy (``disagreements``) applies.

Decision (:func:`route`)
------------------------
1. Policy ``all`` and two or more labels -> ``REVIEW`` (``policy_all``).
2. ``max p >= min_consensus_confidence`` and not (policy ``disagreements`` and disputed) ->
   ``FINAL`` with the arg-max label and confidence ``max p``.
3. Otherwise, while ``labels_needed < max_labels_per_item`` -> ``EXTRA_LABEL`` (adaptive
   redundancy: one more annotator).
4. Otherwise ``REVIEW`` with the reason ``max_labels`` when the item already had extra labels
   (``labels_needed > labels_per_item``), else ``disagreement`` when disputed, else
   ``low_confidence``.

No item waits for ever (``can_extend``, ``has_reviewer``)
--------------------------------------------------------
An item that needs another label (step 3, or fewer labels than ``labels_needed``) can only get
one from a labelling member who has not been handed it yet. When there is none (fewer annotators
than the labels asked for, or the rest are paused: the services count them, ``can_extend=False``)
waiting would be for ever, so the item is decided with the labels it has:

- a complete item whose rule says ``EXTRA_LABEL`` -> ``REVIEW`` (``no_annotator``);
- an incomplete item (fewer labels than ``labels_needed``) -> ``REVIEW`` (``no_annotator``), or
  ``policy_all`` when that band applies (two or more labels); it is never finalised on fewer labels
  than the project asked for while someone can review it;
- and when nobody can review it either (``has_reviewer=False``: no reviewer or admin of the project
  who has not labelled the item), ``FINAL`` with the arg-max and its (low) posterior as the
  confidence: the honest figure of what the labels say, which downstream consumers can filter on.

Review-chip words (:func:`review_reason_text`)
--------------------------------------------
The reason a review task shows is stated from the item's actual numbers (its labels' split, the
posterior on the task, the threshold in force), never from a template that may not fit: a 2:1
item sent to review at the label cap says "Unresolved after 3 labels (a 2-1 split of 3 labels):
consensus 67 %, under the 80 % threshold", not "no majority"; a low-confidence task whose posterior
has since risen past the threshold says so. The aggregation refreshes an open task's reason when
the item's situation changed (``annotation.services.aggregation``).

One priority for the whole queue (:func:`label_value`, :func:`priorities_on_queue_scale`)
----------------------------------------------------------------------------------------
Every queue entry's priority ranks the expected value of one more label on the item, on a common
[0, 1] scale:

- a disputed item (``extra_label``): :math:`v = 1 - (p_{(1)} - p_{(2)})`, one minus the margin
  between its two most probable labels under the Dawid-Skene posterior. A tie is worth 1 (the
  next label decides the item), a clear lead is worth little. The margin is the uncertainty that
  works best on many-class data (normalised entropy would rate a 1:1 split between two of 77
  intents at 0.16);
- a new item: the rank-normalised value of its acquisition score among the new entries of the
  queue (the scoring run's batch): the head of the batch is worth 1, the j-th of n is worth
  :math:`(n - j) / n`. A scoring run ranks the pool by the strategy's expected value, so only the
  rank is comparable across strategies (margin, MSAL's margin + distance, BALD, cold-start rank
  and the fallback's item order live on unrelated scales).

The queue is served by the stored ``priority`` (highest first), which acquisition writes on its
strategy's raw scale. A disputed item with value v is therefore placed where the new items' rank
value crosses v: its priority is interpolated between the stored priorities of the new entries at
rank positions :math:`(1 - v)\,n` (a value above every new item goes just above the head, one
below every new item just below the tail). So a 1:1 split is served before the whole batch, a
0.7:0.3 split after the first 60% of it. The aggregation task re-places every open
``extra_label`` entry against the current queue, so a scoring run that rewrites the batch on
another scale is absorbed within one aggregation window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

__all__ = [
    "MIN_OVERLAP_ITEMS",
    "Decision",
    "Outcome",
    "Policy",
    "ReviewReason",
    "disputed",
    "item_posterior",
    "label_value",
    "priorities_on_queue_scale",
    "review_policy",
    "review_reason_text",
    "route",
    "vote_shares",
]

#: Items with two or more labels needed before the project kappa sets the review policy.
MIN_OVERLAP_ITEMS = 20


class Outcome(StrEnum):
    FINAL = "final"
    EXTRA_LABEL = "extra_label"
    REVIEW = "review"


class Policy(StrEnum):
    ALL = "all"
    DISAGREEMENTS = "disagreements"
    CONFIDENCE = "confidence"


class ReviewReason(StrEnum):
    """Why an item goes to review: the one list (``annotation.models.ReviewReason`` is built from it)."""

    DISAGREEMENT = "disagreement"
    LOW_CONFIDENCE = "low_confidence"
    POLICY_ALL = "policy_all"
    MAX_LABELS = "max_labels"
    NO_ANNOTATOR = "no_annotator"
    LABEL_ERROR = "label_error"

    @property
    def label(self) -> str:
        return _REVIEW_REASON_LABELS[self]


_REVIEW_REASON_LABELS = {
    ReviewReason.DISAGREEMENT: "No label holds a majority",
    ReviewReason.LOW_CONFIDENCE: "Aggregated confidence under the project's threshold",
    ReviewReason.POLICY_ALL: "Project kappa under review_all_below_kappa: every item is reviewed",
    ReviewReason.MAX_LABELS: "Still unresolved after max_labels_per_item labels",
    ReviewReason.NO_ANNOTATOR: "Needs another label, and no annotator who has not labelled it can give one",
    ReviewReason.LABEL_ERROR: "Suspected label error: the model, trained without it, confidently disagrees",
}


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    label: int | None = None  # class index of the arg-max (FINAL)
    confidence: float | None = None  # max posterior (FINAL)
    reason: ReviewReason | None = None  # REVIEW only
    value: float = 0.0  # expected value of one more label, 1 - margin (see the module docstring)


def review_policy(
    kappa: float | None, overlap_items: int, *, review_all_below: float, review_disagreements_below: float
) -> Policy:
    """The review policy for a project kappa (``None``/nan: not estimated -> the middle policy)."""
    if kappa is None or not math.isfinite(kappa) or overlap_items < MIN_OVERLAP_ITEMS:
        return Policy.DISAGREEMENTS
    if kappa < review_all_below:
        return Policy.ALL
    if kappa < review_disagreements_below:
        return Policy.DISAGREEMENTS
    return Policy.CONFIDENCE


def vote_shares(labels, n_classes: int) -> np.ndarray:
    """Majority-vote posterior of one item: the share of its annotations per class."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def item_posterior(labels, confusions: np.ndarray, priors: np.ndarray) -> np.ndarray:
    r"""Dawid-Skene posterior of one item: :math:`p_j \propto \theta_j \prod_r \pi_r^{j k_r}`.

    ``labels[r]`` is the class annotator r gave, ``confusions[r]`` that annotator's (C, C)
    confusion matrix (rows: true class), ``priors`` the (C,) class priors. Log space.
    """
    labels = np.asarray(labels, dtype=np.int64)
    confusions = np.asarray(confusions, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_p = np.log(np.asarray(priors, dtype=np.float64))
        columns = confusions[np.arange(labels.size), :, labels]  # (R, C): π_r^{j k_r}
        log_p = log_p + np.log(np.maximum(columns, 1e-300)).sum(axis=0)
    top = np.max(log_p)
    if not np.isfinite(top):
        return vote_shares(labels, confusions.shape[-1])
    p = np.exp(log_p - top)
    return p / p.sum()


def disputed(labels) -> bool:
    """No label holds a strict majority of the item's annotations."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return False
    return 2 * int(np.bincount(labels).max()) <= labels.size


def label_value(posteriors: np.ndarray) -> np.ndarray:
    """``1 - (p1 - p2)`` per row: the value of one more label on a [0, 1] scale."""
    posteriors = np.atleast_2d(np.asarray(posteriors, dtype=np.float64))
    if posteriors.shape[1] < 2:
        return np.zeros(posteriors.shape[0])
    top2 = -np.partition(-posteriors, 1, axis=1)[:, :2]
    return np.clip(1.0 - (top2[:, 0] - top2[:, 1]), 0.0, 1.0)


def route(
    posterior: np.ndarray,
    labels,
    *,
    labels_needed: int,
    labels_per_item: int,
    max_labels: int,
    min_confidence: float,
    policy: Policy,
    can_extend: bool = True,
    has_reviewer: bool = True,
) -> Decision:
    """The routing rule of the module docstring for one item with its labels.

    ``labels_needed``: the labels the item's queue entry asks for; with fewer ``labels`` than that
    the item is incomplete and is routed only because nobody can give the rest (``can_extend``
    False). ``can_extend``: a labelling member who has not been handed the item exists.
    ``has_reviewer``: someone who has not labelled it could review it."""
    posterior = np.asarray(posterior, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    best = int(np.argmax(posterior))
    confidence = float(posterior[best])
    value = float(label_value(posterior)[0])
    is_disputed = disputed(labels)
    if policy is Policy.ALL and labels.size >= 2:
        return _review(ReviewReason.POLICY_ALL, best, confidence, value, has_reviewer)
    if labels.size < labels_needed:
        if can_extend:
            raise ValueError("an incomplete item is routed only when nobody can give its missing labels")
        return _review(ReviewReason.NO_ANNOTATOR, best, confidence, value, has_reviewer)
    blocked = policy is Policy.DISAGREEMENTS and is_disputed
    if confidence >= min_confidence and not blocked:
        return Decision(Outcome.FINAL, label=best, confidence=confidence, value=value)
    if labels_needed < max_labels:
        if can_extend:
            return Decision(Outcome.EXTRA_LABEL, value=value)
        return _review(ReviewReason.NO_ANNOTATOR, best, confidence, value, has_reviewer)
    if labels_needed > labels_per_item:
        reason = ReviewReason.MAX_LABELS
    elif is_disputed:
        reason = ReviewReason.DISAGREEMENT
    else:
        reason = ReviewReason.LOW_CONFIDENCE
    return _review(reason, best, confidence, value, has_reviewer)


# --- tag sets (multi-label projects) ---------------------------------------------------------------
# Binary relevance: every tag is a present/absent question with its own posterior. An item is final
# when every tag is confident; the same rules as above decide on its weakest tag (the least confident
# one, or the least confident tag whose answers split evenly: a disputed tag blocks finalisation under
# the ``disagreements`` policy exactly as a disputed label does).


def tag_vote_shares(answers) -> np.ndarray:
    """Majority-vote posterior per tag: the share of the item's annotators who chose it. ``answers``:
    (R, L) 0/1, one row per annotator."""
    answers = np.atleast_2d(np.asarray(answers, dtype=np.float64))
    if answers.shape[0] == 0:
        return np.full(answers.shape[1], 0.5)
    return answers.mean(axis=0)


def tag_posteriors(answers, log_odds: np.ndarray, prior_log_odds: np.ndarray) -> np.ndarray:
    r"""Posterior P(tag present) per tag from the item's answers, the E-step of the binary-relevance
    aggregator (``annotation.tagsets.BinaryRelevanceDawidSkene``) for this item alone:
    :math:`\operatorname{logit} p_\ell = b_\ell + \sum_r w_{r\ell}[y_{r\ell}]`, with ``answers`` (R, L)
    0/1, ``log_odds`` (R, L, 2) annotator r's evidence for "present" when they left tag ℓ out (``[...,
    0]``) or chose it (``[..., 1]``), and ``prior_log_odds`` (L,) :math:`b`."""
    answers = np.atleast_2d(np.asarray(answers, dtype=np.int64))
    log_odds = np.asarray(log_odds, dtype=np.float64)
    rows = np.arange(answers.shape[0])[:, None]
    cols = np.arange(answers.shape[1])[None, :]
    logit = np.asarray(prior_log_odds, dtype=np.float64) + log_odds[rows, cols, answers].sum(axis=0)
    return 1.0 / (1.0 + np.exp(-np.clip(logit, -700, 700)))


def tag_disputed(answers) -> np.ndarray:
    """Per tag: the item's answers split evenly on it (no strict majority for present or absent)."""
    answers = np.atleast_2d(np.asarray(answers, dtype=np.int64))
    n = answers.shape[0]
    present = answers.sum(axis=0)
    return (n > 0) & (2 * present == n)


@dataclass(frozen=True, slots=True)
class TagDecision:
    decision: Decision
    tags: tuple[int, ...]  # the tag set (column indices) when FINAL
    disputed: tuple[int, ...]  # tags under the threshold or split evenly, least confident first
    confidence: float  # the least confident tag's max(p, 1 - p)


def decided_tags(posteriors, *, allow_empty: bool = True) -> tuple[int, ...]:
    """The tag set a posterior decides: every tag with p >= 0.5; the most probable one when nothing
    passes and the project does not allow an empty set."""
    posteriors = np.asarray(posteriors, dtype=np.float64)
    tags = tuple(int(j) for j in np.flatnonzero(posteriors >= 0.5))
    if not tags and not allow_empty and posteriors.size:
        tags = (int(np.argmax(posteriors)),)
    return tags


def route_tags(
    posteriors,
    answers,
    *,
    labels_needed: int,
    labels_per_item: int,
    max_labels: int,
    min_confidence: float,
    policy: Policy,
    can_extend: bool = True,
    has_reviewer: bool = True,
    allow_empty: bool = True,
) -> TagDecision:
    """:func:`route` for a tag set: ``posteriors`` (L,) P(tag present), ``answers`` (R, L) 0/1. The
    rule runs on the weakest tag (block comment above); FINAL carries the decided tag set."""
    posteriors = np.asarray(posteriors, dtype=np.float64)
    answers = np.atleast_2d(np.asarray(answers, dtype=np.int64)).reshape(-1, posteriors.size)
    confidence = np.maximum(posteriors, 1.0 - posteriors)
    split = tag_disputed(answers)
    weak = (confidence < min_confidence) | split
    order = np.lexsort((confidence, ~split))  # split tags first, then the least confident
    disputed_tags = tuple(int(j) for j in order if weak[j])
    weakest = int(np.argmin(confidence)) if posteriors.size else 0
    decider = int(order[0]) if split.any() else weakest
    c = float(confidence[weakest]) if posteriors.size else 1.0
    vector = np.array([c, 1.0 - c])
    votes = answers[:, decider] if posteriors.size else np.zeros(answers.shape[0], dtype=np.int64)
    # The decider's answers as class indices, "0" for the side the weakest tag's posterior leans to.
    leaning = int(posteriors[decider] >= 0.5) if posteriors.size else 1
    labels = np.where(votes == leaning, 0, 1)
    decision = route(
        vector,
        labels,
        labels_needed=labels_needed,
        labels_per_item=labels_per_item,
        max_labels=max_labels,
        min_confidence=min_confidence,
        policy=policy,
        can_extend=can_extend,
        has_reviewer=has_reviewer,
    )
    tags = decided_tags(posteriors, allow_empty=allow_empty) if decision.outcome is Outcome.FINAL else ()
    return TagDecision(decision, tags, disputed_tags, c)


def _review(reason: ReviewReason, best: int, confidence: float, value: float, has_reviewer: bool) -> Decision:
    """``REVIEW`` for ``reason``; a ``no_annotator`` item that nobody can review either is final
    with its posterior's arg-max and (low) confidence instead (module docstring)."""
    if reason is ReviewReason.NO_ANNOTATOR and not has_reviewer:
        return Decision(Outcome.FINAL, label=best, confidence=confidence, value=value)
    return Decision(Outcome.REVIEW, reason=reason, value=value)


def _percent(p: float, other: float | None = None) -> str:
    """``p`` as a percentage, with as many decimals (up to three) as it takes not to print the
    same figure as ``other`` when the two differ (79.6 % is not "80 %" beside an 80 % threshold)."""
    for digits in range(4):
        text = f"{100.0 * p:.{digits}f}"
        if other is None or p == other or text != f"{100.0 * other:.{digits}f}":
            return f"{text} %"
    return f"{text} %"


def _votes_words(votes: list[int]) -> str:
    """``[1, 1]`` -> ``"a 1-1 split of 2 labels"``, ``[2]`` -> ``"2 labels, all the same"``."""
    n_labels = sum(votes)
    if n_labels == 0:
        return "no labels"
    if n_labels == 1:
        return "1 label"
    if len(votes) == 1:
        return f"{n_labels} labels, all the same"
    split = "-".join(str(n) for n in sorted(votes, reverse=True))
    return f"a {split} split of {n_labels} labels"


def review_reason_text(
    reason: str,
    *,
    votes,
    confidence: float | None,
    threshold: float,
    review_all_below_kappa: float | None = None,
) -> str:
    """The words of a review chip, from the stored reason and the item's actual numbers.

    ``votes``: the label counts of the item's annotations (any order); ``confidence``: the largest
    posterior on the task (``None`` when none is stored); ``threshold``: the project's
    ``min_consensus_confidence`` in force. Every figure printed is one of these: no label cap, no
    majority claim and no threshold comparison that the numbers do not bear out.
    """
    reason = ReviewReason(reason)
    votes = [int(n) for n in votes if int(n) > 0]
    n_labels = sum(votes)
    has_majority = bool(votes) and 2 * max(votes) > n_labels
    said = _votes_words(votes)
    if confidence is None:
        consensus, under = "no consensus estimate yet", None
    else:
        under = confidence < threshold
        relation = "under" if under else "at or above"
        consensus = f"consensus {_percent(confidence, threshold)}, {relation} the {_percent(threshold)} threshold"
    if reason is ReviewReason.LABEL_ERROR:
        return reason.label
    if reason is ReviewReason.POLICY_ALL:
        kappa = "" if review_all_below_kappa is None else f" (kappa under {review_all_below_kappa:.2f})"
        return f"Low project agreement{kappa}: every item with two or more labels is reviewed ({said})"
    if reason is ReviewReason.NO_ANNOTATOR:
        return f"Needs another label, and no annotator who has not labelled it is left ({said}; {consensus})"
    if not has_majority and n_labels > 1 and reason in (ReviewReason.DISAGREEMENT, ReviewReason.MAX_LABELS):
        return f"No label holds a majority: {said}"
    if reason is ReviewReason.MAX_LABELS:
        return f"Unresolved after {n_labels} labels ({said}): {consensus}"
    if reason is ReviewReason.DISAGREEMENT:
        return f"Sent to review as a disagreement; now {said}, {consensus}"
    if under is False:  # LOW_CONFIDENCE, and the posterior has risen since
        return f"Sent to review under the threshold; now {consensus} ({said})"
    return f"{consensus[:1].upper()}{consensus[1:]} ({said})"


def priorities_on_queue_scale(values, new_priorities) -> np.ndarray:
    """Stored priorities for label values ``values`` in [0, 1], placed among the new entries.

    ``new_priorities`` are the stored priorities of the queue's new (non-``extra_label``) entries
    with an open slot. Their rank value is :math:`(n - j)/n` for the j-th highest (j = 0..n-1); a
    value v lands at fractional rank :math:`(1 - v)\\,n`, interpolated linearly between the
    neighbouring stored priorities. Above the head / below the tail: one unit of the batch's mean
    gap (at least 1e-6) beyond it. With no new entries the values themselves are the priorities.
    """
    values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    stored = np.sort(np.asarray(new_priorities, dtype=np.float64))[::-1]  # highest first
    stored = stored[np.isfinite(stored)]
    n = stored.size
    if n == 0:
        return values.copy()
    gap = max((stored[0] - stored[-1]) / max(n - 1, 1), 1e-6)
    position = (1.0 - values) * n  # fractional index into ``stored``; 0 = at the head's rank
    out = np.interp(position, np.arange(n, dtype=np.float64), stored)
    # np.interp clamps at the ends: a value at or above the head's rank goes just above it, a
    # value below the tail's rank (position > n - 1) just below the tail.
    out = np.where(position <= 0.0, stored[0] + gap, out)
    out = np.where(position > n - 1, stored[-1] - gap * (position - (n - 1)), out)
    return out
