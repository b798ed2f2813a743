"""Reads of the project dashboard: progress, labels, the learning curve and its stopping signal,
agreement, annotators, the queue, running jobs, model versions and drift. A fixed number of grouped
queries whatever the size of the project (every count is one ``GROUP BY``)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from acquisition.models import ModelVersion, ScoringRun, TrainingJob
from annotation.models import (
    DECIDED,
    AgreementSnapshot,
    Annotation,
    EmbeddingState,
    IngestBatch,
    Item,
    ItemStatus,
    LabelClass,
    Membership,
    Project,
    QueueEntry,
)
from annotation.services.quality import honeypot_scores


def progress(project: Project) -> dict:
    by_status = dict(project.items.order_by().values_list("status").annotate(n=Count("id")))
    total = sum(by_status.values())
    labelled = Annotation.objects.filter(project=project).values("item_id").distinct().count()
    finalized = by_status.get(ItemStatus.FINALIZED, 0)
    return {
        "total": total,
        "labelled": labelled,
        "finalized": finalized,
        "in_review": by_status.get(ItemStatus.IN_REVIEW, 0),
        "finalized_percent": round(100 * finalized / total, 1) if total else 0.0,
        "by_source": dict(
            Item.objects.filter(DECIDED, project=project).order_by().values_list("final_source").annotate(n=Count("id"))
        ),
    }


def label_distribution(project: Project) -> list[tuple[str, int]]:
    """Final labels per class, in the project's label order (classes without any included); for a
    multi-label project, the decided items carrying each tag."""
    labels = project.labels.order_by("order", "pk").values_list("pk", "name")
    if project.multi_label:
        tagged: Counter = Counter()
        for tags in (
            Item.objects.filter(project=project, final_tags__isnull=False)
            .values_list("final_tags", flat=True)
            .iterator(chunk_size=5000)
        ):
            tagged.update(tags)
        return [(name, tagged.get(pk, 0)) for pk, name in labels]
    counts = dict(
        Item.objects.filter(project=project, final_label__isnull=False)
        .order_by()
        .values_list("final_label_id")
        .annotate(n=Count("id"))
    )
    return [(name, counts.get(pk, 0)) for pk, name in labels]


def model_history(project: Project) -> list[dict]:
    """Every trained model version, oldest first, in one query: labels, status, held-out accuracy
    (``None`` without a held-out set), macro-F1 and the held-out size, and the stability check's
    record (``metrics["stability"]``) that the stopping signal reads (``acquisition.curves.stopping_rule``)."""
    rows = []
    for version in (
        ModelVersion.objects.filter(project=project)
        .exclude(status__in=[ModelVersion.Status.FAILED, ModelVersion.Status.TRAINING])
        .order_by("version")
        .only("version", "status", "n_labels", "n_eval", "metrics")
    ):
        metrics = version.metrics or {}
        held_out = metrics.get("eval") or {}
        stability = metrics.get("stability")
        rows.append(
            {
                "version": version.version,
                "status": version.status,
                "labels": version.n_labels,
                "accuracy": held_out.get("accuracy"),
                "macro_f1": held_out.get("macro_f1"),
                "micro_f1": held_out.get("micro_f1"),  # multi-label versions only
                "n_eval": version.n_eval,
                "stability": stability if isinstance(stability, dict) else None,
            }
        )
    return rows


def learning_curve(history: list[dict]) -> list[dict]:
    """The learning curve: one point per version of ``model_history`` that has a held-out accuracy."""
    return [
        {key: row.get(key) for key in ("labels", "accuracy", "macro_f1", "micro_f1", "version", "status")}
        for row in history
        if row["accuracy"] is not None
    ]


def per_tag_kappa(project: Project, snapshot: AgreementSnapshot | None) -> list[tuple[str, float | None]]:
    """Multi-label projects: Cohen's kappa of each tag (as a present / absent question) from the latest
    aggregation, in the project's label order; empty for single-label projects."""
    if snapshot is None or not project.multi_label:
        return []
    values = (snapshot.kappa_matrix or {}).get("per_label") or []
    names = dict(LabelClass.objects.filter(project=project).values_list("pk", "name"))
    return [
        (names.get(label_id, str(label_id)), value) for label_id, value in zip(snapshot.label_ids, values, strict=False)
    ]


def agreement(project: Project) -> AgreementSnapshot | None:
    return AgreementSnapshot.objects.filter(project=project).order_by("-computed_at", "-id").first()


def annotator_rows(project: Project, snapshot: AgreementSnapshot | None) -> list[dict]:
    """The latest aggregation's figures per annotator, with throughput (last hour, last 24 hours),
    the mean seconds spent per item, honeypot accuracy with its 95 % Wilson interval (answers since
    the last reinstatement, the ones quality control counts) and whether they are paused."""
    now = timezone.now()
    activity = {
        row["user__username"]: row
        for row in Annotation.objects.filter(project=project)
        .order_by()
        .values("user__username")
        .annotate(
            total=Count("id"),
            last_hour=Count("id", filter=Q(created_at__gte=now - timedelta(hours=1))),
            last_day=Count("id", filter=Q(created_at__gte=now - timedelta(days=1))),
            time_ms=Sum("time_spent_ms"),
        )
    }
    quality = {row["username"]: row for row in (snapshot.annotators if snapshot else [])}
    members = {
        m.user.username: m
        for m in Membership.objects.filter(project=project)
        .select_related("user")
        .only("user__username", "user_id", "paused_at", "pause_reason", "reinstated_at", "role")
    }
    names_by_id = {m.user_id: name for name, m in members.items()}
    honeypots = {
        names_by_id[user_id]: score for user_id, score in honeypot_scores(project).items() if user_id in names_by_id
    }
    paused = {name for name, m in members.items() if m.paused_at is not None}
    rows = []
    for username in sorted(set(activity) | set(quality) | paused):
        act, q = activity.get(username, {}), quality.get(username, {})
        total = act.get("total", 0)
        membership = members.get(username)
        honeypot = honeypots.get(username)
        interval = honeypot.interval if honeypot else None
        rows.append(
            {
                "username": username,
                "total": total,
                "last_hour": act.get("last_hour", 0),
                "last_day": act.get("last_day", 0),
                "seconds_per_item": (act.get("time_ms") or 0) / 1000 / total if total else None,
                "ds_accuracy": q.get("ds_accuracy"),
                "gold_accuracy": q.get("gold_accuracy"),
                "gold_n": q.get("gold_n", 0),
                "agreement_rate": q.get("agreement_rate"),
                "honeypot_n": honeypot.answered if honeypot else 0,
                "honeypot_correct": honeypot.correct if honeypot else 0,
                "honeypot_accuracy": honeypot.accuracy if honeypot else None,
                "honeypot_low": interval[0] if interval else None,
                "honeypot_high": interval[1] if interval else None,
                "paused": membership is not None and membership.paused_at is not None,
                "paused_at": membership.paused_at if membership else None,
                "pause_reason": membership.pause_reason if membership else "",
            }
        )
    return rows


def queue_summary(project: Project) -> dict:
    entries = QueueEntry.objects.filter(project=project)
    totals = entries.aggregate(entries=Count("id"), open=Count("id", filter=Q(labels_taken__lt=F("labels_needed"))))
    by_reason = dict(entries.order_by().values_list("reason").annotate(n=Count("id")))
    return {"strategy": project.acquisition_strategy, **totals, "by_reason": by_reason}


def latest_drift(project: Project) -> IngestBatch | None:
    return (
        IngestBatch.objects.filter(project=project, drift__status="done")
        .order_by("-id")
        .only("id", "drift", "created_at")
        .first()
    )


def active_jobs(project: Project) -> list[dict]:
    """Ingests, embedding, scoring runs and training jobs in progress, each with a progress in 0..1
    (what the dashboard's bars show and ``/api/v1/projects/{id}/jobs`` returns)."""
    jobs = []
    for batch in IngestBatch.objects.filter(project=project, status=IngestBatch.Status.RECEIVED).order_by("id"):
        jobs.append(
            {"kind": "ingest", "id": batch.pk, "label": f"ingest #{batch.pk}: {batch.records} records", "progress": 0.0}
        )
    waiting = Item.objects.filter(project=project, embedding_state__in=[EmbeddingState.PENDING, EmbeddingState.QUEUED])
    n_waiting = waiting.count()
    if n_waiting:
        total = Item.objects.filter(project=project).exclude(embedding_state=EmbeddingState.FAILED).count()
        jobs.append(
            {
                "kind": "embedding",
                "id": None,
                "label": f"embedding: {n_waiting:,} items waiting",
                "progress": 1 - n_waiting / total if total else 0.0,
            }
        )
    for run in ScoringRun.objects.filter(project=project, status__in=ScoringRun.ACTIVE).order_by("id"):
        jobs.append(
            {
                "kind": "scoring",
                "id": run.pk,
                "label": f"scoring run #{run.pk} ({run.strategy}, {run.trigger}): {run.chunks_done}/{run.n_chunks or 1} chunks",
                "progress": run.progress,
            }
        )
    for job in TrainingJob.objects.filter(project=project, status__in=TrainingJob.ACTIVE).select_related("scoring_run"):
        jobs.append(
            {
                "kind": "training",
                "id": job.pk,
                "label": f"training job #{job.pk} ({job.trigger}): {job.get_stage_display().lower()}",
                "progress": job.progress,
            }
        )
    return jobs


def label_names(project: Project) -> list[str]:
    return list(LabelClass.objects.filter(project=project).order_by("order", "pk").values_list("name", flat=True))
