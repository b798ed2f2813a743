"""What happens to an item once it has all the labels it asked for: finalise, ask for one more
label, or send it to review.

Called on the submit path, per item, inside the submitting transaction (the item's queue entry is
locked by the caller). The rules and the queue-priority rule are in :mod:`annotation.routing`; this
module gathers the inputs cheaply and writes the outcome:

- the posterior comes from the latest ``AgreementSnapshot`` (class priors, label order) and the
  ``AnnotatorQuality`` rows (confusion matrices) of the item's annotators: two small indexed reads.
  Without a snapshot, or when one of the annotators or labels is unknown to it, the majority-vote
  shares stand in;
- the review policy comes from the snapshot's project kappa and the project's thresholds (the
  middle policy until kappa can be estimated);
- ``FINAL``: ``final_label``, ``final_confidence`` (max posterior), ``final_source = consensus``,
  the queue entry goes; ``EXTRA_LABEL``: ``labels_needed += 1``, reason ``extra_label``, priority
  placed among the new items (``routing.priorities_on_queue_scale``); ``REVIEW``: a ``ReviewTask``
  (with the posterior and the model's suggestion from the queue entry), item ``in_review``, the
  entry goes;
- no item waits for ever: when the rule asks for another label (or the item still lacks some) and
  no eligible annotator (``selectors.eligible_annotators``: not paused, and not yet handed the
  item) is left, the item goes to review with the reason ``no_annotator``, or is final with its
  low confidence when nobody who has not labelled it could review it (``routing.route``'s
  ``can_extend`` / ``has_reviewer``; ``selectors.labelling_states`` reads who is left). The submit
  path checks this on every label (``entry_route_after_label``), the aggregation and a change of
  ``labels_per_item`` / ``max_labels_per_item`` for every queued item.

The whole-project pass (``aggregation.project_aggregate``) applies the same rules with freshly
fitted posteriors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np
from django.db.models import F
from django.utils import timezone

from .. import routing
from ..models import (
    ANNOTATOR_KEY,
    AgreementSnapshot,
    Annotation,
    AnnotatorQuality,
    Assignment,
    AssignmentStatus,
    Item,
    ItemStatus,
    LabelClass,
    LabelSource,
    Project,
    QueueEntry,
    QueueReason,
    ReviewTask,
)
from ..routing import Decision, Outcome, Policy
from ..selectors import LabellingState, labelling_states
from .slots import locked_entry

__all__ = [
    "Decision",
    "Outcome",
    "entry_route_after_label",
    "entry_route_if_complete",
    "entry_route_if_stuck",
    "item_consensus_apply",
    "item_posterior",
    "project_policy",
]

NEW_ITEMS_CAP = 2000  # new entries read to place an extra-label request (the head of the queue)


#: ``snapshot`` argument default: not read yet (``None`` means read, and the project has none).
UNREAD = object()


def _latest_snapshot(project_id: int):
    return (
        AgreementSnapshot.objects.filter(project_id=project_id)
        .order_by("-computed_at", "-id")
        .only("id", "project_kappa", "n_overlap_items", "label_ids", "priors")
        .first()
    )


def project_policy(project: Project, snapshot=UNREAD) -> Policy:
    """The review policy of ``project`` from its latest snapshot's kappa and its thresholds."""
    if snapshot is UNREAD:
        snapshot = _latest_snapshot(project.pk)
    return routing.review_policy(
        None if snapshot is None else snapshot.project_kappa,
        0 if snapshot is None else snapshot.n_overlap_items,
        review_all_below=project.review_all_below_kappa,
        review_disagreements_below=project.review_disagreements_below_kappa,
    )


def item_posterior(project_id: int, annotations: Sequence[tuple[int, int]], snapshot=UNREAD) -> dict[int, float]:
    """``{label_id: p}`` for one item from its ``(user_id, label_id)`` annotations (module docstring).

    The snapshot's ``priors`` and the ``AnnotatorQuality.confusion`` rows are the aggregator's
    calibrated prior and answer weights (``HierarchicalDawidSkene.prior_weights_`` /
    ``answer_weights_``), so :func:`routing.item_posterior` gives exactly the temperature-scaled
    posterior the last aggregation gave an item with these answers: routing thresholds act on
    calibrated numbers, and two agreeing labels from annotators the model knows to be good are
    final without a third (``tests/test_hierarchical_ds.py``).
    """
    label_ids = [label_id for _, label_id in annotations]
    if snapshot is UNREAD:
        snapshot = _latest_snapshot(project_id)
    if snapshot is not None and snapshot.label_ids:
        column = {label_id: j for j, label_id in enumerate(snapshot.label_ids)}
        n_classes = len(snapshot.label_ids)
        users = {user_id for user_id, _ in annotations}
        rows = dict(
            AnnotatorQuality.objects.filter(project_id=project_id, user_id__in=users, n_classes=n_classes).values_list(
                "user_id", "confusion"
            )
        )
        if len(rows) == len(users) and all(label_id in column for label_id in label_ids):
            confusions = np.stack(
                [
                    np.frombuffer(bytes(rows[user_id]), dtype="<f4").reshape(n_classes, n_classes)
                    for user_id, _ in annotations
                ]
            )
            posterior = routing.item_posterior(
                [column[label_id] for label_id in label_ids], confusions, np.asarray(snapshot.priors, dtype=np.float64)
            )
            return {int(snapshot.label_ids[j]): float(posterior[j]) for j in np.flatnonzero(posterior > 0)}
    classes = sorted(set(label_ids))
    shares = routing.vote_shares([classes.index(label_id) for label_id in label_ids], len(classes))
    return {label_id: float(share) for label_id, share in zip(classes, shares, strict=True)}


def _extra_label_priority(project_id: int, value: float) -> float:
    new = list(
        QueueEntry.objects.filter(project_id=project_id, labels_taken__lt=F("labels_needed"))
        .exclude(reason=QueueReason.EXTRA_LABEL)
        .order_by("-priority", "id")
        .values_list("priority", flat=True)[:NEW_ITEMS_CAP]
    )
    return float(routing.priorities_on_queue_scale([value], new)[0])


def _ask_one_more(project: Project, entry: QueueEntry, value: float) -> None:
    """``EXTRA_LABEL``: the entry asks for one more label, placed among the new items by ``value``."""
    priority = _extra_label_priority(project.pk, value)
    QueueEntry.objects.filter(pk=entry.pk).update(
        labels_needed=entry.labels_needed + 1, reason=QueueReason.EXTRA_LABEL, priority=priority
    )
    entry.labels_needed += 1
    entry.reason = QueueReason.EXTRA_LABEL
    entry.priority = priority


def posterior_json(posterior: Mapping[int, float]) -> dict[str, float]:
    return {str(label_id): round(p, 6) for label_id, p in posterior.items() if p >= 1e-3}


def item_consensus_apply(
    *,
    project: Project,
    entry: QueueEntry,
    annotations: Sequence[tuple[int, int]],
    posterior: Mapping[int, float] | None = None,
    policy: Policy | None = None,
    state: LabellingState | None = None,
) -> Decision:
    """Route an item whose entry is locked by the caller's transaction.

    ``annotations``: the item's ``(user_id, label_id)`` pairs; fewer than the entry's
    ``labels_needed`` only when nobody can give the rest (``entry_route_if_stuck``). ``posterior``
    (``{label_id: p}``) and ``policy`` default to the latest snapshot's (the aggregation passes its
    fresh ones); ``state`` (who is left to label or review the item, ``selectors.labelling_states``)
    is read when the rule asks for another label.
    """
    if not annotations:
        raise ValueError("item_consensus_apply needs at least one annotation")
    if project.multi_label:
        return _tags_consensus_apply(
            project=project, entry=entry, annotations=annotations, posterior=posterior, policy=policy, state=state
        )
    snapshot = _latest_snapshot(project.pk) if posterior is None or policy is None else UNREAD
    if posterior is None:
        posterior = item_posterior(project.pk, annotations, snapshot)
    if policy is None:
        policy = project_policy(project, snapshot)
    label_order = list(posterior)
    index = {label_id: j for j, label_id in enumerate(label_order)}
    extra = [label_id for _, label_id in annotations if label_id not in index]
    for label_id in extra:
        index.setdefault(label_id, len(label_order))
        label_order.append(label_id)
    vector = np.zeros(len(label_order))
    for label_id, p in posterior.items():
        vector[index[label_id]] = p
    rule = partial(
        routing.route,
        vector,
        [index[label_id] for _, label_id in annotations],
        labels_needed=entry.labels_needed,
        labels_per_item=project.labels_per_item,
        max_labels=project.max_labels_per_item,
        min_confidence=project.min_consensus_confidence,
        policy=policy,
    )
    incomplete = len(annotations) < entry.labels_needed
    decision = None if incomplete else rule()
    if decision is None or decision.outcome is Outcome.EXTRA_LABEL:
        # Another label is needed: only someone who has not been handed the item can give it.
        if state is None:
            state = labelling_states(project, [entry.item_id])[entry.item_id]
        decision = rule(can_extend=state.can_extend and not incomplete, has_reviewer=state.has_reviewer)
    now = timezone.now()
    if decision.outcome is Outcome.FINAL:
        label_id = label_order[decision.label]
        Item.objects.filter(pk=entry.item_id).update(
            status=ItemStatus.FINALIZED,
            final_label_id=label_id,
            final_confidence=decision.confidence,
            final_source=LabelSource.CONSENSUS,
            finalized_at=now,
            updated_at=now,
        )
        entry.delete()
        return Decision(Outcome.FINAL, label=label_id, confidence=decision.confidence, value=decision.value)
    if decision.outcome is Outcome.EXTRA_LABEL:
        _ask_one_more(project, entry, decision.value)
        return decision
    Item.objects.filter(pk=entry.item_id).update(status=ItemStatus.IN_REVIEW, updated_at=now)
    ReviewTask.objects.get_or_create(
        item_id=entry.item_id,
        status="open",
        defaults={
            "project": project,
            "reason": decision.reason.value,
            "priority": decision.value,
            "posterior": posterior_json(posterior),
            "model_label_id": entry.suggested_label_id,
            "model_confidence": entry.suggested_confidence,
        },
    )
    entry.delete()
    return decision


def _item_annotations(item_id: int) -> list[tuple[int, int]] | list[tuple[int, tuple[int, ...]]]:
    """The item's ``(annotator, answer)`` pairs: a label id, or a tag set on multi-label projects."""
    rows = Annotation.objects.filter(item_id=item_id).order_by("id").values_list(ANNOTATOR_KEY, "label_id", "tags")
    return [(user_id, label_id if tags is None else tuple(tags)) for user_id, label_id, tags in rows]


# --- tag sets (multi-label projects) ------------------------------------------------------------------


def project_tag_ids(project_id: int) -> list[int]:
    return list(LabelClass.objects.filter(project_id=project_id).order_by("order", "id").values_list("pk", flat=True))


def item_tag_posterior(
    project_id: int, annotations: Sequence[tuple[int, tuple[int, ...]]], snapshot=UNREAD, tag_ids=None
) -> dict[int, float]:
    """``{label_id: P(tag present)}`` for every label of the project from the item's ``(user_id,
    tag set)`` annotations: the latest aggregation's per-tag prior log-odds (``snapshot.priors``) and
    the annotators' per-tag evidence (``AnnotatorQuality.confusion``: (L, 2) float32, the log-odds a
    left-out / chosen tag adds, ``BinaryRelevanceDawidSkene``'s tempered weights), so the posterior is
    the fitted one; the vote shares when the aggregation does not know an annotator."""
    tag_ids = project_tag_ids(project_id) if tag_ids is None else tag_ids
    column = {label_id: j for j, label_id in enumerate(tag_ids)}
    answers = np.zeros((len(annotations), len(tag_ids)), dtype=np.int64)
    for r, (_, tags) in enumerate(annotations):
        for label_id in tags:
            if label_id in column:
                answers[r, column[label_id]] = 1
    if snapshot is UNREAD:
        snapshot = _latest_snapshot(project_id)
    posterior = None
    if snapshot is not None and snapshot.label_ids and list(snapshot.label_ids) == list(tag_ids):
        users = {user_id for user_id, _ in annotations}
        rows = dict(
            AnnotatorQuality.objects.filter(
                project_id=project_id, user_id__in=users, n_classes=len(tag_ids)
            ).values_list("user_id", "confusion")
        )
        size = len(tag_ids) * 2 * 4
        if len(rows) == len(users) and all(len(bytes(rows[u])) == size for u in users):
            log_odds = np.stack(
                [
                    np.frombuffer(bytes(rows[user_id]), dtype="<f4").reshape(len(tag_ids), 2)
                    for user_id, _ in annotations
                ]
            )
            posterior = routing.tag_posteriors(answers, log_odds, np.asarray(snapshot.priors, dtype=np.float64))
    if posterior is None:
        posterior = routing.tag_vote_shares(answers)
    return {label_id: float(posterior[j]) for j, label_id in enumerate(tag_ids)}


def _tags_consensus_apply(
    *,
    project: Project,
    entry: QueueEntry,
    annotations: Sequence[tuple[int, tuple[int, ...]]],
    posterior: Mapping[int, float] | None,
    policy: Policy | None,
    state: LabellingState | None,
) -> Decision:
    """``item_consensus_apply`` for a tag set (``routing.route_tags``): final when every tag is
    confident, with the decided set; the review task names the disputed tags."""
    snapshot = _latest_snapshot(project.pk) if posterior is None or policy is None else UNREAD
    tag_ids = project_tag_ids(project.pk)
    if posterior is None:
        posterior = item_tag_posterior(project.pk, annotations, snapshot, tag_ids)
    if policy is None:
        policy = project_policy(project, snapshot)
    column = {label_id: j for j, label_id in enumerate(tag_ids)}
    vector = np.array([posterior.get(label_id, 0.0) for label_id in tag_ids])
    answers = np.zeros((len(annotations), len(tag_ids)), dtype=np.int64)
    for r, (_, tags) in enumerate(annotations):
        for label_id in tags:
            if label_id in column:
                answers[r, column[label_id]] = 1
    rule = partial(
        routing.route_tags,
        vector,
        answers,
        labels_needed=entry.labels_needed,
        labels_per_item=project.labels_per_item,
        max_labels=project.max_labels_per_item,
        min_confidence=project.min_consensus_confidence,
        policy=policy,
        allow_empty=project.allow_empty_tags,
    )
    incomplete = len(annotations) < entry.labels_needed
    result = None if incomplete else rule()
    if result is None or result.decision.outcome is Outcome.EXTRA_LABEL:
        if state is None:
            state = labelling_states(project, [entry.item_id])[entry.item_id]
        result = rule(can_extend=state.can_extend and not incomplete, has_reviewer=state.has_reviewer)
    decision = result.decision
    now = timezone.now()
    posteriors_json = posterior_json(posterior)
    if decision.outcome is Outcome.FINAL:
        Item.objects.filter(pk=entry.item_id).update(
            status=ItemStatus.FINALIZED,
            final_label_id=None,
            final_tags=sorted(tag_ids[j] for j in result.tags),
            tag_posteriors=posteriors_json,
            final_confidence=result.confidence,
            final_source=LabelSource.CONSENSUS,
            finalized_at=now,
            updated_at=now,
        )
        entry.delete()
        return Decision(Outcome.FINAL, label=None, confidence=result.confidence, value=decision.value)
    if decision.outcome is Outcome.EXTRA_LABEL:
        _ask_one_more(project, entry, decision.value)
        return decision
    Item.objects.filter(pk=entry.item_id).update(
        status=ItemStatus.IN_REVIEW, tag_posteriors=posteriors_json, updated_at=now
    )
    suggested = entry.suggested_tags or {}
    ReviewTask.objects.get_or_create(
        item_id=entry.item_id,
        status="open",
        defaults={
            "project": project,
            "reason": decision.reason.value,
            "priority": decision.value,
            "posterior": posteriors_json,
            "disputed_tags": [tag_ids[j] for j in result.disputed],
            "model_tags": suggested.get("tags"),
            "model_confidence": entry.suggested_confidence,
        },
    )
    entry.delete()
    return decision


def entry_route_if_complete(
    *,
    project: Project,
    item_id: int,
    posterior: Mapping[int, float] | None = None,
    policy: Policy | None = None,
    state: LabellingState | None = None,
) -> Decision | None:
    """Route the item when its entry has all its labels and no live lease (the aggregation's
    catch-up for complete entries); ``None`` when there is nothing to do."""
    entry = locked_entry(item_id)
    if entry is None or entry.labels_taken < entry.labels_needed:
        return None
    if Assignment.objects.filter(item_id=item_id, status=AssignmentStatus.LEASED).exists():
        return None
    annotations = _item_annotations(item_id)
    if len(annotations) < entry.labels_needed:
        return None
    return item_consensus_apply(
        project=project, entry=entry, annotations=annotations, posterior=posterior, policy=policy, state=state
    )


def entry_route_if_stuck(
    *,
    project: Project,
    item_id: int,
    posterior: Mapping[int, float] | None = None,
    policy: Policy | None = None,
    state: LabellingState | None = None,
) -> Decision | None:
    """Route an item that is still missing labels when nobody can give them (module docstring of
    ``routing``: no item waits for ever): it has at least one label, no live lease, and every
    eligible annotator (``selectors.eligible_annotators``) has been handed it. ``None`` when the
    item is not stuck (or not queued). Locks the item's entry."""
    entry = locked_entry(item_id)
    if entry is None:
        return None
    return _route_if_stuck(project, entry, posterior, policy, state)


def _route_if_stuck(project: Project, entry: QueueEntry, posterior, policy, state) -> Decision | None:
    if entry.labels_taken >= entry.labels_needed:
        return None
    if state is None:
        state = labelling_states(project, [entry.item_id])[entry.item_id]
    if state.can_extend or state.leased:
        return None
    annotations = _item_annotations(entry.item_id)
    if not annotations or len(annotations) >= entry.labels_needed:
        return None
    return item_consensus_apply(
        project=project, entry=entry, annotations=annotations, posterior=posterior, policy=policy, state=state
    )


def entry_route_after_label(*, project: Project, entry: QueueEntry) -> Decision | None:
    """The submit path's rule once a label landed on ``entry`` (locked by the caller): the item is
    routed on its ``labels_needed``-th label, or before it when nobody is left to give the rest."""
    if entry.labels_taken < entry.labels_needed:
        return _route_if_stuck(project, entry, None, None, None)
    annotations = _item_annotations(entry.item_id)
    if len(annotations) < entry.labels_needed:
        return None
    return item_consensus_apply(project=project, entry=entry, annotations=annotations)
