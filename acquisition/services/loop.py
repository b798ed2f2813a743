"""The closed loop: enough new labels → train → evaluate → gate → re-score → refill, as one job.

``retrain_if_due`` runs after every aggregation (``annotation.tasks.project_aggregate_task``, which
every annotation, change, undo and review decision asks for): when at least ``retrain_after`` final
labels were finalised since the newest model version's label snapshot, it requests a
``TrainingJob``. A partial unique constraint keeps one pending or running job per project, so a
burst of labels asks once (the debounce); a job left active longer than
``QUORUM_TRAINING_STALE_SECONDS`` is treated as lost and superseded. Admins can also ask for one
("train now", page and API).

``training_job_execute`` (a Celery task: heads jobs on the ``default`` queue, fine-tune jobs on
``gpu``) walks the stages, recording each one's seconds in ``timings``:

``train`` (``training.model_fit``: snapshot, split, fit, evaluate) → ``promote``
(``training.model_gate``) → ``score``: a promoted model re-scores the pool with a new scoring run
executed in the same task (chunked pools fan out to a chord and the job links the run), whose
``queue_replace`` swaps the queue atomically. A rejected version leaves the queue alone.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.models import Item, Project, TrainingMode
from quorum.errors import NotFound, ServiceError

from ..models import ModelVersion, ScoringRun, TrainingJob
from . import scoring, training
from .jobs import active_job_create, job_fail

logger = logging.getLogger(__name__)


def new_labels_since_model(project: Project) -> int:
    """Final labels finalised after the newest (non-failed) model version's label snapshot."""
    latest = (
        ModelVersion.objects.filter(project=project, labels_as_of__isnull=False)
        .exclude(status=ModelVersion.Status.FAILED)
        .order_by("-version")
        .values_list("labels_as_of", flat=True)
        .first()
    )
    finals = Item.objects.filter(project=project, final_label__isnull=False)
    if latest is not None:
        finals = finals.filter(finalized_at__gt=latest)
    return finals.count()


def retrain_if_due(*, project: Project) -> TrainingJob | None:
    """Request a training job when ``retrain_after`` new final labels have landed (module docstring)."""
    if TrainingJob.objects.filter(project=project, status__in=TrainingJob.ACTIVE).exists():
        return None
    new = new_labels_since_model(project)
    if new < project.retrain_after:
        return None
    return training_job_request(project=project, trigger="labels", n_new_labels=new)


def training_job_request(
    *, project: Project, trigger: str, user=None, n_new_labels: int | None = None
) -> TrainingJob | None:
    """A pending job, enqueued when the surrounding transaction commits; ``None`` while another job
    of the project is pending or running."""
    with transaction.atomic():
        if n_new_labels is None:
            n_new_labels = new_labels_since_model(project)
        job = active_job_create(
            TrainingJob,
            project=project,
            stale_seconds=settings.QUORUM_TRAINING_STALE_SECONDS,
            trigger=trigger[:32],
            requested_by=user,
            mode=project.training_mode,
            n_new_labels=n_new_labels,
        )
        if job is not None:
            transaction.on_commit(lambda: _enqueue(job))
    return job


def _enqueue(job: TrainingJob) -> None:
    from ..tasks import training_job_run

    queue = "gpu" if job.mode == TrainingMode.FINETUNE else "default"
    try:
        training_job_run.apply_async((job.pk,), queue=queue)
    except Exception:  # the broker is down: the job stays pending and expires
        logger.exception("could not enqueue training job %s", job.pk)


def _claim(job_id: int) -> TrainingJob | None:
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update(of=("self",)).select_related("project").filter(pk=job_id).first()
        if job is None or job.status not in TrainingJob.ACTIVE:
            return None
        job.status = TrainingJob.Status.RUNNING
        job.stage = TrainingJob.Stage.TRAIN
        job.started_at = timezone.now()
        job.timings = {}
        job.error = ""
        job.save(update_fields=["status", "stage", "started_at", "timings", "error"])
    return job


def _stage(job: TrainingJob, stage: str, **fields) -> None:
    job.stage = stage
    for name, value in fields.items():
        setattr(job, name, value)
    TrainingJob.objects.filter(pk=job.pk).update(stage=stage, timings=job.timings, **fields)


def training_job_execute(job_id: int) -> dict:
    """Run a pending job through its stages (module docstring). Idempotent: a job that is not active
    is left alone; a ``running`` one whose message was redelivered (its worker died) starts over."""
    job = _claim(job_id)
    if job is None:
        return {"job": job_id, "status": "skipped"}
    project = job.project
    started = time.perf_counter()
    try:
        t = time.perf_counter()
        version = training.model_fit(project=project, job=job)
        job.timings["train"] = round(version.train_seconds or 0.0, 4)
        job.timings["evaluate"] = round((version.metrics or {}).get("evaluate_seconds", 0.0), 4)
        job.timings["snapshot"] = round(time.perf_counter() - t - job.timings["train"] - job.timings["evaluate"], 4)
        _stage(job, TrainingJob.Stage.PROMOTE, model_version=version)

        t = time.perf_counter()
        version = training.model_gate(version=version)
        job.timings["promote"] = round(time.perf_counter() - t, 4)
        promoted = version.status == ModelVersion.Status.CURRENT
        job.outcome = "promoted" if promoted else "rejected"
        if promoted:
            _stage(job, TrainingJob.Stage.SCORE, outcome=job.outcome)
            t = time.perf_counter()
            result = _rescore(job, project)
            job.timings["score"] = round(time.perf_counter() - t, 4)
            job.timings["scoring"] = result
        job.timings["total"] = round(time.perf_counter() - started, 4)
        done = job.timings.get("scoring", {}).get("status") != "running"
        fields = {"outcome": job.outcome}
        if done:
            fields |= {"status": TrainingJob.Status.SUCCEEDED, "finished_at": timezone.now()}
        _stage(job, TrainingJob.Stage.DONE if done else TrainingJob.Stage.SCORE, **fields)
        return {"job": job.pk, "status": job.status, "model_version": version.version, "outcome": job.outcome}
    except ServiceError as exc:
        training_job_fail(job_id=job.pk, error=exc.detail if isinstance(exc.detail, str) else str(exc.detail))
        return {"job": job.pk, "status": "failed", "error": exc.detail}
    except Exception as exc:
        training_job_fail(job_id=job.pk, error=exc)
        raise


def _rescore(job: TrainingJob, project: Project) -> dict:
    """Re-score the pool with the promoted model now. When a scoring run is already active, the
    run's follow-up (``scoring._follow_up``) re-scores with the new model as soon as it finishes."""
    run = scoring.scoring_run_create(project=project, trigger="retrain")
    if run is None:
        active = ScoringRun.objects.filter(project=project, status__in=ScoringRun.ACTIVE).first()
        return {"status": "queued", "behind_run": active.pk if active else None}
    TrainingJob.objects.filter(pk=job.pk).update(scoring_run=run)
    job.scoring_run = run
    result = scoring.scoring_run_execute(run.pk)
    return {"run": run.pk, "status": result.get("status", "")}


def training_job_fail(*, job_id: int, error: BaseException | str) -> None:
    job_fail(TrainingJob, job_id=job_id, error=error)


def training_jobs_settle(*, project: Project) -> int:
    """Jobs whose re-scoring was handed to a chord finish when their run does. Returns how many."""
    settled = 0
    for job in TrainingJob.objects.filter(
        project=project, status=TrainingJob.Status.RUNNING, stage=TrainingJob.Stage.SCORE, scoring_run__isnull=False
    ).select_related("scoring_run"):
        run = job.scoring_run
        if run.status in ScoringRun.ACTIVE:
            continue
        ok = run.status == ScoringRun.Status.SUCCEEDED
        timings = dict(job.timings or {})
        if run.finished_at and job.started_at:
            timings["total"] = round((run.finished_at - job.started_at).total_seconds(), 4)
        settled += TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.SUCCEEDED if ok else TrainingJob.Status.FAILED,
            stage=TrainingJob.Stage.DONE,
            timings=timings,
            error="" if ok else f"re-scoring failed: {run.error}"[:5000],
            finished_at=run.finished_at or timezone.now(),
        )
    return settled


def model_rollback(*, project: Project, version_number: int, user) -> ModelVersion:
    """Admins: make an earlier version current again, then re-score the pool with it."""
    version = ModelVersion.objects.filter(project=project, version=version_number).first()
    if version is None:
        raise NotFound(f"project {project.pk} has no model version {version_number}")
    previous = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.CURRENT).first()
    if previous is not None and previous.pk == version.pk:
        return version
    what = f"made current by an admin, replacing v{previous.version}" if previous else "made current by an admin"
    with transaction.atomic():
        version = training.model_promote(version=version, reason=what)
        scoring.scoring_request(project=project, trigger="rollback")
    return version
