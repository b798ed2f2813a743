"""The Celery application. Workers start with ``celery -A quorum worker``."""

import os
import time

from celery import Celery
from celery.signals import task_failure, task_postrun, task_prerun, task_retry, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")

app = Celery("quorum")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def limit_torch_threads(**_kwargs):
    """Give each worker process ``QUORUM_TORCH_THREADS`` intra-op threads (0: PyTorch's default, one
    per core). Several worker processes on one machine each using every core oversubscribe the CPU
    badly; set it to cores / processes there."""
    from django.conf import settings

    threads = settings.QUORUM_TORCH_THREADS
    if threads:
        import torch

        torch.set_num_threads(threads)


# --- task counters for /metrics (acquisition.models.TaskStat) ---------------------------------
_STARTED: dict[str, float] = {}


@task_prerun.connect
def _task_started(task_id=None, **_kwargs):
    _STARTED[task_id] = time.perf_counter()


@task_retry.connect
def _task_retried(request=None, **_kwargs):
    _STARTED.pop(getattr(request, "id", None), None)
    _record(getattr(request, "task", None) or "unknown", "retried", 0.0)


@task_failure.connect
def _task_failed(task_id=None, sender=None, **_kwargs):
    started = _STARTED.pop(task_id, None)
    _record(getattr(sender, "name", "unknown"), "failed", time.perf_counter() - started if started else 0.0)


@task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_kwargs):
    started = _STARTED.pop(task_id, None)
    if state == "SUCCESS" and started is not None:
        _record(task.name, "succeeded", time.perf_counter() - started)


def _record(name: str, outcome: str, seconds: float) -> None:
    """One UPDATE (an INSERT the first time) per finished task; never lets a metrics write fail a task."""
    try:
        from django.db import IntegrityError, transaction
        from django.db.models import F
        from django.db.models.functions import Greatest

        from acquisition.models import TaskStat  # the worker imports this module before Django is set up

        changes = {"count": F("count") + 1, "seconds_sum": F("seconds_sum") + seconds}
        if TaskStat.objects.filter(task=name, outcome=outcome).update(
            **changes, seconds_max=Greatest(F("seconds_max"), seconds)
        ):
            return
        try:
            with transaction.atomic():
                TaskStat.objects.create(task=name, outcome=outcome, count=1, seconds_sum=seconds, seconds_max=seconds)
        except IntegrityError:  # another worker created the row first
            TaskStat.objects.filter(task=name, outcome=outcome).update(
                **changes, seconds_max=Greatest(F("seconds_max"), seconds)
            )
    except Exception:  # the database is away: the task's own outcome matters more than its counter
        import logging

        logging.getLogger(__name__).warning("could not record task %s %s", name, outcome, exc_info=True)
