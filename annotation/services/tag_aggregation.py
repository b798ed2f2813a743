"""Aggregation of a multi-label project: binary relevance per tag, agreement on tag sets, re-routing.

``aggregation.project_aggregate`` hands a multi-label project here, inside its transaction and its
lock on the project row. The steps mirror the single-label ones:

1. one query loads the annotations' tag sets as a sparse (answers x L) matrix; items whose set was
   decided by review or pushed as gold become the known truth (``true_Y``);
2. ``tagsets.BinaryRelevanceDawidSkene`` gives every item a posterior per tag, each annotator a
   sensitivity and specificity per tag (shrunk to their own rate and the tag's where the answers
   are few) and each tag its prevalence. Agreement: the pairwise chance-corrected agreement on tag
   sets (MASI distance) per pair of annotators, the project kappa (their mean over pairs sharing
   ``agreement.MIN_OVERLAP`` items, weighted by the shared items, as for single-label projects),
   Krippendorff's alpha with the MASI distance, and Cohen's kappa per tag
   (``kappa_matrix["per_label"]``, in ``label_ids`` order);
3. re-routing with the fitted posteriors (``consensus._tags_consensus_apply``): complete queue entries
   and stuck ones are routed; consensus items take the fitted tag set and per-tag posteriors, or go
   to review (with their disputed tags) when a tag is no longer confident; open review tasks get
   fresh posteriors and disputed tags;
4. ``AnnotatorQuality`` per annotator (``confusion``: (L, 2) float32, the calibrated log-odds a
   left-out / chosen tag adds; ``AgreementSnapshot.priors``: the tags' prior log-odds, so the submit
   path's posterior of an item, ``consensus.item_tag_posterior``, is the fitted one). ``ds_accuracy``
   is the prevalence-weighted per-tag accuracy, mean over tags of ρ·s + (1 − ρ)·c; ``gold_accuracy``
   the share of gold items answered with exactly the gold set; ``agreement_rate`` the share of the
   other annotations on the same items with the same set.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from django.db.models import Q
from django.utils import timezone

from .. import agreement, routing, tagsets
from ..models import (
    ANNOTATOR_KEY,
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
    ReviewStatus,
    ReviewTask,
    deleted_user_name,
)
from ..selectors import labelling_states
from .consensus import entry_route_if_complete, entry_route_if_stuck, posterior_json

CONFIDENCE_TOLERANCE = 1e-3
METHOD = "binary_relevance_ds"


class TagData:
    """A multi-label project's answers in index form."""

    def __init__(self, project: Project):
        self.label_ids = np.array(
            LabelClass.objects.filter(project=project).order_by("order", "id").values_list("id", flat=True),
            dtype=np.int64,
        )
        column = {int(label_id): j for j, label_id in enumerate(self.label_ids)}
        answers = Annotation.objects.filter(project=project)
        if project.paused_answers == PausedAnswers.EXCLUDE:
            paused = Membership.objects.filter(project=project, paused_at__isnull=False).values("user_id")
            answers = answers.exclude(user_id__in=paused)
        rows = list(answers.order_by("id").values_list("item_id", ANNOTATOR_KEY, "tags"))
        gold_rows = list(
            Item.objects.filter(
                project=project, final_source__in=[LabelSource.REVIEW, LabelSource.GOLD], final_tags__isnull=False
            )
            .order_by()
            .values_list("id", "final_tags")
        )
        item_col = np.array([row[0] for row in rows], dtype=np.int64)
        user_col = np.array([row[1] for row in rows], dtype=np.int64)
        gold_ids = np.array([row[0] for row in gold_rows], dtype=np.int64)
        self.item_ids = np.unique(np.concatenate([item_col, gold_ids]))
        self.user_ids, workers = np.unique(user_col, return_inverse=True)
        self.items = np.searchsorted(self.item_ids, item_col)
        self.workers = workers.reshape(-1)
        L = self.label_ids.size
        indptr, indices = [0], []
        for _, _, tags in rows:
            indices.extend(column[t] for t in (tags or ()) if t in column)
            indptr.append(len(indices))
        self.Y = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.int8), np.array(indices, dtype=np.int64), np.array(indptr)),
            shape=(len(rows), L),
        )
        self.gold = np.full((self.item_ids.size, L), -1, dtype=np.int64)
        for item_id, tags in gold_rows:
            i = int(np.searchsorted(self.item_ids, item_id))
            self.gold[i] = 0
            for t in tags or ():
                if t in column:
                    self.gold[i, column[t]] = 1

    def index_of(self, ids) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not self.item_ids.size:
            return np.zeros(ids.size, dtype=np.int64), np.zeros(ids.size, dtype=bool)
        pos = np.clip(np.searchsorted(self.item_ids, ids), 0, self.item_ids.size - 1)
        return pos, self.item_ids[pos] == ids

    def posterior_dict(self, row: np.ndarray) -> dict[int, float]:
        return {int(self.label_ids[j]): float(row[j]) for j in range(row.size)}


def tag_figures(data: TagData) -> dict:
    """Agreement figures on the project's tag sets (module docstring)."""
    sizes = {
        "n_items": data.item_ids.size,
        "n_workers": data.user_ids.size,
        "n_labels": data.label_ids.size,
    }
    args = (data.items, data.workers, data.Y)
    matrix, overlap = tagsets.pairwise_set_agreement(*args, **sizes, distance="masi", return_overlap=True)
    upper = np.triu(np.ones_like(overlap, dtype=bool), k=1)
    use = upper & (overlap >= agreement.MIN_OVERLAP) & np.isfinite(matrix)
    kappa = float(np.average(matrix[use], weights=overlap[use])) if use.any() else None
    alpha = float(tagsets.krippendorff_alpha_sets(*args, **sizes, distance="masi"))
    per_label = tagsets.per_label_kappa(*args, **sizes)
    return {
        "project_kappa": kappa,
        "krippendorff_alpha": alpha if np.isfinite(alpha) else None,
        "matrix": [[float(v) if np.isfinite(v) else None for v in row] for row in matrix],
        "per_label": [float(v) if np.isfinite(v) else None for v in per_label],
    }


def fit(data: TagData) -> tagsets.BinaryRelevanceDawidSkene:
    return tagsets.BinaryRelevanceDawidSkene().fit(
        data.items,
        data.workers,
        data.Y,
        n_items=data.item_ids.size,
        n_workers=data.user_ids.size,
        n_labels=data.label_ids.size,
        true_Y=data.gold,
    )


def write_quality(project: Project, data: TagData, model) -> list[dict]:
    """``AnnotatorQuality`` rows and the snapshot's annotator figures (module docstring)."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    names = dict(User.objects.filter(pk__in=data.user_ids.tolist()).values_list("pk", User.USERNAME_FIELD))
    n_workers, L = data.user_ids.size, data.label_ids.size
    Y = data.Y.toarray().astype(np.int64) if data.Y.shape[0] else np.zeros((0, L), dtype=np.int64)
    answers = np.bincount(data.workers, minlength=n_workers).astype(np.float64)
    rho = np.asarray(model.prevalence_, dtype=np.float64)
    accuracy = (rho * model.tag_sensitivity_ + (1 - rho) * model.tag_specificity_).mean(axis=1)
    truth = data.gold[data.items] if data.items.size else np.zeros((0, L), dtype=np.int64)
    on_gold = (truth >= 0).all(axis=1) if truth.size else np.zeros(0, dtype=bool)
    exact = on_gold & (Y == truth).all(axis=1) if truth.size else np.zeros(0, dtype=bool)
    gold_n = np.bincount(data.workers, weights=on_gold, minlength=n_workers)
    gold_hits = np.bincount(data.workers, weights=exact, minlength=n_workers)
    # agreement rate: the share of the other annotations on the same items with the same set
    keys = np.array([hash((int(i), Y[n].tobytes())) for n, i in enumerate(data.items)], dtype=np.int64)
    _, inverse, same = np.unique(keys, return_inverse=True, return_counts=True)
    per_item = np.bincount(data.items, minlength=data.item_ids.size)
    agreeing = np.bincount(data.workers, weights=same[inverse.reshape(-1)] - 1.0, minlength=n_workers)
    others = np.bincount(data.workers, weights=per_item[data.items] - 1.0, minlength=n_workers)
    log_odds = np.stack([model.absent_log_odds_, model.present_log_odds_], axis=-1).astype("<f4")  # (W, L, 2)
    now = timezone.now()
    rows, out = [], []
    for r, user_id in enumerate(data.user_ids.tolist()):
        figures = {
            "n_annotations": int(answers[r]),
            "ds_accuracy": float(accuracy[r]),
            "gold_accuracy": float(gold_hits[r] / gold_n[r]) if gold_n[r] else None,
            "gold_n": int(gold_n[r]),
            "agreement_rate": float(agreeing[r] / others[r]) if others[r] else None,
        }
        out.append({"username": names.get(user_id, deleted_user_name(user_id)), **figures})
        if user_id in names:
            rows.append(
                AnnotatorQuality(
                    project=project,
                    user_id=user_id,
                    n_classes=L,
                    confusion=log_odds[r].tobytes(),
                    updated_at=now,
                    **figures,
                )
            )
    AnnotatorQuality.objects.filter(project=project).delete()
    AnnotatorQuality.objects.bulk_create(rows, batch_size=500)
    return out


def reroute(project: Project, data: TagData, posteriors: np.ndarray, policy, changes: dict) -> None:
    """Re-apply the routing rules with the fitted per-tag posteriors (module docstring, step 3)."""
    per_item = np.bincount(data.items, minlength=data.item_ids.size)
    keys = {routing.Outcome.FINAL: "finalized", routing.Outcome.REVIEW: "to_review"}
    keys[routing.Outcome.EXTRA_LABEL] = "extra_label"

    def fitted(item_id: int) -> dict[int, float] | None:
        pos, found = data.index_of([item_id])
        return data.posterior_dict(posteriors[int(pos[0])]) if found[0] else None

    # 1. Queue entries with labels: stuck ones (nobody left to give the rest) and complete ones.
    entries = list(
        QueueEntry.objects.filter(project=project, labels_taken__gt=0)
        .order_by("id")
        .values_list("item_id", "labels_needed", "labels_taken")
    )
    states = labelling_states(project, [item_id for item_id, _, _ in entries])
    for item_id, needed, taken in entries:
        state = states.get(item_id)
        if taken < needed:
            if state is None or state.can_extend or state.leased:
                continue
            decision = entry_route_if_stuck(
                project=project, item_id=item_id, posterior=fitted(item_id), policy=policy, state=state
            )
        else:
            decision = entry_route_if_complete(
                project=project, item_id=item_id, posterior=fitted(item_id), policy=policy, state=state
            )
        if decision is not None:
            changes[keys[decision.outcome]] += 1

    # 2. Consensus items: the fitted tag set and posteriors, or review when a tag is no longer sure.
    consensus = list(
        Item.objects.filter(project=project, status=ItemStatus.FINALIZED, final_source=LabelSource.CONSENSUS)
        .order_by("id")
        .values_list("id", "final_tags", "final_confidence")
    )
    now = timezone.now()
    updates, to_review = [], []
    for item_id, old_tags, old_conf in consensus:
        pos, found = data.index_of([item_id])
        if not found[0] or per_item[pos[0]] == 0:
            continue
        row = posteriors[int(pos[0])]
        answers = data.Y[data.items == pos[0]].toarray()
        result = routing.route_tags(
            row,
            answers,
            labels_needed=max(int(per_item[pos[0]]), 1),
            labels_per_item=project.labels_per_item,
            max_labels=max(int(per_item[pos[0]]), 1),  # a final item asks for no more labels
            min_confidence=project.min_consensus_confidence,
            policy=policy,
            can_extend=False,
            has_reviewer=True,
            allow_empty=project.allow_empty_tags,
        )
        if result.decision.outcome is routing.Outcome.FINAL:
            tags = sorted(int(data.label_ids[j]) for j in result.tags)
            if tags != sorted(old_tags or []) or abs(result.confidence - (old_conf or 0.0)) >= CONFIDENCE_TOLERANCE:
                changes["relabelled"] += tags != sorted(old_tags or [])
                updates.append(
                    Item(
                        pk=item_id,
                        final_tags=tags,
                        tag_posteriors=posterior_json(data.posterior_dict(row)),
                        final_confidence=result.confidence,
                        updated_at=now,
                    )
                )
        else:
            to_review.append((item_id, row, result))
    Item.objects.bulk_update(
        updates, ["final_tags", "tag_posteriors", "final_confidence", "updated_at"], batch_size=500
    )
    for item_id, row, result in to_review:
        moved = Item.objects.filter(pk=item_id, status=ItemStatus.FINALIZED, final_source=LabelSource.CONSENSUS).update(
            status=ItemStatus.IN_REVIEW,
            final_tags=None,
            final_confidence=None,
            final_source="",
            finalized_at=None,
            tag_posteriors=posterior_json(data.posterior_dict(row)),
            updated_at=now,
        )
        if moved:
            ReviewTask.objects.get_or_create(
                item_id=item_id,
                status=ReviewStatus.OPEN,
                defaults={
                    "project": project,
                    "reason": (result.decision.reason or routing.ReviewReason.LOW_CONFIDENCE).value,
                    "priority": result.decision.value,
                    "posterior": posterior_json(data.posterior_dict(row)),
                    "disputed_tags": [int(data.label_ids[j]) for j in result.disputed],
                },
            )
            changes["to_review"] += 1

    # 3. Open review tasks: fresh posteriors and disputed tags.
    tasks = list(ReviewTask.objects.filter(project=project, status=ReviewStatus.OPEN).values_list("id", "item_id"))
    refreshed = []
    for task_id, item_id in tasks:
        pos, found = data.index_of([item_id])
        if not found[0] or per_item[pos[0]] == 0:
            continue
        row = posteriors[int(pos[0])]
        confidence = np.maximum(row, 1 - row)
        order = np.argsort(confidence, kind="stable")
        disputed = [int(data.label_ids[j]) for j in order if confidence[j] < project.min_consensus_confidence]
        refreshed.append(
            ReviewTask(
                pk=task_id,
                posterior=posterior_json(data.posterior_dict(row)),
                disputed_tags=disputed,
                priority=float(1.0 - 2.0 * (confidence.min() - 0.5)) if row.size else 0.0,
            )
        )
    ReviewTask.objects.bulk_update(refreshed, ["posterior", "disputed_tags", "priority"], batch_size=500)


def decided_count(project: Project) -> int:
    return Item.objects.filter(Q(final_tags__isnull=False), project=project, status=ItemStatus.FINALIZED).count()
