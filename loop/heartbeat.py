"""A job's heartbeat while a worker runs it: a daemon thread of the worker process writes the job's
``heartbeat_at`` every ``QUORUM_JOB_HEARTBEAT_SECONDS`` until the task returns. When the process
dies, so does the thread, and the job falls silent: after ``QUORUM_JOB_HEARTBEAT_TIMEOUT`` it is
superseded (``acquisition.services.jobs``). The stages themselves also beat (per chunk, per stage),
so the thread only covers the long stretches between them (a fit, an evaluation, a chunk)."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from acquisition.services.jobs import job_heartbeat

logger = logging.getLogger(__name__)


@contextmanager
def heartbeat(model, job_id: int, *, enabled: bool = True):
    """Beat for job ``job_id`` of ``model`` while the block runs (nothing when not ``enabled``: a task
    called in-process, outside a worker)."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    interval = float(settings.QUORUM_JOB_HEARTBEAT_SECONDS)

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    if not job_heartbeat(model, job_id=job_id):
                        return  # finished or superseded: nothing left to vouch for
                except Exception as exc:  # the database is away for a moment: the next beat tries again
                    logger.warning("heartbeat of %s %s failed: %s", model._meta.verbose_name, job_id, exc)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{model._meta.model_name}-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
