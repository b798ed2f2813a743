"""Aggregation in the loop: Dawid-Skene over a whole project, agreement figures, re-routing, debounce.

``project_aggregate`` is the one write that looks at every annotation of a project at once:

1. one ``values_list`` query loads the annotations as three integer arrays (item, annotator,
   label); items decided by review or gold (``final_source`` review|gold) become ``true_labels``;
2. ``HierarchicalDawidSkene`` (``ds_model``) is fitted on every aggregation: its priors shrink each
   annotator to the pool and the pool to one-coin when the answers say little, so it needs no
   switch to majority vote while few items are shared (with one label per item every item keeps its
   answer, as majority vote would; ``tests/test_hierarchical_ds.py``). The agreement figures come from
   ``annotation.agreement`` on the same arrays: the pairwise Cohen's kappa matrix, the project
   kappa, Fleiss' kappa and Krippendorff's alpha;
3. the routing rules (``annotation.routing``) are re-applied with the fitted posteriors and the
   policy of the new project kappa: consensus items get the Dawid-Skene label and confidence (or
   go to review when they no longer pass; they never go back to the queue), open complete items
   are routed as on the submit path, items still waiting for labels that no eligible annotator is
   left to give go to review (``no_annotator``; final with their low confidence when nobody could
   review them), disputed items waiting for an extra label are re-placed in the queue, open review
   tasks get fresh posteriors and the reason that holds now (``_current_reason``: a stale chip
   never survives an aggregation); review and gold labels are never touched;
4. per-annotator quality (``AnnotatorQuality``: ``ds_accuracy`` is the prior-weighted accuracy
   Σ_j θ_j π_r^jj; ``confusion`` holds the model's calibrated answer weights and
   ``AgreementSnapshot.priors`` its prior weights, so that the submit path's posterior of an item is
   the fitted one) and an ``AgreementSnapshot`` are written.

All in one transaction, serialised per project by a ``FOR NO KEY UPDATE`` lock on the project row
(the lock ``queue_replace`` takes). Writes are bulk statements over the rows that change: a
consensus item is rewritten only when its label changes or its confidence moves by at least
``CONFIDENCE_TOLERANCE``.

Project kappa: the mean of the pairwise Cohen's kappas over the pairs of annotators who share at
least ``agreement.MIN_OVERLAP`` (10) items, weighted by the number of shared items (a pair with
500 shared items says more than one with 10). ``None`` when no pair qualifies.

Snapshots: a history is kept (the kappa over time), the newest ``SNAPSHOT_HISTORY`` per project;
the submit path reads the newest.

Debounce (``aggregation_claim``): submissions, changes, undos and review decisions announce
``signals.labels_changed``, and the loop asks for an aggregation. One conditional ``UPDATE … WHERE
requested_at IS NULL`` on the project's ``AggregationState`` row decides, across processes, which
request schedules the task (``loop.services.aggregation``: a countdown of
``QUORUM_AGGREGATION_DELAY_SECONDS``, 10 s by default); the others see the flag set and do nothing.
The task clears the flag when it starts (``aggregation_started``), so requests that arrive while it
runs schedule the next one. A flag older than ``STALE_REQUEST_SECONDS`` (a lost message) counts as
clear.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from quorum.chunks import iter_chunks

from .. import agreement, routing
from ..dawid_skene import HierarchicalDawidSkene
from ..models import (
    ANNOTATOR_KEY,
    AggregationState,
    AgreementSnapshot,
    Annotation,
    AnnotatorQuality,
    Item,
    ItemStatus,
    LabelClass,
    LabelSource,
    Membership,
    PausedAnswers,
    Project,
    QueueEntry,
    QueueReason,
    ReviewStatus,
    ReviewTask,
    deleted_user_name,
)
from ..selectors import labelling_states
from . import tag_aggregation
from .consensus import entry_route_if_complete, entry_route_if_stuck

logger = logging.getLogger(__name__)

CONFIDENCE_TOLERANCE = 0.005
SNAPSHOT_HISTORY = 100
STALE_REQUEST_SECONDS = 600
CHUNK = 2000
POSTERIOR_MIN = 1e-3  # posterior entries stored on review tasks (the rest is noise)


def ds_model() -> HierarchicalDawidSkene:
    """The aggregator of the loop (the defaults of ``HierarchicalDawidSkene``; see its docstring)."""
    return HierarchicalDawidSkene()


# --- debounce --------------------------------------------------------------------------------


def aggregation_claim(*, project: Project, stale_seconds: float = STALE_REQUEST_SECONDS) -> bool:
    """Set the project's request flag. Returns whether this call set it, i.e. whether the caller
    schedules the aggregation (the loop does, when the transaction commits); ``False`` while one is
    already asked for. A flag older than ``stale_seconds`` whose task never started (its message was
    lost) counts as clear. Safe inside any transaction."""
    now = timezone.now()
    stale = now - timedelta(seconds=stale_seconds)
    claimed = AggregationState.objects.filter(
        Q(requested_at__isnull=True) | Q(requested_at__lt=stale), project_id=project.pk
    ).update(requested_at=now)
    if claimed:
        return True
    if AggregationState.objects.filter(project_id=project.pk).exists():
        return False
    try:
        with transaction.atomic():
            AggregationState.objects.create(project_id=project.pk, requested_at=now)
    except IntegrityError:  # another request created the row first: it schedules
        return False
    return True


def aggregation_release(*, project_id: int) -> None:
    """Clear the request flag without running (the task could not be sent): the next request tries again."""
    AggregationState.objects.filter(project_id=project_id).update(requested_at=None)


def aggregation_unsent(*, project_id: int, older_than: float) -> None:
    """The task could not be sent: the flag stays set, back-dated by ``older_than`` seconds so that it
    is overdue at once. The next request (``aggregation_claim`` with that ``stale_seconds``) or the
    loop's sweep (``aggregation_requests_overdue``) sends it again; the labels are never forgotten."""
    AggregationState.objects.filter(project_id=project_id, requested_at__isnull=False).update(
        requested_at=timezone.now() - timedelta(seconds=older_than + 1)
    )


def aggregation_requests_overdue(*, older_than: float) -> list[int]:
    """Projects whose request flag was set more than ``older_than`` seconds ago and whose task has
    not started since: its message was lost or never sent (the loop's sweep sends it again)."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    return list(AggregationState.objects.filter(requested_at__lt=cutoff).values_list("project_id", flat=True))


def aggregation_rearm(*, project_id: int, older_than: float) -> bool:
    """The overdue request of the project is being sent again: its flag starts over (conditional, so
    two sweeps do not both send). Returns whether this call re-armed it."""
    now = timezone.now()
    return bool(
        AggregationState.objects.filter(
            project_id=project_id, requested_at__lt=now - timedelta(seconds=older_than)
        ).update(requested_at=now)
    )


def aggregation_started(*, project_id: int) -> None:
    """The task began: later requests schedule a new run."""
    AggregationState.objects.filter(project_id=project_id).update(requested_at=None, started_at=timezone.now())


# --- the aggregation -------------------------------------------------------------------------


@dataclass
class _Data:
    label_ids: np.ndarray  # (C,) LabelClass ids in class order
    item_ids: np.ndarray  # (I,) sorted
    user_ids: np.ndarray  # (W,) sorted
    items: np.ndarray  # (N,) indices
    workers: np.ndarray
    labels: np.ndarray
    gold: np.ndarray  # (I,) class index or -1


def _load(project: Project) -> _Data:
    label_ids = np.array(
        LabelClass.objects.filter(project=project).order_by("order", "id").values_list("id", flat=True),
        dtype=np.int64,
    )
    answers = Annotation.objects.filter(project=project)
    if project.paused_answers == PausedAnswers.EXCLUDE:
        # The admin's choice: a paused annotator's answers are left out (``services.quality``).
        paused = Membership.objects.filter(project=project, paused_at__isnull=False).values("user_id")
        answers = answers.exclude(user_id__in=paused)
    rows = np.array(
        list(answers.order_by().values_list("item_id", ANNOTATOR_KEY, "label_id")),
        dtype=np.int64,
    ).reshape(-1, 3)
    gold_rows = np.array(
        list(
            Item.objects.filter(
                project=project, final_source__in=[LabelSource.REVIEW, LabelSource.GOLD], final_label__isnull=False
            )
            .order_by()
            .values_list("id", "final_label_id")
        ),
        dtype=np.int64,
    ).reshape(-1, 2)
    order = np.argsort(label_ids)
    sorted_labels = label_ids[order]

    def class_of(ids: np.ndarray) -> np.ndarray:
        return order[np.searchsorted(sorted_labels, ids)]

    item_ids = np.unique(np.concatenate([rows[:, 0], gold_rows[:, 0]]))
    user_ids, workers = np.unique(rows[:, 1], return_inverse=True)
    gold = np.full(item_ids.size, -1, dtype=np.int64)
    gold[np.searchsorted(item_ids, gold_rows[:, 0])] = class_of(gold_rows[:, 1])
    return _Data(
        label_ids=label_ids,
        item_ids=item_ids,
        user_ids=user_ids,
        items=np.searchsorted(item_ids, rows[:, 0]),
        workers=workers.reshape(-1),
        labels=class_of(rows[:, 2]),
        gold=gold,
    )


def _project_kappa(matrix: np.ndarray, overlap: np.ndarray) -> float | None:
    upper = np.triu(np.ones_like(overlap, dtype=bool), k=1)
    use = upper & (overlap >= agreement.MIN_OVERLAP) & np.isfinite(matrix)
    if not use.any():
        return None
    return float(np.average(matrix[use], weights=overlap[use]))


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _posterior_json(posterior: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
    keep = np.flatnonzero(posterior >= POSTERIOR_MIN)
    return {str(int(label_ids[j])): round(float(posterior[j]), 6) for j in keep}


def _executemany(sql: str, rows: list[tuple]) -> None:
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _consensus_update(ids: np.ndarray, labels: np.ndarray, confidences: np.ndarray, now) -> None:
    """Set the final label and confidence of consensus items: one ``UPDATE … FROM unnest(…)`` per
    10,000 items on PostgreSQL, ``executemany`` elsewhere (SQLite runs it in-process)."""
    if connection.vendor == "postgresql":
        for start in range(0, ids.size, 10_000):
            part = slice(start, start + 10_000)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {_table(Item)} AS t SET final_label_id = v.label, final_confidence = v.conf, "
                    "updated_at = %s FROM unnest(%s::bigint[], %s::bigint[], %s::double precision[]) "
                    "AS v(id, label, conf) WHERE t.id = v.id AND t.status = 'finalized' "
                    "AND t.final_source = 'consensus'",
                    [now, ids[part].tolist(), labels[part].tolist(), confidences[part].tolist()],
                )
        return
    rows = [
        (int(label), float(conf), now, int(item_id))
        for item_id, label, conf in zip(ids.tolist(), labels.tolist(), confidences.tolist(), strict=True)
    ]
    _executemany(
        f"UPDATE {_table(Item)} SET final_label_id = %s, final_confidence = %s, updated_at = %s "
        "WHERE id = %s AND status = 'finalized' AND final_source = 'consensus'",
        rows,
    )


def project_aggregate(*, project: Project) -> AgreementSnapshot:
    """Recompute the project's consensus, agreement figures and annotator quality (module docstring)."""
    started = time.perf_counter()
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        project = Project.objects.get(pk=project.pk)
        if project.multi_label:
            snapshot = _tags_aggregate(project, started)
            AggregationState.objects.filter(project_id=project.pk).update(finished_at=timezone.now())
            return snapshot
        data = _load(project)
        n_classes, n_items, n_workers = data.label_ids.size, data.item_ids.size, data.user_ids.size
        n_annotations = data.items.size
        per_item = np.bincount(data.items, minlength=n_items)
        overlap_items = int((per_item >= 2).sum())
        counts = {"n_annotations": int(n_annotations), "n_items": int((per_item > 0).sum())}
        counts["n_overlap_items"] = overlap_items
        counts["n_gold"] = int((data.gold >= 0).sum())

        annotators: list[dict] = []
        kappa_values: list[list[float | None]] = []
        project_kappa = fleiss = alpha = None
        changes = {"relabelled": 0, "finalized": 0, "to_review": 0, "extra_label": 0, "reprioritised": 0}
        iterations = 0
        priors = np.full(n_classes, 1.0 / max(n_classes, 1))
        method = "dawid_skene"
        if n_annotations and n_classes:
            args = (data.items, data.workers, data.labels)
            sizes = {"n_items": n_items, "n_workers": n_workers, "n_classes": n_classes}
            model = ds_model().fit(*args, **sizes, true_labels=data.gold)
            # the prior weights (tempered) are what the submit path multiplies the answer weights by
            posteriors, priors, iterations = model.posteriors_, model.prior_weights_, model.n_iter_
            matrix, overlap = agreement.pairwise_kappa(*args, **sizes, return_overlap=True)
            project_kappa = _project_kappa(matrix, overlap)
            fleiss = _finite(agreement.fleiss_kappa(*args, **sizes))
            alpha = _finite(agreement.krippendorff_alpha(*args, **sizes))
            kappa_values = [[_finite(v) for v in row] for row in matrix]
            policy = routing.review_policy(
                project_kappa,
                overlap_items,
                review_all_below=project.review_all_below_kappa,
                review_disagreements_below=project.review_disagreements_below_kappa,
            )
            quality = _annotator_quality(data, model)
            annotators = _write_quality(project, data, model, quality)
            _reroute(project, data, posteriors, per_item, policy, changes)
        else:
            policy = routing.review_policy(
                None,
                0,
                review_all_below=project.review_all_below_kappa,
                review_disagreements_below=project.review_disagreements_below_kappa,
            )
            AnnotatorQuality.objects.filter(project=project).delete()

        final_count = Item.objects.filter(project=project, status=ItemStatus.FINALIZED).count()
        snapshot = AgreementSnapshot.objects.create(
            project=project,
            computed_at=timezone.now(),
            method=method,
            project_kappa=project_kappa,
            fleiss_kappa=fleiss,
            krippendorff_alpha=alpha,
            kappa_matrix={"annotators": [a["username"] for a in annotators], "values": kappa_values},
            annotators=annotators,
            policy=str(policy),
            label_ids=[int(x) for x in data.label_ids],
            priors=[float(x) for x in priors],
            n_items_final=final_count,
            ds_iterations=int(iterations),
            changes=changes,
            duration_ms=0,
            **counts,
        )
        _snapshot_finish(project, snapshot, started)
    AggregationState.objects.filter(project_id=project.pk).update(finished_at=timezone.now())
    return snapshot


def _snapshot_finish(project: Project, snapshot: AgreementSnapshot, started: float) -> None:
    """Keep the newest ``SNAPSHOT_HISTORY`` snapshots and record the aggregation's duration."""
    old = list(
        AgreementSnapshot.objects.filter(project=project)
        .order_by("-computed_at", "-id")
        .values_list("id", flat=True)[SNAPSHOT_HISTORY:]
    )
    for chunk in iter_chunks(old, CHUNK):
        AgreementSnapshot.objects.filter(pk__in=chunk).delete()
    snapshot.duration_ms = int((time.perf_counter() - started) * 1000)
    AgreementSnapshot.objects.filter(pk=snapshot.pk).update(duration_ms=snapshot.duration_ms)


def _tags_aggregate(project: Project, started: float) -> AgreementSnapshot:
    """``project_aggregate`` of a multi-label project (``tag_aggregation``), in the caller's
    transaction and lock."""
    data = tag_aggregation.TagData(project)
    n_labels, n_annotations = data.label_ids.size, data.items.size
    per_item = np.bincount(data.items, minlength=data.item_ids.size)
    overlap_items = int((per_item >= 2).sum())
    changes = {"relabelled": 0, "finalized": 0, "to_review": 0, "extra_label": 0, "reprioritised": 0}
    annotators: list[dict] = []
    figures = {"project_kappa": None, "krippendorff_alpha": None, "matrix": [], "per_label": []}
    priors = np.zeros(n_labels)
    iterations = 0
    policy_kappa = None
    if n_annotations and n_labels:
        model = tag_aggregation.fit(data)
        figures = tag_aggregation.tag_figures(data)
        policy_kappa = figures["project_kappa"]
        priors, iterations = model.prior_log_odds_, model.n_iter_
    policy = routing.review_policy(
        policy_kappa,
        overlap_items,
        review_all_below=project.review_all_below_kappa,
        review_disagreements_below=project.review_disagreements_below_kappa,
    )
    if n_annotations and n_labels:
        annotators = tag_aggregation.write_quality(project, data, model)
        tag_aggregation.reroute(project, data, model.posteriors_, policy, changes)
    else:
        AnnotatorQuality.objects.filter(project=project).delete()
    snapshot = AgreementSnapshot.objects.create(
        project=project,
        computed_at=timezone.now(),
        method=tag_aggregation.METHOD,
        project_kappa=figures["project_kappa"],
        fleiss_kappa=None,
        krippendorff_alpha=figures["krippendorff_alpha"],
        kappa_matrix={
            "annotators": [a["username"] for a in annotators],
            "values": figures["matrix"],
            "per_label": figures["per_label"],
            "distance": "masi",
        },
        annotators=annotators,
        policy=str(policy),
        label_ids=[int(x) for x in data.label_ids],
        priors=[float(x) for x in priors],
        n_items_final=Item.objects.filter(project=project, status=ItemStatus.FINALIZED).count(),
        ds_iterations=int(iterations),
        changes=changes,
        duration_ms=0,
        n_annotations=int(n_annotations),
        n_items=int((per_item > 0).sum()),
        n_overlap_items=overlap_items,
        n_gold=int((data.gold >= 0).all(axis=1).sum()) if data.gold.size else 0,
    )
    _snapshot_finish(project, snapshot, started)
    return snapshot


def _annotator_quality(data: _Data, model: HierarchicalDawidSkene) -> dict[str, np.ndarray]:
    """Per annotator: answers, accuracy (prior-weighted, ``skills_``: Σ_j θ_j π_r^jj),
    accuracy on gold items and agreement with the others."""
    n_workers, n_classes = data.user_ids.size, data.label_ids.size
    answers = np.bincount(data.workers, minlength=n_workers).astype(np.float64)
    truth = data.gold[data.items]
    on_gold = truth >= 0
    gold_n = np.bincount(data.workers, weights=on_gold, minlength=n_workers)
    gold_hits = np.bincount(data.workers, weights=on_gold & (data.labels == truth), minlength=n_workers)
    # agreement rate: over every other annotation on the same items, the share with the same label
    key = data.items * n_classes + data.labels
    _, inverse, same = np.unique(key, return_inverse=True, return_counts=True)
    per_item = np.bincount(data.items, minlength=data.item_ids.size)
    agreeing = np.bincount(data.workers, weights=same[inverse.reshape(-1)] - 1.0, minlength=n_workers)
    others = np.bincount(data.workers, weights=per_item[data.items] - 1.0, minlength=n_workers)
    with np.errstate(divide="ignore", invalid="ignore"):
        gold_accuracy = np.where(gold_n > 0, gold_hits / gold_n, np.nan)
        agreement_rate = np.where(others > 0, agreeing / others, np.nan)
    return {
        "answers": answers,
        "ds_accuracy": np.asarray(model.skills_, dtype=np.float64),
        "gold_accuracy": gold_accuracy,
        "gold_n": gold_n,
        "agreement_rate": agreement_rate,
    }


def _write_quality(project: Project, data: _Data, model: HierarchicalDawidSkene, quality: dict) -> list[dict]:
    from django.contrib.auth import get_user_model

    names = dict(
        get_user_model()
        .objects.filter(pk__in=data.user_ids.tolist())
        .values_list("pk", get_user_model().USERNAME_FIELD)
    )
    # The calibrated answer weights exp(τ E[log π]) (``answer_weights_``): with the snapshot's prior
    # weights, ``routing.item_posterior`` of an item's answers is the posterior the fit gave it.
    confusion = np.asarray(model.answer_weights_, dtype="<f4")
    now = timezone.now()
    rows, out = [], []
    for r, user_id in enumerate(data.user_ids.tolist()):
        figures = {
            "n_annotations": int(quality["answers"][r]),
            "ds_accuracy": _finite(quality["ds_accuracy"][r]),
            "gold_accuracy": _finite(quality["gold_accuracy"][r]),
            "gold_n": int(quality["gold_n"][r]),
            "agreement_rate": _finite(quality["agreement_rate"][r]),
        }
        out.append({"username": names.get(user_id, deleted_user_name(user_id)), **figures})
        if user_id not in names:
            continue  # a deleted account: still one worker of the fit, no quality row to keep
        rows.append(
            AnnotatorQuality(
                project=project,
                user_id=user_id,
                n_classes=data.label_ids.size,
                confusion=confusion[r].tobytes(),
                updated_at=now,
                **figures,
            )
        )
    AnnotatorQuality.objects.filter(project=project).delete()
    AnnotatorQuality.objects.bulk_create(rows, batch_size=500)
    return out


_CHANGE_KEYS = {
    routing.Outcome.FINAL: "finalized",
    routing.Outcome.REVIEW: "to_review",
    routing.Outcome.EXTRA_LABEL: "extra_label",
}


def _reroute(project: Project, data: _Data, posteriors: np.ndarray, per_item: np.ndarray, policy, changes) -> None:
    """Apply the routing rules with the fitted posteriors (see the module docstring)."""
    n_classes = data.label_ids.size
    best = np.argmax(posteriors, axis=1)
    confidence = posteriors[np.arange(best.size), best]
    value = routing.label_value(posteriors)
    key = data.items * n_classes + data.labels
    unique_keys, same = np.unique(key, return_counts=True)
    top_votes = np.zeros(data.item_ids.size, dtype=np.int64)
    np.maximum.at(top_votes, unique_keys // n_classes, same)
    is_disputed = (per_item > 0) & (2 * top_votes <= per_item)
    review_all = (policy is routing.Policy.ALL) & (per_item >= 2)
    blocked = (policy is routing.Policy.DISAGREEMENTS) & is_disputed
    passes = ~review_all & (confidence >= project.min_consensus_confidence) & ~blocked

    def index_of(ids) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        pos = np.clip(np.searchsorted(data.item_ids, ids), 0, max(data.item_ids.size - 1, 0))
        found = data.item_ids[pos] == ids if data.item_ids.size else np.zeros(ids.size, dtype=bool)
        return pos, found

    # 1. Queue entries: items still missing labels that nobody is left to give are routed now
    #    (``consensus.entry_route_if_stuck``: review ``no_annotator``, or final without a reviewer);
    #    extra-label entries are re-placed; complete entries without a live lease are routed as on
    #    the submit path (rare: the submit path routes them first).
    entries = list(
        QueueEntry.objects.filter(project=project)
        .order_by("id")
        .values_list("id", "item_id", "labels_needed", "labels_taken", "reason", "priority")
    )
    # Who is left to label or review the items that have labels (``selectors.labelling_states``):
    # an item still missing labels that nobody can give is routed now (no item waits for ever).
    started = [item_id for _, item_id, _, _, _, _ in entries]
    if started:
        pos, found = index_of(started)
        started = [
            item_id
            for item_id, p, ok in zip(started, pos.tolist(), found.tolist(), strict=True)
            if ok and per_item[p] > 0
        ]
    states = labelling_states(project, started)

    def fitted_posterior(item_id: int) -> dict[int, float] | None:
        pos, found = index_of([item_id])
        if not found[0]:
            return None
        row = posteriors[int(pos[0])]
        return {int(data.label_ids[j]): float(row[j]) for j in np.flatnonzero(row > 0)}

    routed: set[int] = set()
    for _, item_id, needed, taken, _, _ in entries:
        state = states.get(item_id)
        if taken < needed and state is not None and not state.can_extend and not state.leased:
            decision = entry_route_if_stuck(
                project=project, item_id=item_id, posterior=fitted_posterior(item_id), policy=policy, state=state
            )
            if decision is not None:
                routed.add(item_id)
                changes[_CHANGE_KEYS[decision.outcome]] += 1
    entries = [entry for entry in entries if entry[1] not in routed]
    new_priorities = [
        priority
        for _, _, needed, taken, reason, priority in entries
        if reason != QueueReason.EXTRA_LABEL and taken < needed
    ]
    extra = [
        (entry_id, item_id, priority)
        for entry_id, item_id, _, _, reason, priority in entries
        if reason == QueueReason.EXTRA_LABEL
    ]
    if extra:
        pos, found = index_of([item_id for _, item_id, _ in extra])
        values = np.where(found, value[pos], 1.0)
        placed = routing.priorities_on_queue_scale(values, new_priorities)
        rows = [
            (float(p), entry_id)
            for (entry_id, _, old), p in zip(extra, placed, strict=True)
            if not np.isclose(p, old, rtol=0, atol=1e-9)
        ]
        _executemany(f"UPDATE {_table(QueueEntry)} SET priority = %s WHERE id = %s", rows)
        changes["reprioritised"] = len(rows)
    complete = [item_id for _, item_id, needed, taken, _, _ in entries if taken >= needed]
    if complete:
        pos, found = index_of(complete)
        for item_id, p, ok in zip(complete, pos.tolist(), found.tolist(), strict=True):
            fitted = None
            if ok:
                fitted = {int(data.label_ids[j]): float(posteriors[p, j]) for j in np.flatnonzero(posteriors[p] > 0)}
            decision = entry_route_if_complete(
                project=project, item_id=item_id, posterior=fitted, policy=policy, state=states.get(item_id)
            )
            if decision is not None:
                changes[_CHANGE_KEYS[decision.outcome]] += 1

    # 2. Consensus items: the Dawid-Skene label and confidence, or review when they no longer pass.
    consensus = np.array(
        list(
            Item.objects.filter(project=project, status=ItemStatus.FINALIZED, final_source=LabelSource.CONSENSUS)
            .order_by("id")
            .values_list("id", "final_label_id", "final_confidence")
        ),
        dtype=np.float64,
    ).reshape(-1, 3)
    if consensus.size:
        ids = consensus[:, 0].astype(np.int64)
        pos, found = index_of(ids)
        ids, pos = ids[found], pos[found]
        old_label = consensus[found, 1].astype(np.int64)
        old_conf = np.nan_to_num(consensus[found, 2], nan=-1.0)
        new_label = data.label_ids[best[pos]]
        new_conf = confidence[pos]
        ok = passes[pos] & (per_item[pos] > 0)
        changed = ok & ((new_label != old_label) | (np.abs(new_conf - old_conf) >= CONFIDENCE_TOLERANCE))
        now = timezone.now()
        _consensus_update(ids[changed], new_label[changed], new_conf[changed], now)
        changes["relabelled"] = int((changed & (new_label != old_label)).sum())
        failing = ~ok & (per_item[pos] > 0)
        if failing.any():
            reasons = np.where(
                review_all[pos],
                routing.ReviewReason.POLICY_ALL.value,
                np.where(
                    per_item[pos] > project.labels_per_item,
                    routing.ReviewReason.MAX_LABELS.value,
                    np.where(
                        is_disputed[pos],
                        routing.ReviewReason.DISAGREEMENT.value,
                        routing.ReviewReason.LOW_CONFIDENCE.value,
                    ),
                ),
            )
            targets = list(zip(ids[failing].tolist(), pos[failing].tolist(), reasons[failing].tolist(), strict=True))
            changes["to_review"] += _consensus_to_review(project, data, targets, posteriors, value)

    # 3. Open review tasks: fresh posteriors and priorities, and the reason the item is in review
    #    now (a chip never outlives the situation it describes).
    tasks = list(
        ReviewTask.objects.filter(project=project, status=ReviewStatus.OPEN)
        .order_by("id")
        .values_list("id", "item_id", "priority", "reason", "posterior")
    )
    if tasks:
        pos, found = index_of([item_id for _, item_id, _, _, _ in tasks])
        updates, reasons_changed = [], 0
        for (task_id, _, old, old_reason, old_posterior), p, ok in zip(
            tasks, pos.tolist(), found.tolist(), strict=True
        ):
            if not ok or per_item[p] == 0:
                continue
            reason = _current_reason(
                old_reason,
                policy=policy,
                n_labels=int(per_item[p]),
                is_disputed=bool(is_disputed[p]),
                confidence=float(confidence[p]),
                project=project,
            )
            old_top = max((float(v) for v in (old_posterior or {}).values()), default=-1.0)
            moved = abs(float(value[p]) - old) >= CONFIDENCE_TOLERANCE
            moved = moved or abs(float(confidence[p]) - old_top) >= CONFIDENCE_TOLERANCE
            if moved or reason != old_reason:
                reasons_changed += reason != old_reason
                updates.append(
                    ReviewTask(
                        pk=task_id,
                        priority=float(value[p]),
                        posterior=_posterior_json(posteriors[p], data.label_ids),
                        reason=reason,
                    )
                )
        ReviewTask.objects.bulk_update(updates, ["priority", "posterior", "reason"], batch_size=500)
        changes["review_reasons"] = reasons_changed


#: Reasons the routing rule gives and re-derives; ``no_annotator`` (who was left when the item
#: was routed) and ``label_error`` (the model's flag) are facts of their moment and stay.
_REDERIVED = frozenset(
    {
        routing.ReviewReason.DISAGREEMENT,
        routing.ReviewReason.LOW_CONFIDENCE,
        routing.ReviewReason.MAX_LABELS,
        routing.ReviewReason.POLICY_ALL,
    }
)


def _current_reason(old: str, *, policy, n_labels: int, is_disputed: bool, confidence: float, project: Project) -> str:
    """Why an item in review is there under the current posterior, policy and thresholds
    (``routing.route``'s reasons, at the item's label count). An item that would now pass keeps its
    reason (a reviewer was asked; the chip's words say the figures have moved,
    ``routing.review_reason_text``)."""
    if old not in _REDERIVED:
        return old
    if policy is routing.Policy.ALL and n_labels >= 2:
        return routing.ReviewReason.POLICY_ALL.value
    blocked = policy is routing.Policy.DISAGREEMENTS and is_disputed
    if confidence >= project.min_consensus_confidence and not blocked:
        return old
    if n_labels > project.labels_per_item:
        return routing.ReviewReason.MAX_LABELS.value
    if is_disputed:
        return routing.ReviewReason.DISAGREEMENT.value
    return routing.ReviewReason.LOW_CONFIDENCE.value


def _consensus_to_review(project: Project, data: _Data, targets, posteriors: np.ndarray, value: np.ndarray) -> int:
    """Move consensus items that no longer pass to review (final label cleared)."""
    moved = 0
    now = timezone.now()
    for chunk in iter_chunks(targets, CHUNK):
        ids = [item_id for item_id, _, _ in chunk]
        changed = set(
            Item.objects.filter(
                pk__in=ids, status=ItemStatus.FINALIZED, final_source=LabelSource.CONSENSUS
            ).values_list("id", flat=True)
        )
        if not changed:
            continue
        Item.objects.filter(pk__in=changed).update(
            status=ItemStatus.IN_REVIEW,
            final_label=None,
            final_confidence=None,
            final_source="",
            finalized_at=None,
            updated_at=now,
        )
        _review_tasks_insert(
            [
                (
                    project.pk,
                    item_id,
                    reason,
                    float(value[p]),
                    json.dumps(_posterior_json(posteriors[p], data.label_ids)),
                    now,
                )
                for item_id, p, reason in chunk
                if item_id in changed
            ]
        )
        moved += len(changed)
    return moved


def _review_tasks_insert(rows: list[tuple]) -> None:
    """Open review tasks ``(project_id, item_id, reason, priority, posterior_json, created_at)`` in one
    ``executemany`` (the ORM's bulk_create costs ~0.5 ms a row); an item that already has an open
    task keeps it (``ON CONFLICT DO NOTHING`` on the one-open-task-per-item index)."""
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    _executemany(
        f"INSERT INTO {_table(ReviewTask)} (project_id, item_id, reason, status, priority, posterior, created_at, note) "
        f"VALUES (%s, %s, %s, 'open', %s, %s{cast}, %s, '') ON CONFLICT DO NOTHING",
        rows,
    )
