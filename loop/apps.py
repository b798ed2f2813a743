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
        # Imported here, not at module level: each imports models, which are not loaded while
        # Django reads the app configs (ready() is Django's documented place for this).
        from acquisition.services.embedding import ItemVectorStore  # models: see above
        from annotation import ports  # models: see above
        from quorum import celery  # noqa: F401  (creates the Celery app in every Django process)

        # receivers: connects them; tasks: registers them in every process, so that the services'
        # signatures by name (loop.enqueue) resolve to them (else they go to the broker as is)
        from . import receivers, tasks  # noqa: F401  (models: see above)
        from .supply import ScoringSupply  # models: see above

        ports.install(vectors=ItemVectorStore(), supply=ScoringSupply())
