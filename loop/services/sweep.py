"""The sweep: what a lost worker or a broker outage left behind is taken up again, without waiting
for the next request.

- running scoring runs and training jobs whose worker is silent (no heartbeat for
  ``QUORUM_JOB_HEARTBEAT_TIMEOUT``) are superseded (``acquisition.services.jobs``); a project whose
  scoring run was lost gets a new one, one whose training job was lost is checked for a retrain;
- pending ones whose message was sent more than ``QUORUM_JOB_PENDING_TIMEOUT`` ago and never picked
  up are sent again (a duplicate finds the job taken and does nothing);
- aggregation requests whose task never started (``annotation.services.aggregation``) are sent again.

Every worker runs it every ``QUORUM_SWEEP_SECONDS`` in a thread of its main process
(``quorum.celery``), so no scheduler (Celery beat) is needed. Every step is a conditional write, so sweeps of several workers at once
do each thing once.
"""

from __future__ import annotations

import logging

from django.conf import settings

from acquisition.models import ScoringRun, TrainingJob
from acquisition.services.jobs import job_sent, lost_jobs, stale_jobs_expire
from annotation.models import Project, TrainingMode
from annotation.services.aggregation import aggregation_rearm, aggregation_requests_overdue, aggregation_unsent

from ..enqueue import PROJECT_AGGREGATE, SCORING_RUN_EXECUTE, TRAINING_JOB_RUN, send_now
from .aggregation import aggregation_overdue
from .scoring import scoring_queue, scoring_request, training_jobs_settle
from .training import retrain_if_due

logger = logging.getLogger(__name__)


def sweep() -> dict:
    """One pass (module docstring). Returns what it did, by kind: project ids."""
    done = {"scoring_superseded": [], "training_superseded": [], "resent": [], "aggregations": []}
    scoring_stale = settings.QUORUM_SCORING_STALE_SECONDS
    training_stale = settings.QUORUM_TRAINING_STALE_SECONDS

    for project_id in stale_jobs_expire(ScoringRun, stale_seconds=scoring_stale, pending=False):
        project = Project.objects.filter(pk=project_id).first()
        if project is not None:
            training_jobs_settle(project=project)
            scoring_request(project=project, trigger="sweep")
            done["scoring_superseded"].append(project_id)
    for project_id in stale_jobs_expire(TrainingJob, stale_seconds=training_stale, pending=False):
        project = Project.objects.filter(pk=project_id).first()
        if project is not None:
            retrain_if_due(project=project)
            done["training_superseded"].append(project_id)

    for run in lost_jobs(ScoringRun, stale_seconds=scoring_stale).filter(status=ScoringRun.Status.PENDING):
        queue = scoring_queue(run.project)
        if send_now(SCORING_RUN_EXECUTE, run.pk, **({"queue": queue} if queue else {})):
            job_sent(ScoringRun, job_id=run.pk)
            done["resent"].append(("scoring", run.pk))
    for job in lost_jobs(TrainingJob, stale_seconds=training_stale).filter(status=TrainingJob.Status.PENDING):
        queue = settings.CELERY_GPU_QUEUE if job.mode == TrainingMode.FINETUNE else settings.CELERY_TASK_DEFAULT_QUEUE
        if send_now(TRAINING_JOB_RUN, job.pk, queue=queue):
            job_sent(TrainingJob, job_id=job.pk)
            done["resent"].append(("training", job.pk))

    overdue = aggregation_overdue()
    for project_id in aggregation_requests_overdue(older_than=overdue):
        if aggregation_rearm(project_id=project_id, older_than=overdue):
            if send_now(PROJECT_AGGREGATE, project_id):
                done["aggregations"].append(project_id)
            else:  # not sent: overdue again, so the next sweep or label tries again
                aggregation_unsent(project_id=project_id, older_than=overdue)
    if any(done.values()):
        logger.info("sweep: %s", done)
    return done
