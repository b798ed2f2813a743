"""The queue's supply (``annotation.ports.QueueSupply``): scoring runs fill the queue.

- ``started``: a scoring run of the project has succeeded, or one is pending or running; until
  then annotators top the queue up in item order (the fallback).
- ``running``: a scoring run is pending or running (the annotator's progress line says more items
  are coming).
- ``request``: the queue runs low, so a scoring run is requested (``services.scoring``; ``None``
  while one is active).
"""

from __future__ import annotations

from acquisition.models import ScoringRun
from annotation.models import Project

from .services.scoring import scoring_request


class ScoringSupply:
    def started(self, project: Project) -> bool:
        return ScoringRun.objects.filter(
            project=project, status__in=[ScoringRun.Status.SUCCEEDED, *ScoringRun.ACTIVE]
        ).exists()

    def running(self, project: Project) -> bool:
        return ScoringRun.objects.filter(project=project, status__in=ScoringRun.ACTIVE).exists()

    def request(self, project: Project) -> bool:
        return scoring_request(project=project, trigger="low_queue") is not None
