"""The ingest follow-up runs on a real Celery worker process through the configured broker
(the filesystem broker by default, Redis in CI)."""

import pytest
from django.conf import settings

from annotation.models import IngestBatch, Item

from .worker import celery_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_ingest_follow_up_task_runs_on_a_real_worker(admin_api, project, tmp_path):
    with celery_worker(tmp_path) as (process, log_path):
        response = admin_api.post(
            f"/api/v1/projects/{project.pk}/items",
            [{"external_id": f"w-{i}", "text": f"text number {i}"} for i in range(25)],
            format="json",
        )
        assert response.status_code == 201, response.content
        batch_id = response.json()["batch_id"]
        assert IngestBatch.objects.get(pk=batch_id).status == IngestBatch.Status.RECEIVED

        batch = wait_for(
            lambda: IngestBatch.objects.filter(pk=batch_id, status=IngestBatch.Status.PROCESSED).first(),
            timeout=60,
            what=f"ingest batch {batch_id} to be processed by the worker\n{log_path.read_text()}",
        )
        assert process.poll() is None, "the worker must still be running"

    assert batch.processed_at is not None
    assert batch.created == 25
    # handed to the encoder (whose 384-d vectors this 4-d fixture project refuses, so they keep waiting)
    assert Item.objects.filter(project=project, embedding_state__in=["pending", "queued"]).count() == 25
    log = log_path.read_text()
    assert "annotation.tasks.ingest_batch_process[" in log and "succeeded" in log
    assert settings.CELERY_BROKER_URL.split(":")[0] in log  # the worker used the configured broker


def test_follow_up_of_a_vanished_batch_is_harmless(project, tmp_path):
    """Tasks are retried or delivered late; a batch that no longer exists must not crash the worker."""
    from loop.tasks import ingest_batch_process

    with celery_worker(tmp_path) as (process, log_path):
        result = ingest_batch_process.delay(987654)
        assert result.get(timeout=60) == {"batch": 987654, "status": "missing"}
        assert process.poll() is None
