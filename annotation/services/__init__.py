"""Every write of the annotation app: atomic, validating, raising ``annotation.errors``."""

from .ingest import IngestReport, ingest_batch_process, items_ingest
from .members import membership_remove, membership_set
from .projects import project_create, project_update
from .queue import QueueCandidate, QueueReplaceReport, queue_replace

__all__ = [
    "IngestReport",
    "ingest_batch_process",
    "items_ingest",
    "membership_remove",
    "membership_set",
    "project_create",
    "project_update",
    "QueueCandidate",
    "QueueReplaceReport",
    "queue_replace",
]
