from django.apps import AppConfig


class LoopConfig(AppConfig):
    """Orchestration: what happens next after a push, an embedding, an annotation or an aggregation.

    At start-up it creates the Celery application (``quorum.celery``), connects its answers to the
    people side's announcements (``loop.receivers``) and plugs the model side into the people side's
    ports (``annotation.ports``): pushed vectors into ``acquisition``'s embedding store, scoring runs
    as the queue's supply."""

    name = "loop"
    verbose_name = "Loop"

    def ready(self) -> None:
        # Imported here, not at module level: these modules import models, which are not loaded
        # while Django reads the app configs (Django's documented place for signal receivers).
        from acquisition.services.embedding import ItemVectorStore
        from annotation import ports
        from quorum import celery  # noqa: F401  (creates the Celery app in every Django process)

        from . import receivers  # noqa: F401  (connects the receivers)
        from .supply import ScoringSupply

        ports.install(vectors=ItemVectorStore(), supply=ScoringSupply())
