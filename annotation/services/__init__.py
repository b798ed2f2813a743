"""Every write of the people side, one job per module; atomic, validating, raising ``quorum.errors``.

- ``projects``, ``members``: projects, their label sets and who works on them.
- ``accounts``: creating accounts (password or invitation); what goes before one is deleted.
- ``ingest``: validated records into items (idempotent bulk upsert).
- ``queue``: the queue's entries replaced atomically (what a scoring run or the fallback writes).
- ``slots``: the counting rule and the lock order that leases and annotations share.
- ``leases``: the next item, skip, expiry, keeping the queue fed.
- ``annotations``: submit, change, undo.
- ``quality``: honeypot scores, pausing an annotator (reinstating is in ``members``).
- ``consensus``: an item's consensus rule on its last label.
- ``aggregation``: a whole project's Dawid-Skene, agreement figures and re-routing.
- ``review``: the reviewers' queue and decisions.

None of them decides what happens next: they announce (``annotation.signals``) and ask
(``annotation.ports``); ``loop`` answers.
"""

from .accounts import CreatedUser, api_token, invitation_path, user_create
from .aggregation import aggregation_claim, aggregation_release, aggregation_started, project_aggregate
from .annotations import SubmitResult, annotation_change, annotation_submit, annotation_undo
from .consensus import item_consensus_apply
from .ingest import IngestReport, ingest_batch_mark_processed, items_ingest
from .leases import (
    MAX_LIVE_LEASES,
    NextResult,
    assignment_next,
    assignment_skip,
    leases_expire,
    leases_release,
    queue_fallback_fill,
    queue_refill_if_low,
    served_entry,
)
from .members import membership_reinstate, membership_remove, membership_set
from .projects import project_create, project_delete, project_update
from .quality import HoneypotScore, honeypot_scores, is_paused, membership_pause, quality_check
from .queue import QueueCandidate, QueueReplaceReport, queue_replace
from .review import ReviewNext, review_next, review_resolve

__all__ = [
    "MAX_LIVE_LEASES",
    "NextResult",
    "SubmitResult",
    "aggregation_claim",
    "api_token",
    "aggregation_release",
    "aggregation_started",
    "annotation_change",
    "annotation_submit",
    "annotation_undo",
    "assignment_next",
    "assignment_skip",
    "item_consensus_apply",
    "leases_expire",
    "queue_fallback_fill",
    "queue_refill_if_low",
    "served_entry",
    "IngestReport",
    "ingest_batch_mark_processed",
    "items_ingest",
    "membership_reinstate",
    "membership_remove",
    "HoneypotScore",
    "honeypot_scores",
    "is_paused",
    "membership_pause",
    "quality_check",
    "membership_set",
    "project_aggregate",
    "project_create",
    "project_delete",
    "CreatedUser",
    "invitation_path",
    "user_create",
    "leases_release",
    "project_update",
    "QueueCandidate",
    "QueueReplaceReport",
    "queue_replace",
    "ReviewNext",
    "review_next",
    "review_resolve",
]
