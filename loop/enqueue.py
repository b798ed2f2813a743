"""The one way the loop starts a task: by its registered name, once the transaction commits.

Services refer to tasks by name (the constants below), not by importing ``loop.tasks``: that module
imports the services, and a service that imported it back would close an import cycle. A signature
by name is Celery's own decoupling (it resolves to the registered task, or is sent as is).

``enqueue_on_commit`` is Celery's ``apply_async_on_commit`` (``celery.contrib.django``) with one
difference: a broker that is down does not fail the request that committed. The error is logged and
``on_error()`` runs; the state the task would act on is in the database, so the next request (or a
stale job's expiry) picks it up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import chord, signature
from django.db import transaction

logger = logging.getLogger(__name__)

INGEST_BATCH_PROCESS = "annotation.tasks.ingest_batch_process"
PROJECT_AGGREGATE = "annotation.tasks.project_aggregate_task"
ITEMS_EMBED = "acquisition.tasks.items_embed"
SCORING_RUN_EXECUTE = "acquisition.tasks.scoring_run_execute"
SCORING_CHUNK_SCORE = "acquisition.tasks.scoring_chunk_score"
SCORING_RUN_REDUCE = "acquisition.tasks.scoring_run_reduce"
TRAINING_JOB_RUN = "acquisition.tasks.training_job_run"
RETRAIN_IF_DUE = "acquisition.tasks.retrain_if_due"


def enqueue_on_commit(name: str, *args, on_error: Callable[[], None] | None = None, **options) -> None:
    """Send task ``name`` with ``args`` (and ``apply_async`` options: ``queue``, ``countdown``) when
    the surrounding transaction commits, at once outside one (module docstring)."""

    def send() -> None:
        try:
            signature(name, args=args).apply_async(**options)
        except Exception:
            logger.exception("could not enqueue %s%s", name, args)
            if on_error is not None:
                on_error()

    transaction.on_commit(send)


def fan_out(header: list[tuple], callback: tuple, *, queue: str | None = None) -> None:
    """A chord: the ``header`` tasks (``(name, args)`` pairs, on ``queue`` when given) in parallel,
    then ``callback`` with their results. Sent now (the caller is a task that already committed what
    they read)."""
    options = {"queue": queue} if queue else {}
    chord([signature(name, args=args, **options) for name, args in header])(signature(callback[0], args=callback[1]))
