"""The closed loop: enough new labels → train → evaluate → gate → re-score → refill, as one job.

``retrain_if_due`` runs after every aggregation (``loop.services.aggregation``, which every
annotation, change, undo and review decision asks for) and after every embedding pass: when at least ``retrain_after`` final
labels of items with a vector were finalised since the newest model version's label snapshot (labels
waiting for their vectors count from the embedding pass that brings them), it requests a
``TrainingJob``. A partial unique constraint keeps one pending or running job per project, so a
burst of labels asks once (the debounce); a job left active longer than
``QUORUM_TRAINING_STALE_SECONDS``, or silent (no heartbeat) for ``QUORUM_JOB_HEARTBEAT_TIMEOUT``, is
treated as lost and superseded (``acquisition.services.jobs``). Admins can also ask for one
("train now", page and API).

``training_job_execute`` (a Celery task: heads jobs on the ``default`` queue, fine-tune jobs on
``gpu``) walks the stages, recording each one's seconds in ``timings``:

``train`` (``acquisition.services.fitting.model_fit``: snapshot, split, fit, evaluate) → ``promote``
(``acquisition.services.gate.model_gate``) → ``score``: a promoted model re-scores the pool with a new
scoring run executed in the same task (``loop.services.scoring``; chunked pools fan out to a chord
and the job links the run, settled when the run ends), whose ``queue_replace`` swaps the queue
atomically. A rejected version leaves the queue alone.

Then, promoted or not, the label-error review (``label_errors``, after the gate and any inline
re-scoring, so annotators' queue is refilled first): ``acquisition.services.label_errors`` fits
k-fold heads on the same final labels and flags the consensus labels their out-of-fold
probabilities confidently contradict (confident learning), and
``annotation.services.review.label_error_reviews_open`` opens review tasks (reason
``label_error``, with the model's alternative) for the surest ``QUORUM_LABEL_ERROR_CAP`` of them
(0: off). It judges the labels, not the new model, so it runs whether the version was promoted or
rejected, once per job. ``timings`` records its seconds (``label_errors``) and its figures
(``label_error_review``: labels, folds, issues found, consensus flags, tasks opened, cap). It is a
side check: when it fails, the job still succeeds and ``label_error_review`` says why.

Last, the stability check (``acquisition.services.stopping``): the new version's predictions on the
project's stop set against those of the version about 500 labels earlier, stored in the version's
``metrics["stability"]`` for the dashboard's stopping signal; ``timings["stability"]`` has its
figures, or why it failed (a side check too: the job still succeeds).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from acquisition.models import ModelVersion, ScoringRun, TrainingJob
from acquisition.selectors import model_version_latest_trained, new_labels_since_model
from acquisition.services.fitting import model_fit
from acquisition.services.gate import model_gate
from acquisition.services.jobs import active_job_create, job_claimable, job_fail
from acquisition.services.label_errors import label_errors_find
from acquisition.services.registry import model_promote
from acquisition.services.scoring import scoring_run_create
from acquisition.services.stopping import version_stability
from annotation.models import Project, TrainingMode
from annotation.services.review import SuspectedLabelError, label_error_reviews_open
from quorum.errors import Conflict, NotFound, ServiceError

from ..enqueue import TRAINING_JOB_RUN, enqueue_on_commit
from . import scoring

logger = logging.getLogger(__name__)


def retrain_if_due(*, project: Project) -> TrainingJob | None:
    """Request a training job when ``retrain_after`` new final labels have landed (module docstring)."""
    if TrainingJob.objects.filter(project=project, status__in=TrainingJob.ACTIVE).exists():
        return None
    # Labels whose items still wait for a vector do not count (a job could not train on them): the
    # embedding pass checks again when they have one (``push.items_embed``).
    new = new_labels_since_model(project, embedded_only=True)
    if new < project.retrain_after:
        return None
    return training_job_request(project=project, trigger="labels", n_new_labels=new)


def manual_training_check(*, project: Project) -> None:
    """Refuse "train now" when no final label landed since the newest model version's label snapshot:
    the job would train the same labels again into an identical version (``Conflict``
    ``no_new_labels``)."""
    latest = model_version_latest_trained(project)
    if latest is not None and not new_labels_since_model(project):
        raise Conflict(
            f"no new final labels since model version v{latest.version} was trained: a new job would train "
            "the same labels into an identical version; label more items first",
            code="no_new_labels",
        )


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
            queue = (
                settings.CELERY_GPU_QUEUE if job.mode == TrainingMode.FINETUNE else settings.CELERY_TASK_DEFAULT_QUEUE
            )
            enqueue_on_commit(TRAINING_JOB_RUN, job.pk, queue=queue)  # a lost one stays pending and expires
    return job


def _claim(job_id: int) -> TrainingJob | None:
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update(of=("self",)).select_related("project").filter(pk=job_id).first()
        if job is None or not job_claimable(job):  # done, superseded, or running on a live worker
            return None
        job.status = TrainingJob.Status.RUNNING
        job.stage = TrainingJob.Stage.TRAIN
        job.started_at = job.heartbeat_at = timezone.now()
        job.timings = {}
        job.error = ""
        job.save(update_fields=["status", "stage", "started_at", "heartbeat_at", "timings", "error"])
    return job


def _stage(job: TrainingJob, stage: str, **fields) -> None:
    job.stage = stage
    for name, value in fields.items():
        setattr(job, name, value)
    TrainingJob.objects.filter(pk=job.pk).update(
        stage=stage, timings=job.timings, heartbeat_at=timezone.now(), **fields
    )


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
        version = model_fit(project=project, job=job)
        job.timings["train"] = round(version.train_seconds or 0.0, 4)
        job.timings["evaluate"] = round((version.metrics or {}).get("evaluate_seconds", 0.0), 4)
        job.timings["snapshot"] = round(time.perf_counter() - t - job.timings["train"] - job.timings["evaluate"], 4)
        _stage(job, TrainingJob.Stage.PROMOTE, model_version=version)

        t = time.perf_counter()
        version = model_gate(version=version)
        job.timings["promote"] = round(time.perf_counter() - t, 4)
        promoted = version.status == ModelVersion.Status.CURRENT
        job.outcome = "promoted" if promoted else "rejected"
        if promoted:
            _stage(job, TrainingJob.Stage.SCORE, outcome=job.outcome)
            t = time.perf_counter()
            result = _rescore(job, project)
            job.timings["score"] = round(time.perf_counter() - t, 4)
            job.timings["scoring"] = result
        t = time.perf_counter()
        job.timings["label_error_review"] = _label_error_review(project, seed=version.seed or 0)
        job.timings["label_errors"] = round(time.perf_counter() - t, 4)
        job.timings["stability"] = _stability(version)
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
    run's follow-up (``loop.services.scoring``) re-scores with the new model as soon as it finishes."""
    run = scoring_run_create(project=project, trigger="retrain")
    if run is None:
        active = ScoringRun.objects.filter(project=project, status__in=ScoringRun.ACTIVE).first()
        return {"status": "queued", "behind_run": active.pk if active else None}
    TrainingJob.objects.filter(pk=job.pk).update(scoring_run=run)
    job.scoring_run = run
    result = scoring.scoring_run_execute(run.pk)
    return {"run": run.pk, "status": result.get("status", "")}


def _label_error_review(project: Project, *, seed: int) -> dict:
    """Flag suspected label errors and open review tasks for the surest of them (module docstring)."""
    cap = settings.QUORUM_LABEL_ERROR_CAP
    if cap <= 0:
        return {"status": "off", "cap": 0}
    if project.multi_label:
        return {"status": "off", "reason": "single-label projects only", "cap": cap}
    try:
        scan = label_errors_find(project=project, seed=seed)
        tasks = label_error_reviews_open(
            project=project,
            suspects=[
                SuspectedLabelError(
                    item_id=flag.item_id,
                    given_label_id=flag.given_label_id,
                    model_label_id=flag.model_label_id,
                    model_confidence=flag.model_probability,
                )
                for flag in scan.flags
            ],
            cap=cap,
        )
    except Exception as exc:  # a side check: the trained, gated model stands (module docstring)
        logger.exception("label-error review of project %s failed", project.pk)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500], "cap": cap}
    return {"status": "done", **scan.summary(), "opened": len(tasks), "cap": cap}


def _stability(version: ModelVersion) -> dict:
    """The new version's agreement with earlier ones on the stop set, stored in its metrics for the
    dashboard's stopping signal (``acquisition.services.stopping``). A side check, as the review."""
    if version.project.multi_label:
        return {"status": "off", "reason": "single-label projects only"}
    try:
        record = version_stability(version=version)
    except Exception as exc:  # a side check: the trained, gated model stands
        logger.exception("stability check of %s failed", version)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {key: record.get(key) for key in ("status", "kappa", "reference_version", "seconds")}


def training_job_fail(*, job_id: int, error: BaseException | str) -> None:
    job_fail(TrainingJob, job_id=job_id, error=error)


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
        version = model_promote(version=version, reason=what)
        scoring.scoring_request(project=project, trigger="rollback")
    return version


def model_train(*, project: Project, seed: int | None = None) -> ModelVersion:
    """Fit, evaluate and gate one version, no re-scoring (``manage.py score --train``)."""
    return model_gate(version=model_fit(project=project, seed=seed))


def retrain_if_due_task(project_id: int) -> dict:
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "missing"}
    job = retrain_if_due(project=project)
    return {"project": project_id, "job": job.pk if job else None}
