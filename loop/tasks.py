"""Every Celery task of Quorum: thin, idempotent wrappers that take ids and call ``loop.services``.

Registered names are the ones the tasks had when they lived in ``annotation.tasks`` and
``acquisition.tasks`` (``name=``), so messages already queued and ``CELERY_TASK_ROUTES`` keep
working. ``items_embed`` goes to the ``gpu`` queue (routes); fine-tune training jobs and scoring with
a fine-tuned model are sent there explicitly; everything else runs on ``default``. Nothing big
travels through the broker: chunks return shortlists of ids and scores, vectors are read from the
database (and the worker's cache).

The services send them by name (``loop.enqueue``), so this module is the only one that imports
``loop.services`` for tasks and no service imports it back.
"""

from __future__ import annotations

from celery import shared_task

from acquisition.models import ScoringRun, TrainingJob
from quorum.errors import ServiceError

from .heartbeat import heartbeat
from .services import aggregation, push, scoring, training

RETRYING = {"acks_late": True, "autoretry_for": (Exception,), "retry_backoff": True}


# --- after a push ----------------------------------------------------------------------------
@shared_task(name="annotation.tasks.ingest_batch_process", max_retries=5, **RETRYING)
def ingest_batch_process(batch_id: int) -> dict:
    return push.ingest_batch_process(batch_id)


@shared_task(
    name="acquisition.tasks.items_embed",
    dont_autoretry_for=(ServiceError,),
    max_retries=5,
    **RETRYING,
)
def items_embed(project_id: int, item_ids: list[int] | None = None) -> dict:
    return push.items_embed(project_id, item_ids)


def _in_worker(task) -> bool:
    """Whether the task runs on a worker (its job's heartbeat thread runs there, ``loop.heartbeat``)."""
    return not task.request.called_directly and not task.request.is_eager


# --- scoring ---------------------------------------------------------------------------------
@shared_task(name="acquisition.tasks.scoring_run_execute", acks_late=True, bind=True)
def scoring_run_execute(self, run_id: int) -> dict:
    with heartbeat(ScoringRun, run_id, enabled=_in_worker(self)):
        return scoring.scoring_run_execute(run_id)


@shared_task(name="acquisition.tasks.scoring_chunk_score", acks_late=True, bind=True)
def scoring_chunk_score(self, run_id: int, index: int, lo: int, hi: int, seed: int) -> dict:
    with heartbeat(ScoringRun, run_id, enabled=_in_worker(self)):
        return scoring.scoring_chunk_score(run_id, index, lo, hi, seed)


@shared_task(name="acquisition.tasks.scoring_run_reduce", acks_late=True, bind=True)
def scoring_run_reduce(self, results: list[dict], run_id: int, seed: int) -> dict:
    with heartbeat(ScoringRun, run_id, enabled=_in_worker(self)):
        return scoring.scoring_run_reduce(results, run_id, seed)


# --- labels ----------------------------------------------------------------------------------
@shared_task(name="annotation.tasks.project_aggregate_task", max_retries=5, **RETRYING)
def project_aggregate_task(project_id: int) -> dict:
    """The debounced aggregation of one project, then the retrain check (``services.aggregation``)."""
    return aggregation.project_aggregate_run(project_id)


# --- training --------------------------------------------------------------------------------
@shared_task(name="acquisition.tasks.training_job_run", acks_late=True, bind=True)
def training_job_run(self, job_id: int) -> dict:
    """One turn of the loop (``services.training.training_job_execute``): train, gate, re-score."""
    with heartbeat(TrainingJob, job_id, enabled=_in_worker(self)):
        return training.training_job_execute(job_id)


@shared_task(name="acquisition.tasks.retrain_if_due", max_retries=3, **RETRYING)
def retrain_if_due(project_id: int) -> dict:
    return training.retrain_if_due_task(project_id)
