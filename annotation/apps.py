from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import pre_delete


def _before_user_delete(sender, instance, **kwargs) -> None:
    # services import models, which are not loaded while Django reads the app configs
    from .services.accounts import user_deleting

    user_deleting(instance)


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        # A deleted account keeps its annotations (``services.accounts.user_deleting``).
        pre_delete.connect(
            _before_user_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="annotation.user_deleting"
        )
