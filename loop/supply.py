"""The queue's supply (``annotation.ports.QueueSupply``): scoring runs fill the queue.

- ``started``: a scoring run of the project has succeeded with items, or one is pending or running; until
  then annotators top the queue up in item order (the fallback).
- ``running``: a scoring run is pending or running and not lost (``acquisition.services.jobs``:
  its worker beats, its message was sent lately); the annotator's progress line says more items are
  coming. A lost run does not count, so the next ``request`` supersedes it.
- ``request``: the queue runs low, so a scoring run is requested (``services.scoring``; ``None``
  while one is active).
"""

from __future__ import annotations

from django.conf import settings

from acquisition.models import ScoringRun
from acquisition.services.jobs import lost_jobs
from annotation.models import Project

from .services.scoring import scoring_request


class ScoringSupply:
    def started(self, project: Project) -> bool:
        # A run that found nothing to score (no vectors yet) leaves item order in charge.
        runs = ScoringRun.objects.filter(project=project)
        return (
            runs.filter(status__in=ScoringRun.ACTIVE).exists()
            or runs.filter(status=ScoringRun.Status.SUCCEEDED, selected__gt=0).exists()
        )

    def running(self, project: Project) -> bool:
        active = ScoringRun.objects.filter(project=project, status__in=ScoringRun.ACTIVE)
        if not active.exists():
            return False
        # A lost run (its worker or its message is gone) is not on its way: the request supersedes it.
        return not lost_jobs(ScoringRun, stale_seconds=settings.QUORUM_SCORING_STALE_SECONDS, project=project).exists()

    def request(self, project: Project) -> bool:
        return scoring_request(project=project, trigger="low_queue") is not None
