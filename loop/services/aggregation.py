"""What follows a change of labels: a debounced aggregation of the project, then the retrain check.

Every annotation, change, undo and review decision announces ``annotation.signals.labels_changed``;
``aggregation_request`` sets the project's request flag (``annotation.services.aggregation
.aggregation_claim``: one request per burst, across processes) and the request that set it sends
``project_aggregate_task`` with a countdown of ``QUORUM_AGGREGATION_DELAY_SECONDS`` (10 s by
default) once the transaction commits. When the broker refuses the message the flag stays set,
back-dated so that it is overdue at once (``aggregation_unsent``); a flag left set longer than the countdown plus
``QUORUM_JOB_PENDING_TIMEOUT`` without the task starting (the message was lost, or the request died
while sending) is sent again by the next label or by the sweep (``services.sweep``).

``project_aggregate_run`` (the task): clear the flag, recompute the consensus, agreement figures and
annotator quality, then request a training job when ``retrain_after`` new final labels have landed
(``loop.services.training.retrain_if_due``).
"""

from __future__ import annotations

from django.conf import settings

from annotation.models import Project
from annotation.services.aggregation import (
    aggregation_claim,
    aggregation_started,
    aggregation_unsent,
    project_aggregate,
)

from ..enqueue import PROJECT_AGGREGATE, enqueue_on_commit
from .training import retrain_if_due


def aggregation_delay() -> float:
    return float(getattr(settings, "QUORUM_AGGREGATION_DELAY_SECONDS", 10))


def aggregation_overdue() -> float:
    """Seconds after which a request flag whose task has not started is taken for a lost message:
    the countdown plus ``QUORUM_JOB_PENDING_TIMEOUT``."""
    return aggregation_delay() + float(settings.QUORUM_JOB_PENDING_TIMEOUT)


def aggregation_request(*, project: Project) -> bool:
    """Ask for an aggregation of ``project`` soon. Returns whether this call scheduled it (also when
    the flag was set by a request whose message never arrived: the next label sends it again)."""
    if not aggregation_claim(project=project, stale_seconds=aggregation_overdue()):
        return False
    project_id = project.pk
    enqueue_on_commit(
        PROJECT_AGGREGATE,
        project_id,
        countdown=aggregation_delay(),
        on_error=lambda: aggregation_unsent(project_id=project_id, older_than=aggregation_overdue()),
    )
    return True


def project_aggregate_run(project_id: int) -> dict:
    """The debounced aggregation (module docstring). Safe to run twice."""
    aggregation_started(project_id=project_id)
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "status": "missing"}
    snapshot = project_aggregate(project=project)
    job = retrain_if_due(project=project)
    return {
        "training_job": job.pk if job else None,
        "project": project_id,
        "snapshot": snapshot.pk,
        "duration_ms": snapshot.duration_ms,
    }
