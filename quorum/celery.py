"""The Celery application. Workers start with ``celery -A quorum worker``."""

import logging
import os
import threading
import time

from celery import Celery
from celery.contrib.django.task import DjangoTask
from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from celery.worker.request import Request
from kombu.asynchronous import get_event_loop

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")

logger = logging.getLogger(__name__)

# Seconds between two tries of an acknowledgement the broker did not take (AckRetryingRequest).
ACK_RETRY_SECONDS = 2.0


class AckRetryingRequest(Request):
    """A task request whose acknowledgement is tried again until the broker takes it.

    Celery logs a failed acknowledgement ("Couldn't ack") and drops it. On Redis the message then
    stays counted as delivered by the consumer's channel for ever: with a prefetch of one per pool
    process (``CELERY_WORKER_PREFETCH_MULTIPLIER``), a worker whose ack timed out while the broker
    was frozen never takes another message, though it is connected and the sweep keeps re-sending.
    Tried again from the worker's event loop every ``ACK_RETRY_SECONDS`` while the channel is open,
    the acknowledgement goes through once the broker answers and the slot is free again; a channel
    closed meanwhile (the consumer reconnected) has given its messages back to the broker, and the
    redelivered duplicate finds its job done (tasks are idempotent)."""

    def acknowledge(self):
        if self.acknowledged:
            return
        self.acknowledged = True
        self._try_ack()

    def _try_ack(self) -> None:
        message = self.message
        if message.acknowledged or getattr(message.channel, "closed", False):
            return
        try:
            message.ack()
        except self._connection_errors as exc:
            hub = get_event_loop()  # the worker's event loop, in its main process
            logger.warning(
                "could not acknowledge %s[%s] (%s): trying again in %s s",
                self.task_name,
                self.id,
                exc,
                ACK_RETRY_SECONDS,
            )
            if hub is not None:
                hub.call_later(ACK_RETRY_SECONDS, self._try_ack)


class QuorumTask(DjangoTask):
    """Celery's task class for Django projects (the one the Django fix-up would choose), with
    :class:`AckRetryingRequest`."""

    Request = AckRetryingRequest


app = Celery("quorum", task_cls=QuorumTask)
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


# --- the sweep: every worker takes up what lost workers and broker outages left behind -------------
_SWEEP_STOP = threading.Event()


@worker_ready.connect
def _start_sweeping(**_kwargs):
    """A thread of the worker's main process runs ``loop.services.sweep`` every
    ``QUORUM_SWEEP_SECONDS`` (0: off). In the main process, not a pool process, so a task that
    occupies every pool process (or a pool process that died) never holds it up; it sends what it
    re-sends through the broker like any request."""
    from django.conf import settings  # the worker imports this module before Django is set up

    interval = float(settings.QUORUM_SWEEP_SECONDS)
    if interval > 0:
        _SWEEP_STOP.clear()
        threading.Thread(target=_sweep_loop, args=(interval,), name="quorum-sweep", daemon=True).start()


@worker_shutdown.connect
def _stop_sweeping(**_kwargs):
    _SWEEP_STOP.set()


def _sweep_loop(interval: float) -> None:
    from django.db import close_old_connections, connection  # see _start_sweeping

    from loop.services.sweep import sweep  # see _start_sweeping

    while not _SWEEP_STOP.wait(interval):
        try:
            close_old_connections()
            sweep()
        except Exception:  # the database or broker is away: the next sweep tries again
            logging.getLogger(__name__).warning("sweep failed", exc_info=True)
        finally:
            connection.close()  # no connection held between sweeps (nor inherited by a forked pool process)


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
