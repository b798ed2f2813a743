"""The Celery application. Workers start with ``celery -A quorum worker``."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")

app = Celery("quorum")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def limit_torch_threads(**_kwargs):
    """Give each worker process ``QUORUM_TORCH_THREADS`` intra-op threads (0: PyTorch's default, one
    per core). Several worker processes on one machine each using every core oversubscribe the CPU
    badly; set it to cores / processes there."""
    from django.conf import settings

    threads = settings.QUORUM_TORCH_THREADS
    if threads:
        import torch

        torch.set_num_threads(threads)
