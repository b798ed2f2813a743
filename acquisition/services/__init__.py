"""Every write of the model side: embedding items, scoring runs that fill the queue, training.

Services are atomic and validating and raise ``annotation.errors``; Celery tasks in
``acquisition.tasks`` are thin wrappers that call them with ids.
"""

from .embedding import EmbedReport, items_embed, items_embed_mark_queued
from .scoring import scoring_request, scoring_run_create, scoring_run_execute, scoring_run_fail, scoring_runs_expire
from .training import model_load, model_train

__all__ = [
    "EmbedReport",
    "items_embed",
    "items_embed_mark_queued",
    "model_load",
    "model_train",
    "scoring_request",
    "scoring_run_create",
    "scoring_run_execute",
    "scoring_run_fail",
    "scoring_runs_expire",
]
