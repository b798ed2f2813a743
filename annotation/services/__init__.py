"""Every write of the annotation app: atomic, validating, raising ``annotation.errors``."""

from .aggregation import aggregation_request, project_aggregate
from .assignments import (
    MAX_LIVE_LEASES,
    NextResult,
    SubmitResult,
    annotation_change,
    annotation_submit,
    annotation_undo,
    assignment_next,
    assignment_skip,
    leases_expire,
    queue_fallback_fill,
    queue_refill_if_low,
)
from .consensus import item_consensus_apply
from .ingest import IngestReport, ingest_batch_process, items_ingest
from .members import membership_remove, membership_set
from .projects import project_create, project_update
from .queue import QueueCandidate, QueueReplaceReport, queue_replace
from .review import ReviewNext, review_next, review_resolve

__all__ = [
    "MAX_LIVE_LEASES",
    "NextResult",
    "SubmitResult",
    "aggregation_request",
    "annotation_change",
    "annotation_submit",
    "annotation_undo",
    "assignment_next",
    "assignment_skip",
    "item_consensus_apply",
    "leases_expire",
    "queue_fallback_fill",
    "queue_refill_if_low",
    "IngestReport",
    "ingest_batch_process",
    "items_ingest",
    "membership_remove",
    "membership_set",
    "project_aggregate",
    "project_create",
    "project_update",
    "QueueCandidate",
    "QueueReplaceReport",
    "queue_replace",
    "ReviewNext",
    "review_next",
    "review_resolve",
]
