"""The one way the loop starts a task: by its registered name, once the transaction commits.

Services refer to tasks by name (the constants below), not by importing ``loop.tasks``: that module
imports the services, and a service that imported it back would close an import cycle. A signature
by name is Celery's own decoupling (it resolves to the registered task, or is sent as is).

``enqueue_on_commit`` is Celery's ``apply_async_on_commit`` (``celery.contrib.django``) with one
difference: a broker that is down does not fail the request that committed. The error is logged and
``on_error()`` runs; the state the task would act on is in the database (a pending job, the
aggregation's request flag), so the next request or the sweep (``loop.services.sweep``) sends it
again. Publishing never waits long: the broker's socket timeouts and the one-retry publish policy
are in the settings (``QUORUM_BROKER_TIMEOUT``).

Nobody waits for these tasks' results (their outcome is in the database), so they are sent with
``ignore_result``: otherwise the sender first subscribes to the task's result on the result backend
(``on_task_call`` of the Redis backend), and a frozen Redis holds that subscription for the
backend's own retry policy (twenty tries, a minute and more) before the publish even starts.
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


def _send(name: str, args: tuple, options: dict) -> None:
    signature(name, args=args).apply_async(ignore_result=True, **options)


def enqueue_on_commit(name: str, *args, on_error: Callable[[], None] | None = None, **options) -> None:
    """Send task ``name`` with ``args`` (and ``apply_async`` options: ``queue``, ``countdown``) when
    the surrounding transaction commits, at once outside one (module docstring)."""

    def send() -> None:
        try:
            _send(name, args, options)
        except Exception:
            logger.exception("could not enqueue %s%s", name, args)
            if on_error is not None:
                on_error()

    transaction.on_commit(send)


def send_now(name: str, *args, **options) -> bool:
    """Send task ``name`` now (outside a transaction: the sweep). Returns whether the broker took it;
    a broker that is down is logged, never raised (the sweep tries again next time)."""
    try:
        _send(name, args, options)
    except Exception as exc:
        logger.warning("could not send %s%s: %s", name, args, exc)
        return False
    return True


def fan_out(header: list[tuple], callback: tuple, *, queue: str | None = None) -> None:
    """A chord: the ``header`` tasks (``(name, args)`` pairs, on ``queue`` when given) in parallel,
    then ``callback`` with their results. Sent now (the caller is a task that already committed what
    they read)."""
    options = {"queue": queue} if queue else {}
    chord([signature(name, args=args, **options) for name, args in header])(signature(callback[0], args=callback[1]))
