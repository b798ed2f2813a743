"""Scoring runs, driven: request one, execute it (inline or as a chord of chunks), write the queue,
and decide what follows.

``scoring_request`` creates a pending run (``acquisition.services.scoring.scoring_run_create``: one
active run per project, stale ones expire) and sends it when the transaction commits: to the ``gpu``
queue when the current model is a fine-tuned encoder (it reads texts), else the default queue.

``scoring_run_execute`` claims the run and asks the model side for its plan: a cold-start batch
(written at once), one chunk (scored and reduced inline) or several (a Celery chord of
``scoring_chunk_score`` whose callback ``scoring_run_reduce`` reduces the shortlists). Either way
``_finish`` writes the batch with ``annotation.services.queue.queue_replace`` in the same transaction
that marks the run succeeded, so annotators see the old queue or the new one.

What follows a run (``_follow_up``, after the commit): training jobs waiting on it finish
(``training_jobs_settle``), and when embeddings were written while it ran, or another model became
current meanwhile, one more run is requested.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from acquisition import selectors
from acquisition.models import ItemEmbedding, ScoringRun, TrainingJob
from acquisition.services import scoring as compute
from annotation.models import Project, QueueEntry, QueueReason
from annotation.services.queue import QueueCandidate, QueueReplaceReport, queue_replace

from ..enqueue import SCORING_CHUNK_SCORE, SCORING_RUN_EXECUTE, SCORING_RUN_REDUCE, enqueue_on_commit, fan_out


def scoring_queue(project: Project) -> str | None:
    """The ``gpu`` queue when the current model is a fine-tuned encoder (it reads texts), else the default."""
    current = selectors.model_version_current(project)
    return settings.CELERY_GPU_QUEUE if current is not None and current.kind == "finetune" else None


def scoring_request(*, project: Project, trigger: str) -> ScoringRun | None:
    """Ask for a scoring run of ``project``; ``None`` when one is already pending or running. The run
    is sent once the surrounding transaction commits."""
    with transaction.atomic():
        run = compute.scoring_run_create(project=project, trigger=trigger)
        if run is not None:
            queue = scoring_queue(project)
            enqueue_on_commit(SCORING_RUN_EXECUTE, run.pk, **({"queue": queue} if queue else {}))
    return run


def scoring_run_execute(run_id: int, *, seed: int | None = None, chunk_size: int | None = None) -> dict:
    """Run (or fan out) a pending scoring run. Idempotent: a run that is not pending is left alone,
    except a ``running`` one whose message was redelivered after its worker died, which starts over."""
    run = compute.scoring_run_claim(run_id)
    if run is None:
        return {"run": run_id, "status": "skipped"}
    try:
        plan = compute.scoring_run_plan(run, seed=seed, chunk_size=chunk_size)
        if plan.batch is not None:
            return _finish(run, plan.batch)
        if len(plan.chunks) == 1:
            chunk = plan.chunks[0]
            result = compute.chunk_score(run.pk, chunk.index, chunk.lo, chunk.hi, plan.seed)
            return scoring_run_reduce([result], run.pk, plan.seed)
        fan_out(
            [(SCORING_CHUNK_SCORE, (run.pk, c.index, c.lo, c.hi, plan.seed)) for c in plan.chunks],
            (SCORING_RUN_REDUCE, (run.pk, plan.seed)),
            queue=scoring_queue(run.project),
        )
        return {"run": run.pk, "status": "running", "chunks": len(plan.chunks)}
    except Exception as exc:
        scoring_run_fail(run_id=run.pk, error=exc)
        raise


def scoring_chunk_score(run_id: int, index: int, lo: int, hi: int, seed: int) -> dict:
    """One chunk of a fanned-out run: its shortlist, or the run failed with the chunk's error."""
    try:
        return compute.chunk_score(run_id, index, lo, hi, seed)
    except Exception as exc:
        scoring_run_fail(run_id=run_id, error=exc)
        raise


def scoring_run_reduce(results: list[dict], run_id: int, seed: int) -> dict:
    """Reduce the chunks' shortlists to the batch and write the queue."""
    run = ScoringRun.objects.select_related("project", "model_version").get(pk=run_id)
    if run.status != ScoringRun.Status.RUNNING:
        return {"run": run_id, "status": run.status}
    try:
        return _finish(run, compute.shortlists_reduce(results, run, seed))
    except Exception as exc:
        scoring_run_fail(run_id=run_id, error=exc)
        raise


def scoring_run_fail(*, run_id: int, error: BaseException | str) -> None:
    """Mark an active run failed; training jobs waiting on it fail with it."""
    compute.scoring_run_fail(run_id=run_id, error=error)
    run = ScoringRun.objects.filter(pk=run_id).select_related("project").first()
    if run is not None:
        training_jobs_settle(project=run.project)


def _finish(run: ScoringRun, batch: compute.Batch) -> dict:
    project = run.project
    started = time.perf_counter()
    with transaction.atomic():
        locked = ScoringRun.objects.select_for_update().filter(pk=run.pk).first()
        if locked is None or locked.status != ScoringRun.Status.RUNNING:
            return {"run": run.pk, "status": "superseded"}
        candidates = [QueueCandidate(**asdict(pick)) for pick in batch.picks]
        if candidates:
            report = queue_replace(project=project, candidates=candidates, strategy=locked.strategy, run=locked)
        else:  # nothing scorable (no vectors yet): the queue there is (item order) stays, not emptied
            report = QueueReplaceReport(written=0, kept=0, removed=0, skipped=0)
        timings = dict(batch.timings)
        timings["write"] = time.perf_counter() - started
        compute.scoring_run_succeed(
            locked,
            selected=report.written,
            explored=QueueEntry.objects.filter(run=locked, reason=QueueReason.EXPLORATION).count(),
            timings=timings,
        )
        started_at, scored_with = locked.started_at, locked.model_version_id
        transaction.on_commit(lambda: _follow_up(project, started_at, scored_with))
    return {
        "run": run.pk,
        "status": str(ScoringRun.Status.SUCCEEDED.value),
        "selected": report.written,
        "kept": report.kept,
        "removed": report.removed,
        "skipped": report.skipped,
    }


def _follow_up(project: Project, started_at, scored_with: int | None) -> None:
    """Embeddings written while the run was going were not scored, or another model became current
    meanwhile (a retrain or roll back): ask for one more run. Training jobs waiting on it finish."""
    training_jobs_settle(project=project)
    current = selectors.model_version_current(project)
    model_changed = scored_with is not None and current is not None and current.pk != scored_with
    if model_changed or ItemEmbedding.objects.filter(project=project, updated_at__gt=started_at).exists():
        scoring_request(project=project, trigger="followup")


def training_jobs_settle(*, project: Project) -> int:
    """Training jobs whose re-scoring was handed to a chord finish when their run does. Returns how many."""
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
